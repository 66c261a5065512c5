import ms from "ms";

/** Where the demo keeps cached responses. `none` turns caching off (the "before" of the article). */
export type CacheStoreKind = "memory" | "redis" | "none";

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
  /** `REDIS_URL`, when set. */
  readonly redisUrl: string | undefined;
  /** `CACHE_STORE`. @default "redis" when `REDIS_URL` is set, "memory" otherwise */
  readonly cacheStore: CacheStoreKind;
  /** `CACHE_TTL`: how long a cached response is fresh, in ms. @default 60000 */
  readonly cacheTtlMs: number;
  /** `LOG_LEVEL`. @default "info" */
  readonly logLevel: LogLevel;
}

export const DEFAULTS = {
  port: 8000,
  host: "127.0.0.1",
  upstreamUrl: "https://jsonplaceholder.typicode.com",
  upstreamTimeoutMs: 10_000,
  cacheTtlMs: 60_000,
  logLevel: "info",
} as const;

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
  const out = /^\d+(\.\d+)?$/.test(value) ? Number(value) * 1000 : ms(value as ms.StringValue);
  if (typeof out !== "number" || !Number.isFinite(out)) return undefined;
  const rounded = Math.round(out);
  return rounded > 0 ? rounded : undefined;
}

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
  const upstreamTimeoutMs = duration("UPSTREAM_TIMEOUT", DEFAULTS.upstreamTimeoutMs);
  const cacheTtlMs = duration("CACHE_TTL", DEFAULTS.cacheTtlMs);

  let redisUrl: string | undefined;
  const rawRedis = read(env, "REDIS_URL");
  if (rawRedis !== undefined) {
    const url = URL.canParse(rawRedis) ? new URL(rawRedis) : undefined;
    if (!url || (url.protocol !== "redis:" && url.protocol !== "rediss:") || url.hostname === "") {
      problem(
        "REDIS_URL",
        `expected a redis://host:port or rediss://host:port URL, got ${quote(redact(rawRedis))}`,
      );
    } else if (url.port !== "" && !(Number(url.port) > 0)) {
      problem("REDIS_URL", `expected a port from 1 to 65535, got ${quote(redact(rawRedis))}`);
    } else {
      redisUrl = rawRedis;
    }
  }

  let cacheStore: CacheStoreKind = rawRedis !== undefined ? "redis" : "memory";
  const rawStore = read(env, "CACHE_STORE");
  if (rawStore !== undefined) {
    const kind = rawStore.toLowerCase();
    if (kind === "memory" || kind === "redis" || kind === "none") cacheStore = kind;
    else problem("CACHE_STORE", `expected one of memory, redis, none, got ${quote(rawStore)}`);
  }
  if (cacheStore === "redis" && rawRedis === undefined) {
    problem("CACHE_STORE", "is redis, but REDIS_URL is not set");
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
    cacheTtlMs,
    logLevel,
  };
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
