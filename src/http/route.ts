/** Route options: their types, their validation, and what they compile to. */
import type { Cache } from "../cache.js";
import type { Duration } from "../duration.js";
import { toMs } from "../duration.js";
import { InvalidOptionError } from "../errors.js";
import type { EntryOptions, Policy } from "../options.js";
import { ENTRY_OPTION_NAMES, validateTags } from "../options.js";
import { rejectUnknownOptions } from "../validate.js";
import type { CompressionOptions } from "./record.js";
import { CODINGS } from "./record.js";
import type { HttpRequest } from "./types.js";

/** Per-route options: `config: { cache: { ... } }` on a Fastify route, and so on. */
export interface RouteCacheOptions extends Omit<EntryOptions, "tags"> {
  /**
   * Request headers that select a different response (`["accept-language"]`). They become
   * part of the key. Listing `authorization` (or giving a `key` function) makes the route
   * per-user, which allows caching responses to authenticated requests.
   * @default []
   */
  vary?: readonly string[] | undefined;
  /**
   * Build the key yourself from the request (then you are responsible for keying on
   * everything that changes the response). Long keys are hashed.
   */
  key?: ((request: HttpRequest) => string) | undefined;
  /**
   * Declare the response the same for every user, so that responses to requests with
   * `Authorization` or a session cookie may be stored and shared.
   * @default false
   */
  public?: boolean | undefined;
  /** Statuses that may be stored for this route. @default the cache's `statuses` */
  statuses?: readonly number[] | undefined;
  /** Tags for the stored responses (for `invalidateTags`), or a function of the request. */
  tags?: (readonly string[] | ((request: HttpRequest) => readonly string[])) | undefined;
  /**
   * Take freshness from the handler's own `Cache-Control`: `s-maxage`, else `max-age`, for
   * `ttl`; `stale-while-revalidate` and `stale-if-error` (RFC 5861) for the stale windows. The
   * route's values apply when the response has none.
   * @default false
   */
  fromResponse?: boolean | undefined;
  /**
   * Honour the client's request `Cache-Control`: `no-cache` fetches a fresh response,
   * `no-store` stores nothing, `only-if-cached` answers 504 on a miss (RFC 9111 §5.2.1). Off
   * by default so that clients cannot push load onto the origin.
   * @default false
   */
  requestDirectives?: boolean | undefined;
  /**
   * With `fromResponse`: heuristic freshness (RFC 9111 §4.2.2) for a response without explicit
   * freshness but with `Last-Modified`: `true` for 10% of the time since it was modified, or
   * the fraction to use; at most a day. Off by default: only explicit freshness is trusted.
   * @default false
   */
  heuristic?: boolean | number | undefined;
  /**
   * With `fromResponse`: how long a stale response with validators (`ETag`, `Last-Modified`)
   * is kept so that it can be revalidated with a conditional request instead of fetched
   * again whole (RFC 9111 §4.3). It is never served stale for that (unless a stale window
   * allows it). `0` for not at all.
   * @default "10m"
   */
  keepStale?: Duration | undefined;
  /** Override the cache-wide `downstreamCacheControl` for this route. */
  downstreamCacheControl?: boolean | undefined;
  /**
   * The route's name in errors and in the `http` event (the `route` label of metrics): its
   * pattern, such as `"GET /posts/:id"`, never anything taken from a request. The Fastify
   * plugin names routes by their pattern itself; on Express and Hono, routes are
   * `express route #1`, … unless named here.
   */
  name?: string | undefined;
}

/** Options of {@link HttpCache}. */
export interface HttpCacheOptions {
  /** The cache to store responses in (they go to its `http` namespace). */
  cache: Cache;
  /** Namespace for response entries, so `clear()` on it drops only responses. @default "http" */
  namespace?: string | undefined;
  /**
   * Statuses that may be stored (RFC 9110 §15.1 heuristically cacheable ones).
   * @default [200, 203, 204, 300, 301, 308, 404, 410]
   */
  statuses?: readonly number[] | undefined;
  /** Largest body stored, in bytes; larger responses pass through unstored. @default 5 MiB */
  maxEntrySize?: number | undefined;
  /**
   * @deprecated Every end-to-end response header is stored and replayed now (RFC 9111 §3.1),
   * except hop-by-hop ones, those listed in `Connection`, and the per-response ones cachet
   * sets itself. Listing a header here changes nothing; listing one that is never stored
   * (`set-cookie`, `connection`, …) still fails.
   */
  headers?: readonly string[] | undefined;
  /**
   * Cookie names that identify a user session: requests carrying one are treated like requests
   * with `Authorization` (not served from or stored to the shared cache unless the route keys
   * on the user or is public).
   * @default []
   */
  sessionCookies?: readonly string[] | undefined;
  /**
   * Key responses on the host the framework reports to the handler, as Varnish does, so that a
   * response built for one host (links, redirects) is never served for another — including a
   * host taken from `X-Forwarded-Host` when the app trusts a proxy. Turn off only when the app
   * answers one host and builds nothing from it.
   * @default true
   */
  keyHost?: boolean | undefined;
  /** The cache name in `Cache-Status` (RFC 9211), or `false` to omit the header. @default "cachet" */
  cacheStatus?: string | false | undefined;
  /** Add `key=` to `Cache-Status` (exposes cache keys to clients: off by default). @default false */
  exposeKey?: boolean | undefined;
  /**
   * Store bodies compressed once (br and gzip) and serve them to clients that accept them,
   * with `Vary: Accept-Encoding`; others get identity. `false` to store identity only.
   * @default { threshold: 1024, codings: ["br", "gzip"] }
   */
  compress?: boolean | Partial<CompressionOptions> | undefined;
  /**
   * Send `Cache-Control: public, max-age=<remaining freshness>` downstream (browsers, CDNs)
   * on stored and cached responses, replacing the handler's.
   * @default false
   */
  downstreamCacheControl?: boolean | undefined;
  /**
   * Send the route's tags in a `Surrogate-Key` (Fastly, space-separated) or `Cache-Tag`
   * (Cloudflare, comma-separated) header, for purging a CDN by the same tags.
   * @default false
   */
  surrogateKeys?: false | "surrogate-key" | "cache-tag" | undefined;
}

/** A route's options, validated and resolved once at registration. */
export interface CompiledRoute {
  readonly name: string;
  readonly policy: Policy;
  readonly vary: readonly string[];
  readonly key: ((request: HttpRequest) => string) | undefined;
  readonly public: boolean;
  readonly statuses: ReadonlySet<number>;
  readonly tags: readonly string[] | ((request: HttpRequest) => readonly string[]);
  readonly fromResponse: boolean;
  /** Heuristic freshness fraction (0 for none) and its cap in ms. */
  readonly heuristic: number;
  readonly heuristicMax: number;
  /** How long a stale response with validators is kept to be revalidated, in ms. */
  readonly keepStale: number;
  readonly requestDirectives: boolean;
  readonly downstream: boolean;
  /** Whether the adapter must be able to dispatch out of band (stale windows, timeouts). */
  readonly needsDispatch: boolean;
}

/** Every route option (checked at registration, so that a typo fails loudly). */
const ROUTE_OPTION_NAMES = [
  ...ENTRY_OPTION_NAMES,
  "vary",
  "key",
  "public",
  "statuses",
  "fromResponse",
  "heuristic",
  "keepStale",
  "requestDirectives",
  "downstreamCacheControl",
  "name",
];

export const DEFAULT_STATUSES = [200, 203, 204, 300, 301, 308, 404, 410];

/** Validate a route's options once, at registration. `fallbackName` names it in errors. */
export function compileRoute(
  options: RouteCacheOptions | true,
  fallbackName: string,
  defaults: {
    policy: (options: EntryOptions, where: string) => Policy;
    statuses: ReadonlySet<number>;
    downstream: boolean;
  },
): CompiledRoute {
  const o: RouteCacheOptions = options === true ? {} : options;
  if (o === null || typeof o !== "object") {
    throw new InvalidOptionError(`${fallbackName} cache`, "expected true or an options object");
  }
  if (
    o.name !== undefined &&
    (typeof o.name !== "string" || !/^[\x20-\x7e]{1,200}$/.test(o.name))
  ) {
    throw new InvalidOptionError(
      `${fallbackName} cache.name`,
      `expected a route pattern such as "GET /posts/:id" (1 to 200 printable characters), got ${JSON.stringify(o.name)}`,
    );
  }
  const name = o.name ?? fallbackName;
  const where = `${name} cache`;
  rejectUnknownOptions(o, ROUTE_OPTION_NAMES, where);
  const { tags, name: _name, heuristic, keepStale, ...entryOptions } = o;
  const policy = defaults.policy({ ...entryOptions, tags: [] }, where);
  if (
    o.vary !== undefined &&
    (!Array.isArray(o.vary) ||
      o.vary.some((h) => typeof h !== "string" || !/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(h)))
  ) {
    throw new InvalidOptionError(
      `${where}.vary`,
      `expected an array of request header names such as ["accept-language"], got ${JSON.stringify(o.vary)}`,
    );
  }
  const vary = [...new Set((o.vary ?? []).map((h) => h.toLowerCase()))].sort();
  if (o.key !== undefined && typeof o.key !== "function") {
    throw new InvalidOptionError(`${where}.key`, "expected a function (request) => string");
  }
  if (tags !== undefined && typeof tags !== "function") validateTags(tags, `${where}.tags`);
  return {
    name,
    policy,
    vary,
    key: o.key,
    public: o.public === true,
    statuses: o.statuses ? statusSet(o.statuses, `${where}.statuses`) : defaults.statuses,
    tags: tags ?? [],
    fromResponse: o.fromResponse === true,
    heuristic: heuristicFraction(heuristic, `${where}.heuristic`),
    heuristicMax: 86_400_000,
    keepStale:
      keepStale === undefined
        ? o.fromResponse === true
          ? 600_000
          : 0
        : toMs(keepStale, `${where}.keepStale`, true),
    requestDirectives: o.requestDirectives === true,
    downstream: o.downstreamCacheControl ?? defaults.downstream,
    needsDispatch:
      policy.swr > 0 || policy.grace > 0 || policy.timeout > 0 || o.fromResponse === true,
  };
}

function heuristicFraction(value: boolean | number | undefined, option: string): number {
  if (value === undefined || value === false) return 0;
  if (value === true) return 0.1;
  if (typeof value !== "number" || !(value > 0 && value <= 1)) {
    throw new InvalidOptionError(
      option,
      `expected true, false or a fraction in (0, 1], got ${value}`,
    );
  }
  return value;
}

export function statusSet(statuses: readonly number[], option: string): ReadonlySet<number> {
  if (!Array.isArray(statuses) || statuses.length === 0) {
    throw new InvalidOptionError(option, "expected a non-empty array of HTTP status codes");
  }
  for (const s of statuses) {
    if (!Number.isInteger(s) || s < 200 || s > 599 || s === 206 || s === 304) {
      throw new InvalidOptionError(
        option,
        `expected final status codes between 200 and 599 (not 206 or 304), got ${JSON.stringify(s)}`,
      );
    }
  }
  return new Set(statuses);
}

export function compressionOptions(
  value: boolean | Partial<CompressionOptions> | undefined,
): CompressionOptions | undefined {
  if (value === false) return undefined;
  const o = value === undefined || value === true ? {} : value;
  if (typeof o !== "object" || o === null) {
    throw new InvalidOptionError("compress", "expected true, false or { threshold, codings }");
  }
  const threshold = o.threshold ?? 1024;
  if (!Number.isSafeInteger(threshold) || threshold < 0) {
    throw new InvalidOptionError(
      "compress.threshold",
      `expected a byte count, got ${JSON.stringify(o.threshold)}`,
    );
  }
  const codings = o.codings ?? CODINGS;
  if (!Array.isArray(codings) || codings.some((c) => c !== "br" && c !== "gzip")) {
    throw new InvalidOptionError(
      "compress.codings",
      `expected a list of "br" and "gzip", got ${JSON.stringify(o.codings)}`,
    );
  }
  return codings.length === 0 ? undefined : { threshold, codings };
}
