#!/usr/bin/env node
import { realpathSync } from "node:fs";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
/**
 * `cachet`: look at and act on a cache from a shell, during an incident or otherwise.
 *
 *   cachet stats [--metrics-url URL]        hit ratio and counts (a running service's /metrics,
 *                                           or the Redis store itself)
 *   cachet get KEY [--namespace N] [--json]  decode one entry: freshness, tags, size, value
 *   cachet del KEY [--namespace N]           delete one entry (other instances drop their copy)
 *   cachet invalidate --tag T [--path P]     expire every entry carrying a tag (or an HTTP path)
 *   cachet clear --namespace N | --all       expire a namespace (or everything)
 *   cachet proxy --upstream URL [--port N]   a caching reverse proxy in front of any upstream
 *
 * Every Redis command takes `--redis-url` (default `$REDIS_URL`, else redis://127.0.0.1:6379)
 * and `--prefix` (the store's key prefix, default `cachet:`). The actions go through the same
 * core as the application (tags by versioning, namespaces by generation, the bus), never
 * through a second implementation.
 *
 * Exit codes (sysexits): 0 done; 64 usage (bad option, malformed URL); 65 the data is not a
 * cachet entry (or not cachet metrics); 66 no such key; 69 Redis (or the metrics URL)
 * unreachable or failing; 1 anything else.
 */
import { inspect } from "node:util";
import { Command, CommanderError, InvalidArgumentError, Option } from "commander";
import type { Cache } from "../cache.js";
import { createCache } from "../cache.js";
import { engineOf } from "../engine/registry.js";
import type { Entry } from "../entry.js";
import { decodeEntry, entrySerializer } from "../entry.js";
import { CachetError, CorruptEntryError, InvalidOptionError, MissingPeerError } from "../errors.js";
import { pathTag, splitUrl } from "../http/key.js";
import type { StoredRecord } from "../http/record.js";
import { recordSerializer } from "../http/record.js";
import { jsonSerializer, msgpackSerializer, rawSerializer } from "../serializer.js";
import type { RedisStore } from "../stores/redis.js";

/** Exit codes, from sysexits(3). */
export const EXIT = {
  ok: 0,
  failure: 1,
  usage: 64,
  dataErr: 65,
  noInput: 66,
  unavailable: 69,
} as const;

/** Where the CLI writes; tests and embedders may pass their own. */
export interface CliIo {
  readonly out: (text: string) => void;
  readonly err: (text: string) => void;
  /** Whether `err` is a terminal (progress lines then rewrite themselves). */
  readonly errIsTty: boolean;
}

/** A failure with the exit code it maps to and a message for the operator. */
export class CliError extends Error {
  readonly exitCode: number;
  constructor(exitCode: number, message: string) {
    super(message);
    this.exitCode = exitCode;
  }
}

const DEFAULT_REDIS_URL = "redis://127.0.0.1:6379";
const DEFAULT_METRICS_URL = "http://127.0.0.1:8000/metrics";
/** A progress line every this many keys scanned. */
const PROGRESS_EVERY = 10_000;
const PREVIEW_CHARS = 400;

interface RedisOptions {
  redisUrl: string;
  prefix: string;
  timeout: number;
}

/**
 * The Redis side of one command: the application's store and a cache on it for actions, and
 * a raw client (standalone servers only) for what the store does not do (SCAN, INFO, PTTL).
 */
interface Session {
  readonly url: string;
  readonly prefix: string;
  client(): Promise<RawClient>;
  readonly store: RedisStore;
  readonly cache: Cache;
  close(): Promise<void>;
}

/** The few raw commands the CLI needs beyond the store (SCAN, INFO, PTTL, DBSIZE). */
interface RawClient {
  connect(): Promise<unknown>;
  info(section?: string): Promise<string>;
  dbSize(): Promise<number>;
  pTTL(key: string): Promise<number>;
  scan(
    cursor: string,
    options: { MATCH: string; COUNT: number },
  ): Promise<{ cursor: string; keys: string[] }>;
  on(event: "error", listener: (error: unknown) => void): unknown;
  close(): Promise<void>;
  destroy(): void;
}

/**
 * Run the CLI with `argv` (without the node and script paths) and return the exit code. Never
 * throws and never calls `process.exit`.
 */
export async function run(argv: readonly string[], io: CliIo = processIo()): Promise<number> {
  let code: number = EXIT.ok;
  const program = new Command("cachet")
    .description("Inspect and operate a cachet cache (Redis store, or a service's /metrics).")
    .exitOverride()
    .configureOutput({ writeOut: io.out, writeErr: io.err })
    .showHelpAfterError("(add --help for usage)")
    .version(packageVersion(), "-V, --version", "print cachet's version");

  const redisOptions = (command: Command) =>
    command
      .addOption(
        new Option("--redis-url <url>", "the Redis the cache uses")
          .env("REDIS_URL")
          .default(DEFAULT_REDIS_URL),
      )
      .option("--prefix <prefix>", "the store's key prefix (redisStore's `prefix`)", "cachet:")
      .option("--timeout <ms>", "longest wait for Redis, in milliseconds", parseMs, 2000);

  const act =
    <A extends unknown[]>(fn: (...args: A) => Promise<void>) =>
    async (...args: A) => {
      code = await guarded(io, () => fn(...args));
    };

  redisOptions(
    program
      .command("stats")
      .description(
        "hit ratio and counts: from a running service's Prometheus metrics (--metrics-url), " +
          "or from the Redis store (entries by namespace, server hit ratio)",
      )
      .option(
        "--metrics-url [url]",
        `read a service's /metrics (default ${DEFAULT_METRICS_URL}) instead of Redis`,
      )
      .option("--json", "print JSON"),
  ).action(
    act(async (options: RedisOptions & { metricsUrl?: string | true; json?: boolean }) => {
      if (options.metricsUrl !== undefined) {
        const url = options.metricsUrl === true ? DEFAULT_METRICS_URL : options.metricsUrl;
        await metricsStats(io, url, options.timeout, options.json === true);
      } else {
        await withSession(options, io, (session) => storeStats(io, session, options.json === true));
      }
    }),
  );

  redisOptions(
    program
      .command("get")
      .description("decode the entry under KEY: freshness, tags, size and a preview of the value")
      .argument("<key>", "the cache key (namespaced keys: @<namespace>:<key>, or --namespace)")
      .option("--namespace <path>", "the key's namespace (a/b for nested namespaces)")
      .option("--json", "print JSON")
      .option("--full", "print the whole value, not a preview"),
  ).action(
    act(
      async (
        key: string,
        options: RedisOptions & { namespace?: string; json?: boolean; full?: boolean },
      ) => {
        const full = fullKey(key, options.namespace);
        await withSession(options, io, (session) =>
          getEntry(io, session, full, options.json === true, options.full === true),
        );
      },
    ),
  );

  redisOptions(
    program
      .command("del")
      .description("delete the entry under KEY (other instances drop their in-process copy)")
      .argument("<key>", "the cache key (namespaced keys: @<namespace>:<key>, or --namespace)")
      .option("--namespace <path>", "the key's namespace"),
  ).action(
    act(async (key: string, options: RedisOptions & { namespace?: string }) => {
      const full = fullKey(key, options.namespace);
      await withSession(options, io, (session) => deleteEntry(io, session, full));
    }),
  );

  redisOptions(
    program
      .command("invalidate")
      .description("expire every entry carrying a tag, or every stored response of an HTTP path")
      .option("--tag <tag...>", "a tag (repeatable)")
      .option("--path <path...>", "an HTTP path, e.g. /posts/1 (repeatable)")
      .option("--soft", "mark the entries stale instead (stale-while-revalidate/if-error apply)"),
  ).action(
    act(async (options: RedisOptions & { tag?: string[]; path?: string[]; soft?: boolean }) => {
      const tags = options.tag ?? [];
      const paths = options.path ?? [];
      if (tags.length === 0 && paths.length === 0) {
        throw new CliError(EXIT.usage, "invalidate needs --tag or --path");
      }
      await withSession(options, io, (session) =>
        invalidate(io, session, tags, paths, options.soft === true),
      );
    }),
  );

  redisOptions(
    program
      .command("clear")
      .description("expire every entry of a namespace in one write (or of every namespace)")
      .option("--namespace <path>", "the namespace (a/b for nested namespaces)")
      .option("--all", "clear every namespace and the root"),
  ).action(
    act(async (options: RedisOptions & { namespace?: string; all?: boolean }) => {
      if ((options.namespace === undefined) === (options.all !== true)) {
        throw new CliError(EXIT.usage, "clear needs exactly one of --namespace N or --all");
      }
      await withSession(options, io, (session) => clear(io, session, options.namespace));
    }),
  );

  program
    .command("proxy")
    .description(
      "run a caching reverse proxy in front of an upstream: the upstream's headers decide what is cached (RFC 9111)",
    )
    .requiredOption("--upstream <url>", "the origin, e.g. http://127.0.0.1:3000")
    .option("--port <port>", "port to listen on", parsePort, 8080)
    .option("--host <host>", "address to listen on", "127.0.0.1")
    .addOption(
      new Option("--redis <url>", "share the cache over Redis (memory in front)").env("REDIS_URL"),
    )
    .option("--timeout <duration>", "longest wait for the upstream's answer", "30s")
    .option(
      "--stale-if-error <duration>",
      "serve stale this long when the upstream fails (0: never)",
      "1h",
    )
    .option(
      "--keep-stale <duration>",
      "keep stale responses with validators this long, to revalidate them",
      "10m",
    )
    .option(
      "--heuristic",
      "heuristic freshness for responses with Last-Modified and no explicit freshness",
    )
    .option("--max-entry-size <bytes>", "largest body stored, in bytes (default 5 MiB)", parseBytes)
    .option("--log", "log requests (JSON lines)")
    .action(
      act(
        async (options: {
          upstream: string;
          port: number;
          host: string;
          redis?: string;
          timeout: string;
          staleIfError: string;
          keepStale: string;
          heuristic?: boolean;
          maxEntrySize?: number;
          log?: boolean;
        }) => {
          const { startProxy } = await proxyModule();
          const proxy = await startProxy({
            upstream: options.upstream,
            port: options.port,
            host: options.host,
            redis: options.redis || undefined,
            timeout: durationOption(options.timeout),
            staleIfError: durationOption(options.staleIfError),
            route: {
              keepStale: durationOption(options.keepStale),
              ...(options.heuristic ? { heuristic: true } : {}),
            },
            http: options.maxEntrySize === undefined ? {} : { maxEntrySize: options.maxEntrySize },
            logger: options.log === true,
          });
          io.err(
            `cachet proxy: ${proxy.url} -> ${options.upstream}${options.redis ? ` (Redis ${options.redis})` : ""}\n`,
          );
          await new Promise<void>((resolve) => {
            const stop = () => {
              process.off("SIGINT", stop);
              process.off("SIGTERM", stop);
              resolve();
            };
            process.once("SIGINT", stop);
            process.once("SIGTERM", stop);
          });
          await proxy.close();
        },
      ),
    );

  try {
    await program.parseAsync([...argv], { from: "user" });
  } catch (error) {
    if (error instanceof CommanderError) {
      // Help and version are successes; every other parse error is a usage error, already
      // printed by commander.
      return error.exitCode === 0 ? EXIT.ok : EXIT.usage;
    }
    io.err(`cachet: ${errorMessage(error)}\n`);
    return EXIT.failure;
  }
  return code;
}

/** Run `fn`, turning failures into a message and an exit code. */
async function guarded(io: CliIo, fn: () => Promise<void>): Promise<number> {
  try {
    await fn();
    return EXIT.ok;
  } catch (error) {
    if (error instanceof CliError) {
      io.err(`cachet: ${error.message}\n`);
      return error.exitCode;
    }
    if (error instanceof InvalidOptionError) {
      io.err(`cachet: ${error.message.replace(/^cachet: /, "")}\n`);
      return EXIT.usage;
    }
    io.err(`cachet: ${errorMessage(error)}\n`);
    return EXIT.failure;
  }
}

// ---- Redis ------------------------------------------------------------------------------------

async function withSession(
  options: RedisOptions,
  io: CliIo,
  fn: (session: Session) => Promise<void>,
): Promise<void> {
  const session = await openSession(options, io);
  try {
    await fn(session);
  } finally {
    await session.close();
  }
}

async function openSession(options: RedisOptions, io: CliIo): Promise<Session> {
  const url = options.redisUrl;
  let storeModule: typeof import("../stores/redis.js");
  try {
    storeModule = await import("../stores/redis.js");
  } catch {
    throw new CliError(
      EXIT.failure,
      "the Redis commands need the `redis` package: npm install redis",
    );
  }
  // The application's own store: it validates the URL as the application would, and speaks
  // every topology it does (standalone, Cluster, Sentinel).
  let store: RedisStore;
  try {
    store = storeModule.redisStore({
      url,
      prefix: options.prefix,
      connectTimeout: options.timeout,
      commandTimeout: options.timeout,
    });
  } catch (error) {
    if (error instanceof InvalidOptionError) {
      throw new CliError(
        EXIT.usage,
        `invalid --redis-url ${JSON.stringify(redact(url))}: ${error.message.replace(/^cachet: invalid option `[^`]*`: /, "")}`,
      );
    }
    throw error;
  }
  try {
    await store.get("__cachet:cli:probe");
  } catch (error) {
    await store.disconnect().catch(() => {});
    throw new CliError(
      EXIT.unavailable,
      `cannot reach Redis at ${redact(url)}: ${errorMessage(error).replace(/^redis store [A-Za-z]+: /, "")}`,
    );
  }
  const cache = createCache({ store, storeTimeout: options.timeout, breakerThreshold: 1_000 });
  let warned = false;
  cache.on("error", ({ operation, error }) => {
    // Only a publish that failed means the running instances were not told.
    if (operation !== "bus.publish" || warned) return;
    warned = true;
    io.err(
      `cachet: warning: running instances could not be told (${operation}: ${errorMessage(error)}); ` +
        "their in-process copies expire within l1MaxTtl\n",
    );
  });
  let raw: RawClient | undefined;
  return {
    url,
    prefix: options.prefix,
    store,
    cache,
    async client() {
      if (raw) return raw;
      const scheme = new URL(url).protocol;
      if (scheme !== "redis:" && scheme !== "rediss:" && scheme !== "unix:") {
        throw new CliError(
          EXIT.usage,
          `this needs one server's URL (redis://, rediss:// or unix://), not ${scheme}//; ` +
            "for the application's numbers use cachet stats --metrics-url",
        );
      }
      const { createClient } = await import("redis");
      const client = createClient({
        url,
        socket: { connectTimeout: options.timeout, reconnectStrategy: false },
        disableOfflineQueue: true,
      }) as unknown as RawClient;
      let lastError: unknown;
      client.on("error", (error) => {
        lastError = error;
      });
      try {
        await withTimeout(client.connect(), options.timeout, "connecting");
      } catch (error) {
        client.destroy();
        throw new CliError(
          EXIT.unavailable,
          `cannot reach Redis at ${redact(url)}: ${errorMessage(lastError ?? error)}`,
        );
      }
      raw = client;
      return client;
    },
    async close() {
      await cache.close().catch(() => {});
      await raw?.close().catch(() => raw?.destroy());
    },
  };
}

/** The version in cachet's package.json (two levels up from src/cli/ and dist/cli/). */
function packageVersion(): string {
  try {
    const pkg = createRequire(import.meta.url)("../../package.json") as { version?: unknown };
    return typeof pkg.version === "string" ? pkg.version : "unknown";
  } catch {
    return "unknown";
  }
}

/** The full key (namespace included), as the cache stores it under the store's prefix. */
function fullKey(key: string, namespace: string | undefined): string {
  if (typeof key !== "string" || key === "")
    throw new CliError(EXIT.usage, "KEY must not be empty");
  if (namespace === undefined) return key;
  if (!/^[A-Za-z0-9_.-]+(\/[A-Za-z0-9_.-]+)*$/.test(namespace)) {
    throw new CliError(EXIT.usage, `invalid --namespace ${JSON.stringify(namespace)}`);
  }
  return `@${namespace}:${key}`;
}

/** The cache that owns a full key, and the key within it (for actions through the core). */
function scoped(cache: Cache, full: string): { cache: Cache; key: string } {
  if (!full.startsWith("@")) return { cache, key: full };
  const end = full.indexOf(":");
  if (end < 0) throw new CliError(EXIT.usage, `${JSON.stringify(full)} is not a namespaced key`);
  let scope = cache;
  for (const name of full.slice(1, end).split("/")) scope = scope.namespace(name);
  return { cache: scope, key: full.slice(end + 1) };
}

/** Run a cache action and fail if the store failed during it (the core would carry on). */
async function strictly<T>(session: Session, what: string, fn: () => Promise<T>): Promise<T> {
  const failures: unknown[] = [];
  const off = session.cache.on("error", ({ operation, error }) => {
    // The bus is reported apart (a warning): the action itself reached Redis.
    if (!operation.startsWith("bus.")) failures.push(error);
  });
  try {
    const out = await fn();
    if (failures.length > 0) {
      throw new CliError(
        EXIT.unavailable,
        `Redis failed while ${what}: ${errorMessage(failures[0])}`,
      );
    }
    return out;
  } finally {
    off();
  }
}

async function readEntry(
  session: Session,
  full: string,
): Promise<{ entry: Entry<Buffer>; size: number; serializer: string } | undefined> {
  let bytes: Uint8Array | undefined;
  try {
    bytes = await session.store.get(full);
  } catch (error) {
    throw new CliError(
      EXIT.unavailable,
      `Redis failed reading ${JSON.stringify(full)}: ${errorMessage(error)}`,
    );
  }
  if (bytes === undefined) return undefined;
  try {
    return {
      entry: decodeEntry<Buffer>(full, bytes, rawSerializer, { anySerializer: true }),
      size: bytes.byteLength,
      serializer: entrySerializer(bytes) ?? "",
    };
  } catch (error) {
    if (error instanceof CorruptEntryError) {
      throw new CliError(
        EXIT.dataErr,
        `the value under ${JSON.stringify(full)} is not a cachet entry ` +
          `(${error.message.replace(/^cachet: entry "[^"]*" is unreadable: /, "")}); ` +
          "the application treats it as a miss and overwrites it on its next write",
      );
    }
    throw error;
  }
}

function notFound(session: Session, full: string): CliError {
  const hint = full.startsWith("@")
    ? ""
    : " (keys of a namespace are @<namespace>:<key>, or pass --namespace)";
  return new CliError(
    EXIT.noInput,
    `no entry under ${JSON.stringify(full)} (Redis key ${JSON.stringify(session.prefix + full)})${hint}`,
  );
}

async function getEntry(
  io: CliIo,
  session: Session,
  full: string,
  json: boolean,
  whole: boolean,
): Promise<void> {
  const found = await readEntry(session, full);
  if (!found) throw notFound(session, full);
  const { entry, size } = found;
  const judged = await strictly(session, "reading tag states", () =>
    engineOf(session.cache).tiers.judge(entry),
  );
  // The server's own expiry, when the URL names one server.
  const pttl = /^(redis|rediss|unix):/.test(session.url)
    ? await (await session.client()).pTTL(session.prefix + full)
    : -1;
  const now = Date.now();
  const value = describeValue(entry.value, entry.value === undefined, whole, found.serializer);
  const payloadSize = entry.value?.byteLength ?? 0;
  const report = {
    key: full,
    redisKey: session.prefix + full,
    state: judged.state,
    invalidated: judged.invalidated ?? null,
    createdAt: iso(entry.createdAt),
    freshUntil: iso(entry.freshUntil),
    staleUntil: iso(entry.staleUntil),
    staleWhileRevalidateMs: entry.swr ?? 0,
    staleIfErrorMs: entry.grace ?? 0,
    computeMs: entry.delta ?? 0,
    tags: entry.tags,
    bytes: size,
    payloadBytes: payloadSize,
    expiresInMs: pttl >= 0 ? pttl : null,
    value: value.json,
    format: value.format,
  };
  if (json) {
    io.out(`${JSON.stringify(report, null, 2)}\n`);
    return;
  }
  const state =
    judged.state === "fresh"
      ? `fresh (for ${duration(entry.freshUntil - now)} more)`
      : judged.state === "stale"
        ? `stale since ${duration(now - judged.staleSince)} ago${judged.invalidated ? " (soft-invalidated by a tag)" : ""}; ` +
          `servable while revalidating or on errors until ${iso(entry.staleUntil)}`
        : judged.invalidated === "expired"
          ? "expired: invalidated by a tag or a namespace clear (the next read misses)"
          : "expired (the next read misses)";
  const rows: Array<[string, string]> = [
    ["key", full],
    ["redis key", session.prefix + full],
    ["state", state],
    ["created", `${iso(entry.createdAt)} (${duration(now - entry.createdAt)} ago)`],
    ["fresh until", iso(entry.freshUntil)],
    ["stale until", iso(entry.staleUntil)],
    [
      "windows",
      `stale-while-revalidate ${duration(entry.swr ?? 0)}, stale-if-error ${duration(entry.grace ?? 0)}`,
    ],
    ["computed in", duration(entry.delta ?? 0)],
    ["tags", entry.tags.length === 0 ? "(none)" : entry.tags.join(", ")],
    ["size", `${size} bytes (value ${payloadSize} bytes, ${value.format})`],
    ["redis ttl", pttl >= 0 ? duration(pttl) : "none"],
  ];
  const width = Math.max(...rows.map(([k]) => k.length));
  for (const [k, v] of rows) io.out(`${k.padEnd(width)}  ${v}\n`);
  io.out(`${"value".padEnd(width)}  ${value.text}\n`);
}

async function deleteEntry(io: CliIo, session: Session, full: string): Promise<void> {
  let exists: boolean;
  try {
    exists = (await session.store.get(full)) !== undefined;
  } catch (error) {
    throw new CliError(
      EXIT.unavailable,
      `Redis failed reading ${JSON.stringify(full)}: ${errorMessage(error)}`,
    );
  }
  if (!exists) throw notFound(session, full);
  const { cache, key } = scoped(session.cache, full);
  await strictly(session, `deleting ${JSON.stringify(full)}`, () => cache.delete(key));
  io.out(`deleted ${full} (other instances were told to drop their copy)\n`);
}

async function invalidate(
  io: CliIo,
  session: Session,
  tags: readonly string[],
  paths: readonly string[],
  soft: boolean,
): Promise<void> {
  const how = soft ? "marked stale" : "expired";
  if (tags.length > 0) {
    try {
      await strictly(session, "invalidating tags", () =>
        session.cache.invalidateTags(tags, { soft }),
      );
    } catch (error) {
      if (error instanceof InvalidOptionError) {
        throw new CliError(
          EXIT.usage,
          `invalid --tag: ${error.message.replace(/^cachet: invalid option `[^`]*`: /, "")}`,
        );
      }
      throw error;
    }
    io.out(`${how}: every entry tagged ${tags.join(", ")}\n`);
  }
  if (paths.length > 0) {
    for (const p of paths) {
      if (!p.startsWith("/"))
        throw new CliError(EXIT.usage, `--path must start with "/", got ${JSON.stringify(p)}`);
    }
    await strictly(session, "invalidating paths", () =>
      engineOf(session.cache).tiers.invalidate(
        paths.map((p) => pathTag(splitUrl(p).path)),
        soft,
        "paths",
      ),
    );
    io.out(`${how}: every stored response of ${paths.join(", ")}\n`);
  }
}

async function clear(io: CliIo, session: Session, namespace: string | undefined): Promise<void> {
  if (namespace === undefined) {
    await strictly(session, "clearing everything", () => session.cache.clear());
    io.out("cleared every namespace: all entries under this prefix now miss\n");
    return;
  }
  const { cache } = scoped(session.cache, fullKey("x", namespace));
  await strictly(session, `clearing ${namespace}`, () => cache.clear());
  io.out(`cleared namespace ${namespace} (and the namespaces under it): its entries now miss\n`);
}

/** Entries by namespace, tag states and leases under the prefix, and the server's counters. */
async function storeStats(io: CliIo, session: Session, json: boolean): Promise<void> {
  const { prefix } = session;
  const client = await session.client();
  const info = parseInfo(await client.info("stats"));
  const memory = parseInfo(await client.info("memory"));
  const hits = Number(info.keyspace_hits ?? 0);
  const misses = Number(info.keyspace_misses ?? 0);
  const namespaces = new Map<string, number>();
  let entries = 0;
  let tagStates = 0;
  let leases = 0;
  let scanned = 0;
  let nextProgress = PROGRESS_EVERY;
  let cursor = "0";
  const started = Date.now();
  const pattern = `${escapeGlob(prefix)}*`;
  do {
    const reply = await client.scan(cursor, { MATCH: pattern, COUNT: 1000 });
    cursor = String(reply.cursor);
    for (const redisKey of reply.keys) {
      scanned++;
      const key = String(redisKey).slice(prefix.length);
      if (key.startsWith("__cachet:tag:")) tagStates++;
      else if (key.startsWith("__cachet:lease:")) leases++;
      else if (key.startsWith("__cachet:")) continue;
      else {
        entries++;
        const ns = key.startsWith("@") ? key.slice(1, Math.max(1, key.indexOf(":"))) : "(root)";
        namespaces.set(ns, (namespaces.get(ns) ?? 0) + 1);
      }
    }
    if (scanned >= nextProgress) {
      nextProgress = scanned + PROGRESS_EVERY;
      progress(io, `scanning ${prefix}*: ${scanned.toLocaleString("en-US")} keys…`);
    }
  } while (cursor !== "0");
  if (io.errIsTty && scanned >= PROGRESS_EVERY) io.err("\n");
  const report = {
    redis: redact(session.url),
    prefix,
    entries,
    namespaces: Object.fromEntries([...namespaces].sort((a, b) => b[1] - a[1])),
    tagStates,
    leases,
    scanMs: Date.now() - started,
    server: {
      keys: await client.dbSize(),
      usedMemory: memory.used_memory_human ?? null,
      keyspaceHits: hits,
      keyspaceMisses: misses,
      hitRatio: hits + misses === 0 ? null : hits / (hits + misses),
    },
  };
  if (json) {
    io.out(`${JSON.stringify(report, null, 2)}\n`);
    return;
  }
  io.out(`redis ${report.redis}, prefix ${JSON.stringify(prefix)}\n`);
  io.out(`entries      ${entries}\n`);
  for (const [ns, n] of Object.entries(report.namespaces)) io.out(`  ${ns.padEnd(20)} ${n}\n`);
  io.out(`tag states   ${tagStates}\n`);
  io.out(`leases       ${leases} (factory runs in progress across the fleet)\n`);
  io.out(
    `server       ${report.server.keys} keys, ${report.server.usedMemory ?? "?"} used; ` +
      `hit ratio ${percent(report.server.hitRatio)} (${hits} hits, ${misses} misses, every client since the server started)\n`,
  );
  io.out("for the application's own hit ratio by route and tier: cachet stats --metrics-url URL\n");
}

// ---- metrics ----------------------------------------------------------------------------------

interface Sample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

async function metricsStats(io: CliIo, url: string, timeout: number, json: boolean): Promise<void> {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new CliError(EXIT.usage, `invalid --metrics-url ${JSON.stringify(url)}: not a URL`);
  }
  if (parsed.protocol !== "http:" && parsed.protocol !== "https:") {
    throw new CliError(
      EXIT.usage,
      `invalid --metrics-url ${JSON.stringify(url)}: expected http:// or https://`,
    );
  }
  let text: string;
  try {
    const response = await fetch(parsed, { signal: AbortSignal.timeout(timeout) });
    if (!response.ok) {
      throw new CliError(EXIT.unavailable, `${redact(url)} answered ${response.status}`);
    }
    text = await response.text();
  } catch (error) {
    if (error instanceof CliError) throw error;
    throw new CliError(EXIT.unavailable, `cannot read ${redact(url)}: ${errorMessage(error)}`);
  }
  const samples = parseExposition(text).filter((s) => s.name.startsWith("cachet_"));
  if (samples.length === 0) {
    throw new CliError(
      EXIT.dataErr,
      `no cachet metrics at ${redact(url)} (is it a cachet service's /metrics?)`,
    );
  }
  const total = (name: string, match: Record<string, string> = {}) =>
    samples
      .filter((s) => s.name === name && Object.entries(match).every(([k, v]) => s.labels[k] === v))
      .reduce((n, s) => n + s.value, 0);
  const by = (name: string, label: string) => {
    const out: Record<string, number> = {};
    for (const s of samples) {
      if (s.name !== name) continue;
      const key = s.labels[label] ?? "";
      out[key] = (out[key] ?? 0) + s.value;
    }
    return out;
  };
  const hits = total("cachet_hits_total");
  const misses = total("cachet_misses_total");
  const stale = total("cachet_stale_total");
  const lookups = hits + misses + stale;
  const routes: Record<string, Record<string, number>> = {};
  for (const s of samples) {
    if (s.name !== "cachet_http_requests_total") continue;
    const route = s.labels.route ?? "";
    const outcomes = routes[route] ?? {};
    routes[route] = outcomes;
    const outcome = s.labels.outcome ?? "";
    outcomes[outcome] = (outcomes[outcome] ?? 0) + s.value;
  }
  const breaker = samples.filter((s) => s.name === "cachet_breaker_state");
  const storeUp = samples.filter((s) => s.name === "cachet_store_up");
  const report = {
    source: redact(url),
    lookups,
    hits,
    hitsByTier: by("cachet_hits_total", "tier"),
    misses,
    stale,
    staleByReason: by("cachet_stale_total", "reason"),
    hitRatio: lookups === 0 ? null : hits / lookups,
    servedFromCache: lookups === 0 ? null : (hits + stale) / lookups,
    factoryErrors: by("cachet_factory_errors_total", "kind"),
    errors: by("cachet_errors_total", "code"),
    evictions: total("cachet_evictions_total"),
    oversize: total("cachet_oversize_total"),
    routes,
    stores: Object.fromEntries(
      storeUp.map((s) => [
        s.labels.store ?? "",
        {
          up: s.value === 1,
          breaker:
            ["closed", "half-open", "open"][
              breaker.find((b) => b.labels.store === s.labels.store)?.value ?? 0
            ] ?? "unknown",
        },
      ]),
    ),
  };
  if (json) {
    io.out(`${JSON.stringify(report, null, 2)}\n`);
    return;
  }
  io.out(`metrics ${report.source}\n`);
  io.out(
    `lookups      ${lookups}: hit ratio ${percent(report.hitRatio)}, served from cache ${percent(report.servedFromCache)}\n`,
  );
  io.out(`hits         ${hits} (${entriesText(report.hitsByTier)})\n`);
  io.out(`misses       ${misses}\n`);
  io.out(`stale        ${stale}${stale > 0 ? ` (${entriesText(report.staleByReason)})` : ""}\n`);
  const factoryErrors = Object.values(report.factoryErrors).reduce((a, b) => a + b, 0);
  io.out(
    `origin fails ${factoryErrors}${factoryErrors > 0 ? ` (${entriesText(report.factoryErrors)})` : ""}\n`,
  );
  const errors = Object.values(report.errors).reduce((a, b) => a + b, 0);
  io.out(`cache errors ${errors}${errors > 0 ? ` (${entriesText(report.errors)})` : ""}\n`);
  io.out(`evictions    ${report.evictions}, oversize skipped ${report.oversize}\n`);
  for (const [store, s] of Object.entries(report.stores)) {
    io.out(`store        ${store}: ${s.up ? "up" : "DOWN"}, breaker ${s.breaker}\n`);
  }
  const routeNames = Object.keys(routes).sort();
  if (routeNames.length > 0) {
    io.out("routes\n");
    for (const route of routeNames) {
      const outcomes = routes[route]!;
      const requests = Object.values(outcomes).reduce((a, b) => a + b, 0);
      const cached = (outcomes.hit ?? 0) + (outcomes.stale ?? 0) + (outcomes.collapsed ?? 0);
      io.out(
        `  ${route}: ${requests} requests, ${percent(requests === 0 ? null : cached / requests)} from cache (${entriesText(outcomes)})\n`,
      );
    }
  }
}

/** Samples of a Prometheus text exposition (the subset prom-client writes). */
export function parseExposition(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)/.exec(line);
    if (!match) continue;
    const labels: Record<string, string> = {};
    const body = match[3] ?? "";
    for (const l of body.matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) {
      labels[l[1]!] = l[2]!.replace(/\\n/g, "\n").replace(/\\(.)/g, "$1");
    }
    const value = Number(match[4]);
    if (!Number.isNaN(value)) out.push({ name: match[1]!, labels, value });
  }
  return out;
}

// ---- helpers ----------------------------------------------------------------------------------

/** A value's preview: JSON, a stored HTTP response, text or bytes. */
function describeValue(
  payload: Buffer | undefined,
  isUndefined: boolean,
  whole: boolean,
  serializer = "",
): { text: string; json: unknown; format: string } {
  if (isUndefined || payload === undefined) {
    return { text: "undefined", json: null, format: "undefined" };
  }
  const clip = (s: string) =>
    whole || s.length <= PREVIEW_CHARS
      ? s
      : `${s.slice(0, PREVIEW_CHARS)}… (${s.length} characters)`;
  if (serializer === msgpackSerializer.name) {
    try {
      const value = msgpackSerializer.deserialize(payload);
      // Plain data prints as JSON; a Map, Date, BigInt… as util.inspect shows it.
      const check = jsonSerializer.unsupported?.(value);
      const text = check
        ? inspect(value, { depth: 6, breakLength: Number.POSITIVE_INFINITY })
        : JSON.stringify(value);
      const json = check ? clip(text) : whole || text.length <= PREVIEW_CHARS ? value : clip(text);
      return { text: clip(text), json, format: "msgpack" };
    } catch {
      // not a msgpack payload after all
    }
  }
  try {
    const value = JSON.parse(payload.toString("utf8")) as unknown;
    const text = JSON.stringify(value);
    const json = whole || text.length <= PREVIEW_CHARS ? value : clip(text);
    return { text: clip(text), json, format: "json" };
  } catch {
    // not JSON
  }
  try {
    const record = recordSerializer.deserialize(payload) as StoredRecord;
    if (record.kind === "vary") {
      const text = `vary marker: responses vary on ${record.vary.join(", ")}`;
      return { text, json: { vary: record.vary }, format: "http vary marker" };
    }
    if (record.kind === "coded") {
      const text = `${record.coding} body (${record.body.length} bytes) of the response with etag ${record.etag}`;
      return {
        text,
        json: { coding: record.coding, etag: record.etag },
        format: "http coded body",
      };
    }
    const body = printable(record.body)
      ? record.body.toString("utf8")
      : `<${record.body.length} bytes>`;
    const codings = record.codings;
    const text =
      `HTTP ${record.status}, ${record.headers["content-type"] ?? "no content-type"}, etag ${record.etag}` +
      `${codings.length ? `, stored also as ${codings.join(", ")}` : ""}\n${" ".repeat(13)}${clip(body)}`;
    return {
      text,
      json: { status: record.status, headers: record.headers, etag: record.etag, body: clip(body) },
      format: "http response",
    };
  } catch {
    // not a stored response
  }
  if (printable(payload)) {
    const text = clip(payload.toString("utf8"));
    return { text, json: text, format: "text" };
  }
  const hex = payload.subarray(0, whole ? payload.length : 64).toString("hex");
  return { text: `<${payload.length} bytes> ${hex}`, json: hex, format: "bytes" };
}

function printable(bytes: Buffer): boolean {
  const text = bytes.toString("utf8");
  if (text.includes("\uFFFD")) return false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    // Control characters other than tab, newline and carriage return mean bytes, not text.
    if (c < 0x20 && c !== 0x09 && c !== 0x0a && c !== 0x0d) return false;
  }
  return true;
}

function parseInfo(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split("\r\n")) {
    const i = line.indexOf(":");
    if (i > 0 && !line.startsWith("#")) out[line.slice(0, i)] = line.slice(i + 1);
  }
  return out;
}

function escapeGlob(text: string): string {
  return text.replace(/[*?[\]\\]/g, "\\$&");
}

function progress(io: CliIo, text: string): void {
  io.err(io.errIsTty ? `\r${text}` : `${text}\n`);
}

function parsePort(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > 65535) {
    throw new InvalidArgumentError(`expected a port number, got ${JSON.stringify(value)}`);
  }
  return n;
}

/** A duration option: a bare number is milliseconds, else a string such as "30s". */
function durationOption(value: string): number | string {
  return /^\d+$/.test(value) ? Number(value) : value;
}

/** A commander parser for a positive integer of `unit`s. */
function positiveInteger(unit: string): (value: string) => number {
  return (value) => {
    const n = Number(value);
    if (!Number.isSafeInteger(n) || n <= 0) {
      throw new InvalidArgumentError(
        `expected a positive number of ${unit}, got ${JSON.stringify(value)}`,
      );
    }
    return n;
  };
}

const parseBytes = positiveInteger("bytes");
const parseMs = positiveInteger("milliseconds");

function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} timed out after ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

function iso(ms: number): string {
  return Number.isFinite(ms) ? new Date(ms).toISOString() : String(ms);
}

function duration(ms: number): string {
  const abs = Math.abs(ms);
  if (abs < 1000) return `${Math.round(ms)} ms`;
  if (abs < 120_000) return `${(ms / 1000).toFixed(abs < 10_000 ? 1 : 0)} s`;
  if (abs < 7_200_000) return `${Math.round(ms / 60_000)} min`;
  return `${(ms / 3_600_000).toFixed(1)} h`;
}

function percent(ratio: number | null): string {
  return ratio === null ? "n/a" : `${(ratio * 100).toFixed(1)}%`;
}

function entriesText(record: Record<string, number>): string {
  return Object.entries(record)
    .filter(([, n]) => n > 0)
    .map(([k, n]) => `${k || "none"} ${n}`)
    .join(", ");
}

/** A URL without its password. */
function redact(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = "***";
    return parsed.toString().replace(/\/$/, "");
  } catch {
    return url;
  }
}

function errorMessage(error: unknown): string {
  if (error instanceof CachetError) return error.message.replace(/^cachet: /, "");
  if (error instanceof AggregateError && error.errors.length > 0) {
    return errorMessage(error.errors[0]);
  }
  if (error instanceof Error) {
    const code = (error as { code?: unknown }).code;
    const message =
      typeof code === "string" && !error.message.includes(code)
        ? `${error.message} (${code})`
        : error.message;
    // fetch() says "fetch failed" and keeps the reason in its cause.
    return error.cause !== undefined && error.cause !== error
      ? `${message}: ${errorMessage(error.cause)}`
      : message;
  }
  return String(error);
}

function processIo(): CliIo {
  return {
    out: (text) => process.stdout.write(text),
    err: (text) => process.stderr.write(text),
    errIsTty: process.stderr.isTTY === true,
  };
}

/** Whether this module is the program being run (`cachet …`, `node dist/cli/index.js …`). */
function isMain(): boolean {
  const script = process.argv[1];
  if (!script) return false;
  try {
    return realpathSync(script) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

if (isMain()) {
  run(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (error: unknown) => {
      process.stderr.write(`cachet: ${errorMessage(error)}\n`);
      process.exitCode = EXIT.failure;
    },
  );
}

/**
 * The proxy, loaded on first use: it is a Fastify app, and `fastify` is an optional peer of
 * the package. Without it, the command says what to install rather than print a module path.
 */
async function proxyModule(): Promise<typeof import("../proxy/index.js")> {
  try {
    return await import("../proxy/index.js");
  } catch (cause) {
    const error = cause as NodeJS.ErrnoException;
    if (error.code === "ERR_MODULE_NOT_FOUND" && /['"]fastify['"]/.test(error.message)) {
      throw new MissingPeerError("fastify", "cachet proxy", { cause });
    }
    throw cause;
  }
}
