import ms from "ms";

/**
 * Where the demo keeps cached responses: in process (`memory`), in Redis only (`redis`, as in
 * the article), in both as two tiers kept coherent over pub/sub (`tiered`), in Memcached or
 * DynamoDB (`memcached`, `dynamodb`: the article's other providers), or nowhere (`none`, the
 * "before" of the article).
 */
export type CacheStoreKind = "memory" | "redis" | "tiered" | "memcached" | "dynamodb" | "none";

const STORE_KINDS: readonly CacheStoreKind[] = [
  "memory",
  "redis",
  "tiered",
  "memcached",
  "dynamodb",
  "none",
];

/** The DynamoDB table and client settings, with `CACHE_STORE=dynamodb`. */
export interface DynamoDBConfig {
  /** `DYNAMODB_TABLE`. @default "cachet" */
  readonly table: string;
  /**
   * `DYNAMODB_ENDPOINT`: a local DynamoDB (dynalite, DynamoDB Local), e.g.
   * `http://127.0.0.1:4567`. Unset: AWS itself, in `region`. With a local endpoint the demo
   * creates the table when it is missing.
   */
  readonly endpoint: string | undefined;
  /**
   * `AWS_REGION` (or `AWS_DEFAULT_REGION`). Unset: the SDK's own resolution (profile), or
   * `us-east-1` with a local endpoint (any region will do there).
   */
  readonly region: string | undefined;
  /**
   * True with a local endpoint when `AWS_ACCESS_KEY_ID` is not set: the demo signs with
   * placeholder credentials (a local DynamoDB accepts any) instead of searching for real ones.
   */
  readonly localCredentials: boolean;
}

/** Log levels the demo accepts (pino's). */
export const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** The demo's configuration, resolved once from the environment. Durations are milliseconds. */
export interface DemoConfig {
  /** `PORT`: the port to listen on; `0` lets the OS pick one. @default 8000 */
  readonly port: number;
  /** `HOST`: the address to listen on. @default "127.0.0.1" */
  readonly host: string;
  /** `UPSTREAM_URL`: the API proxied by `/posts`, without a trailing slash. */
  readonly upstreamUrl: string;
  /** `UPSTREAM_TIMEOUT`: longest wait for the upstream, headers and body, in ms. @default 10000 */
  readonly upstreamTimeoutMs: number;
  /**
   * `REDIS_URL`, when set: one server (`redis://`, `rediss://`), a cluster
   * (`redis+cluster://host:port,host:port…`) or Sentinel
   * (`redis+sentinel://host:port,…/<master name>`). `REDIS_CLUSTER_NODES=host:port,host:port`
   * is read as `redis+cluster://host:port,host:port`.
   */
  readonly redisUrl: string | undefined;
  /**
   * `CACHE_STORE`. @default "tiered" when `REDIS_URL` is set, else "memcached" when
   * `MEMCACHED_URL` is set, else "memory"
   */
  readonly cacheStore: CacheStoreKind;
  /**
   * `MEMCACHED_URL`, with `CACHE_STORE=memcached`: `host:port[,host:port…]` (a `memcached://`
   * prefix is accepted and dropped).
   */
  readonly memcachedServers?: string;
  /** With `CACHE_STORE=dynamodb`: `DYNAMODB_TABLE`, `DYNAMODB_ENDPOINT`, `AWS_REGION`. */
  readonly dynamodb?: DynamoDBConfig;
  /** `CACHE_TTL`: how long a cached response is fresh, in ms. @default 60000 */
  readonly cacheTtlMs: number;
  /**
   * `CACHE_STALE_WHILE_REVALIDATE`: after `CACHE_TTL`, for this long, a stale response is
   * served at once while one refresh runs in the background, in ms. `0` turns it off.
   * @default 0
   */
  readonly cacheStaleWhileRevalidateMs: number;
  /**
   * `CACHE_STALE_IF_ERROR`: after `CACHE_TTL`, for this long, a stale response is served
   * (200, the old body) when the upstream fails or times out, in ms. `0` turns it off.
   * @default 300000 (5 minutes)
   */
  readonly cacheStaleIfErrorMs: number;
  /**
   * `CACHE_LEASE`: one upstream call per key across every instance sharing the store (a lease
   * in it: `SET NX PX` on Redis, `ADD` on Memcached, a conditional put on DynamoDB). Only with
   * a shared store (`CACHE_STORE=redis`, `tiered`, `memcached` or `dynamodb`).
   * @default true with a shared store, false otherwise
   */
  readonly cacheLease: boolean;
  /**
   * `CACHE_L1_MAX_TTL`: with `CACHE_STORE=tiered`, the longest an entry stays in the
   * in-process tier, in ms: the bound on serving stale data when an invalidation message is
   * lost. @default 60000
   */
  readonly cacheL1MaxTtlMs: number;
  /**
   * `CACHE_STORE_TIMEOUT`: with Redis, the longest a request waits on it, in ms; past it Redis
   * counts as failing and the request goes on without it. @default 50
   */
  readonly cacheStoreTimeoutMs: number;
  /**
   * `CACHE_MAX_ENTRY_SIZE`: the largest response body stored, in bytes; larger responses are
   * served normally and never stored. @default 5242880 (5 MiB)
   */
  readonly cacheMaxEntrySize: number;
  /**
   * `ADMIN_TOKEN`: the bearer token of `POST /cache/invalidate`. Unset, the endpoint does not
   * exist (404). At least 16 characters.
   */
  readonly adminToken: string | undefined;
  /** `LOG_LEVEL`. @default "info" */
  readonly logLevel: LogLevel;
}

export const DEFAULTS = {
  port: 8000,
  host: "127.0.0.1",
  upstreamUrl: "https://jsonplaceholder.typicode.com",
  upstreamTimeoutMs: 10_000,
  cacheTtlMs: 60_000,
  cacheStaleWhileRevalidateMs: 0,
  cacheStaleIfErrorMs: 300_000,
  cacheL1MaxTtlMs: 60_000,
  cacheStoreTimeoutMs: 50,
  cacheMaxEntrySize: 5 * 1024 * 1024,
  logLevel: "info",
} as const;

/** The shortest `ADMIN_TOKEN` accepted: a guessable token would let anyone empty the cache. */
export const ADMIN_TOKEN_MIN_LENGTH = 16;

/** One malformed variable. */
export interface ConfigProblem {
  readonly variable: string;
  readonly message: string;
}

/**
 * The environment does not describe a valid configuration. The message names every malformed
 * variable, one per line, so that a failed start says what to fix.
 */
export class ConfigError extends Error {
  readonly code = "E_DEMO_CONFIG";
  readonly problems: readonly ConfigProblem[];

  constructor(problems: readonly ConfigProblem[]) {
    super(
      problems.length === 1
        ? `invalid configuration: ${problems[0]!.variable}: ${problems[0]!.message}`
        : `invalid configuration:\n${problems.map((p) => `  ${p.variable}: ${p.message}`).join("\n")}`,
    );
    this.name = "ConfigError";
    this.problems = problems;
  }

  /** The names of the malformed variables. */
  get variables(): string[] {
    return this.problems.map((p) => p.variable);
  }
}

type Env = Readonly<Record<string, string | undefined>>;

/** A variable's value, with an empty or blank value read as unset (as docker-compose writes them). */
function read(env: Env, name: string): string | undefined {
  const value = env[name];
  return value === undefined || value.trim() === "" ? undefined : value.trim();
}

const quote = (value: string) => JSON.stringify(value);

/**
 * A duration in milliseconds: a bare number is seconds (`"60"`, `"0.5"`), anything else a
 * duration string parsed by `ms` (`"60s"`, `"5m"`, `"500ms"`). Must be positive.
 */
export function parseSeconds(value: string): number | undefined {
  const out = parseDuration(value);
  return out !== undefined && out > 0 ? out : undefined;
}

/**
 * Like {@link parseSeconds}, allowing zero (`"0"`, `"0s"`): for windows that `0` turns off.
 * Negative or malformed values are `undefined`.
 */
export function parseDuration(value: string): number | undefined {
  const out = /^\d+(\.\d+)?$/.test(value) ? Number(value) * 1000 : ms(value as ms.StringValue);
  if (typeof out !== "number" || !Number.isFinite(out)) return undefined;
  const rounded = Math.round(out);
  return rounded >= 0 && !Object.is(rounded, -0) ? rounded : undefined;
}

const SWITCH_ON = new Set(["1", "true", "on", "yes"]);
const SWITCH_OFF = new Set(["0", "false", "off", "no"]);

/**
 * Read the demo's configuration from `env`, checking every variable once. Throws a
 * {@link ConfigError} naming each malformed variable.
 */
export function loadConfig(env: Env = process.env): DemoConfig {
  const problems: ConfigProblem[] = [];
  const problem = (variable: string, message: string) => {
    problems.push({ variable, message });
  };

  let port: number = DEFAULTS.port;
  const rawPort = read(env, "PORT");
  if (rawPort !== undefined) {
    const n = /^\d+$/.test(rawPort) ? Number(rawPort) : Number.NaN;
    if (Number.isInteger(n) && n >= 0 && n <= 65_535) port = n;
    else problem("PORT", `expected a port number from 0 to 65535, got ${quote(rawPort)}`);
  }

  const host = read(env, "HOST") ?? DEFAULTS.host;
  if (/\s|\//.test(host)) {
    problem("HOST", `expected a host name or IP address, got ${quote(host)}`);
  }

  let upstreamUrl: string = DEFAULTS.upstreamUrl;
  const rawUpstream = read(env, "UPSTREAM_URL");
  if (rawUpstream !== undefined) {
    const url = URL.canParse(rawUpstream) ? new URL(rawUpstream) : undefined;
    if (!url || (url.protocol !== "http:" && url.protocol !== "https:")) {
      problem("UPSTREAM_URL", `expected an http:// or https:// URL, got ${quote(rawUpstream)}`);
    } else if (url.search !== "" || url.hash !== "") {
      problem(
        "UPSTREAM_URL",
        `expected a base URL without query or fragment, got ${quote(rawUpstream)}`,
      );
    } else {
      upstreamUrl = url.href.replace(/\/+$/, "");
    }
  }

  const duration = (variable: string, fallback: number): number => {
    const raw = read(env, variable);
    if (raw === undefined) return fallback;
    const out = parseSeconds(raw);
    if (out === undefined) {
      problem(
        variable,
        `expected a positive number of seconds (e.g. 60) or a duration such as "60s", "5m" or "500ms", got ${quote(raw)}`,
      );
      return fallback;
    }
    return out;
  };
  /** A window that `0` turns off. */
  const window = (variable: string, fallback: number): number => {
    const raw = read(env, variable);
    if (raw === undefined) return fallback;
    const out = parseDuration(raw);
    if (out === undefined) {
      problem(
        variable,
        `expected a number of seconds (e.g. 30, or 0 for off) or a duration such as "30s" or "5m", got ${quote(raw)}`,
      );
      return fallback;
    }
    return out;
  };
  const upstreamTimeoutMs = duration("UPSTREAM_TIMEOUT", DEFAULTS.upstreamTimeoutMs);
  const cacheTtlMs = duration("CACHE_TTL", DEFAULTS.cacheTtlMs);
  const cacheStaleWhileRevalidateMs = window(
    "CACHE_STALE_WHILE_REVALIDATE",
    DEFAULTS.cacheStaleWhileRevalidateMs,
  );
  const cacheStaleIfErrorMs = window("CACHE_STALE_IF_ERROR", DEFAULTS.cacheStaleIfErrorMs);
  const cacheL1MaxTtlMs = duration("CACHE_L1_MAX_TTL", DEFAULTS.cacheL1MaxTtlMs);
  const cacheStoreTimeoutMs = duration("CACHE_STORE_TIMEOUT", DEFAULTS.cacheStoreTimeoutMs);

  let cacheMaxEntrySize: number = DEFAULTS.cacheMaxEntrySize;
  const rawMaxEntry = read(env, "CACHE_MAX_ENTRY_SIZE");
  if (rawMaxEntry !== undefined) {
    const n = /^\d+$/.test(rawMaxEntry) ? Number(rawMaxEntry) : Number.NaN;
    if (Number.isSafeInteger(n) && n > 0) cacheMaxEntrySize = n;
    else {
      problem(
        "CACHE_MAX_ENTRY_SIZE",
        `expected a positive number of bytes (e.g. 1048576), got ${quote(rawMaxEntry)}`,
      );
    }
  }

  let redisUrl: string | undefined;
  const rawRedis = read(env, "REDIS_URL");
  const rawClusterNodes = read(env, "REDIS_CLUSTER_NODES");
  if (rawRedis !== undefined) {
    const why = redisUrlProblem(rawRedis);
    if (why) problem("REDIS_URL", `${why}, got ${quote(redact(rawRedis))}`);
    else redisUrl = rawRedis;
  }
  if (rawClusterNodes !== undefined) {
    const url = `redis+cluster://${rawClusterNodes.replace(/\s+/g, "")}`;
    if (rawRedis !== undefined) {
      problem("REDIS_CLUSTER_NODES", "set either REDIS_URL or REDIS_CLUSTER_NODES, not both");
    } else if (redisUrlProblem(url)) {
      problem(
        "REDIS_CLUSTER_NODES",
        `expected host:port[,host:port…] (some nodes of the cluster), got ${quote(rawClusterNodes)}`,
      );
    } else {
      redisUrl = url;
    }
  }
  const redisSet = rawRedis !== undefined || rawClusterNodes !== undefined;

  const rawMemcached = read(env, "MEMCACHED_URL");
  let cacheStore: CacheStoreKind = redisSet ? "tiered" : rawMemcached ? "memcached" : "memory";
  const rawStore = read(env, "CACHE_STORE");
  if (rawStore !== undefined) {
    const kind = rawStore.toLowerCase() as CacheStoreKind;
    if (STORE_KINDS.includes(kind)) cacheStore = kind;
    else {
      problem("CACHE_STORE", `expected one of ${STORE_KINDS.join(", ")}, got ${quote(rawStore)}`);
    }
  }
  const onRedis = cacheStore === "redis" || cacheStore === "tiered";
  if (onRedis && !redisSet) {
    problem("CACHE_STORE", `is ${cacheStore}, but REDIS_URL is not set`);
  }
  const shared = onRedis || cacheStore === "memcached" || cacheStore === "dynamodb";

  let memcachedServers: string | undefined;
  if (cacheStore === "memcached") {
    if (rawMemcached === undefined) {
      problem("CACHE_STORE", "is memcached, but MEMCACHED_URL is not set");
    } else {
      const servers = rawMemcached.replace(/^memcached:\/\//i, "").replace(/\s+/g, "");
      const valid = servers.split(",").every((server) => {
        const match = /^(?:[^:@]+:[^@]*@)?[A-Za-z0-9.-]+(?::(\d{1,5}))?$/.exec(server);
        return match !== null && (match[1] === undefined || (+match[1] > 0 && +match[1] < 65536));
      });
      if (valid) memcachedServers = servers;
      else {
        problem(
          "MEMCACHED_URL",
          `expected host:port[,host:port…] (e.g. 127.0.0.1:11211), got ${quote(redact(rawMemcached))}`,
        );
      }
    }
  }

  let dynamodb: DynamoDBConfig | undefined;
  if (cacheStore === "dynamodb") {
    const table = read(env, "DYNAMODB_TABLE") ?? "cachet";
    if (!/^[A-Za-z0-9_.-]{3,255}$/.test(table)) {
      problem(
        "DYNAMODB_TABLE",
        `expected a table name (3 to 255 of A-Z a-z 0-9 _ . -), got ${quote(table)}`,
      );
    }
    const endpoint = read(env, "DYNAMODB_ENDPOINT");
    if (endpoint !== undefined) {
      const url = URL.canParse(endpoint) ? new URL(endpoint) : undefined;
      if (!url || (url.protocol !== "http:" && url.protocol !== "https:") || url.hostname === "") {
        problem(
          "DYNAMODB_ENDPOINT",
          `expected an http:// or https:// URL (e.g. http://127.0.0.1:4567), got ${quote(endpoint)}`,
        );
      }
    }
    const region = read(env, "AWS_REGION") ?? read(env, "AWS_DEFAULT_REGION");
    dynamodb = {
      table,
      endpoint,
      region: region ?? (endpoint !== undefined ? "us-east-1" : undefined),
      localCredentials: endpoint !== undefined && read(env, "AWS_ACCESS_KEY_ID") === undefined,
    };
  }

  let cacheLease = shared;
  const rawLease = read(env, "CACHE_LEASE");
  if (rawLease !== undefined) {
    const value = rawLease.toLowerCase();
    if (SWITCH_ON.has(value)) cacheLease = true;
    else if (SWITCH_OFF.has(value)) cacheLease = false;
    else problem("CACHE_LEASE", `expected on or off (true/false, 1/0), got ${quote(rawLease)}`);
    if (cacheLease && !shared && cacheStore !== "none") {
      problem(
        "CACHE_LEASE",
        `the fleet-wide lease needs Redis, Memcached or DynamoDB (CACHE_STORE=redis, tiered, memcached or dynamodb), and the store is ${cacheStore}`,
      );
    }
    if (cacheStore === "none") cacheLease = false;
  }

  let adminToken: string | undefined;
  // Not trimmed or echoed: a token is a secret, and a space in it is probably a mistake.
  const rawToken = env.ADMIN_TOKEN;
  if (rawToken !== undefined && rawToken !== "") {
    if (rawToken.length < ADMIN_TOKEN_MIN_LENGTH) {
      problem(
        "ADMIN_TOKEN",
        `expected at least ${ADMIN_TOKEN_MIN_LENGTH} characters (e.g. openssl rand -hex 32), got ${rawToken.length}`,
      );
    } else if (!/^[\x21-\x7e]+$/.test(rawToken)) {
      problem("ADMIN_TOKEN", "expected printable ASCII without spaces");
    } else {
      adminToken = rawToken;
    }
  }

  let logLevel: LogLevel = DEFAULTS.logLevel;
  const rawLevel = read(env, "LOG_LEVEL");
  if (rawLevel !== undefined) {
    const level = rawLevel.toLowerCase();
    if ((LOG_LEVELS as readonly string[]).includes(level)) logLevel = level as LogLevel;
    else problem("LOG_LEVEL", `expected one of ${LOG_LEVELS.join(", ")}, got ${quote(rawLevel)}`);
  }

  if (problems.length > 0) throw new ConfigError(problems);
  return {
    port,
    host,
    upstreamUrl,
    upstreamTimeoutMs,
    redisUrl,
    cacheStore,
    ...(memcachedServers !== undefined ? { memcachedServers } : {}),
    ...(dynamodb !== undefined ? { dynamodb } : {}),
    cacheTtlMs,
    cacheStaleWhileRevalidateMs,
    cacheStaleIfErrorMs,
    cacheLease,
    cacheL1MaxTtlMs,
    cacheStoreTimeoutMs,
    cacheMaxEntrySize,
    adminToken,
    logLevel,
  };
}

/**
 * Why `raw` is not a Redis URL that `cachet/redis` accepts, or `undefined`: one server
 * (`redis://`, `rediss://`), a cluster (`redis+cluster://host:port,host:port…`) or Sentinel
 * (`redis+sentinel://host:port,…/<master name>`).
 */
function redisUrlProblem(raw: string): string | undefined {
  const expected =
    "expected redis://host:port, rediss://host:port, redis+cluster://host:port[,host:port…] or redis+sentinel://host:port[,host:port…]/<master name>";
  const multi = /^rediss?\+(cluster|sentinel):\/\/(?:[^@/?#]*@)?([^/?#]*)(\/[^?#]*)?$/.exec(raw);
  if (multi) {
    const [, kind, hosts, path] = multi;
    const validHost = (host: string) => {
      const match = /^(\[[0-9a-fA-F:.]+\]|[^:[\]\s]+)(?::(\d+))?$/.exec(host);
      return match !== null && (match[2] === undefined || (+match[2] > 0 && +match[2] < 65536));
    };
    if (!hosts!.split(",").every(validHost)) return expected;
    if (kind === "sentinel" && !/^\/[^/]+$/.test(path ?? "")) {
      return "a redis+sentinel:// URL ends with /<master name>";
    }
    return undefined;
  }
  const url = URL.canParse(raw) ? new URL(raw) : undefined;
  if (!url || (url.protocol !== "redis:" && url.protocol !== "rediss:") || url.hostname === "") {
    return expected;
  }
  if (url.port !== "" && !(Number(url.port) > 0)) return "expected a port from 1 to 65535";
  return undefined;
}

/** `url` with its password replaced by `***`, for messages and logs. */
export function redact(url: string): string {
  if (!URL.canParse(url)) return url.replace(/\/\/([^:/@]*):[^@/]*@/, "//$1:***@");
  const parsed = new URL(url);
  if (parsed.password === "") return url;
  parsed.password = "***";
  return parsed.href;
}

/** A duration in ms as the shortest readable string (`60000` → `"60s"`). */
export function formatDuration(msValue: number): string {
  return ms(msValue);
}
