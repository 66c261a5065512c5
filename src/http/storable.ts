/**
 * Storability (RFC 9111 §3): whether a response may be stored, and the stored response it
 * becomes — every end-to-end header, its validators, its `Vary`, its age and freshness.
 */
import { MAX_DURATION_MS } from "../duration.js";
import { CachetError } from "../errors.js";
import { strongEtag } from "./conditional.js";
import { governingDirectives, httpDate, originFreshness, qualifiedFields } from "./freshness.js";
import type { HeaderValue } from "./headers.js";
import { connectionListed, parseCacheControl, parseVary } from "./headers.js";
import { selectingValue, varyMatches } from "./key.js";
import type { StoredResponse } from "./record.js";
import type { CompiledRoute } from "./route.js";
import type { HttpRequest, HttpResponse } from "./types.js";

/** Why a response was not stored; the reason goes to `Cache-Status` as `detail`. */
export class NotStorable extends CachetError {
  readonly reason: string;
  /**
   * The response, when it came from an out-of-band dispatch: it may be sent to the request
   * that dispatched it (`owner`) and to no other, since it may be personal.
   */
  readonly response: HttpResponse | undefined;
  readonly owner: object | undefined;

  constructor(reason: string, response?: HttpResponse, owner?: object) {
    super("E_FACTORY_ERROR", `cachet: response not stored (${reason})`);
    this.reason = reason;
    this.response = response;
    this.owner = owner;
  }

  /**
   * The origin answered, and not with an error: a new response that may not be stored (`private`,
   * `no-store`, `Set-Cookie`, …). Not a failure: no stale-if-error, no backoff (RFC 5861 §4 is
   * about errors; RFC 9111 §4.2.4 allows stale only when disconnected or permitted).
   */
  get benign(): boolean {
    return this.response !== undefined && this.response.status < 500;
  }
}

/**
 * Never stored or replayed: hop-by-hop fields (RFC 9110 §7.6.1), proxy authentication
 * (RFC 9111 §3.1), fields cachet sets per response (`age`, `cache-status`, the body's
 * length), and `set-cookie` (a response with it is not stored at all; a field name in
 * `private=`/`no-cache=` can still name other fields to drop). `Date` is stored (RFC 9110
 * §6.6.1: a hit replays the origin's).
 */
export const NEVER_STORED = new Set([
  "set-cookie",
  "proxy-authenticate",
  "proxy-authentication-info",
  "proxy-authorization",
  "age",
  "connection",
  "keep-alive",
  "transfer-encoding",
  "upgrade",
  "proxy-connection",
  "trailer",
  "te",
  "content-length",
  "cache-status",
  "surrogate-key",
  "cache-tag",
]);

/** Freshness of a response the origin decides on, as entry options. */
export interface Freshness {
  ttl: number;
  staleWhileRevalidate: number;
  staleIfError: number;
}

/** Statuses cachet understands (RFC 9111 §5.2.2.3 must-understand): those RFC 9110 defines. */
const UNDERSTOOD_STATUSES = new Set([
  200, 201, 202, 203, 204, 205, 206, 300, 301, 302, 303, 304, 305, 307, 308, 400, 401, 402, 403,
  404, 405, 406, 407, 408, 409, 410, 411, 412, 413, 414, 415, 416, 417, 421, 422, 426, 500, 501,
  502, 503, 504, 505,
]);

/** What a stored response may not exceed, and what to do when it does. */
export interface StoreLimits {
  readonly maxEntrySize: number;
  /** A response over `maxEntrySize`: report it, and the reason not to store it. */
  readonly oversize: (size: number | undefined) => NotStorable;
  /** The `Surrogate-Key`/`Cache-Tag` field to store with the response, if any. */
  readonly surrogate: [string, string] | undefined;
}

/** The stored response for `response`, with its freshness when the origin decides, or why not. */
export function storedResponse(
  route: CompiledRoute,
  request: HttpRequest,
  response: HttpResponse,
  times: { requestTime: number; responseTime: number },
  limits: StoreLimits,
): { record: StoredResponse; freshness: Freshness | undefined } | NotStorable {
  const { status, headers, body } = response;
  if (status < 200 || status === 206 || status === 304 || status > 599) {
    return new NotStorable(`status-${status}`);
  }
  // The origin's directives: a targeted field (RFC 9213) over Cache-Control when the origin
  // decides; on a route with its own ttl, the strictest of both.
  const { directives, targeted } = governingDirectives(headers);
  const cc = route.fromResponse ? directives : parseCacheControl(headers["cache-control"]);
  const strict = (name: string) => cc.has(name) || (!route.fromResponse && directives.has(name));
  // RFC 9111 §5.2.2.3: must-understand lifts no-store for the statuses cachet understands.
  const understood = cc.has("must-understand") && UNDERSTOOD_STATUSES.has(status);
  if (cc.has("must-understand") && !UNDERSTOOD_STATUSES.has(status)) {
    return new NotStorable("must-understand");
  }
  if (strict("no-store") && !understood) return new NotStorable("no-store");
  // Unqualified `private`/`no-cache` (a list of fields drops those fields only), in
  // Cache-Control or in the targeted field that governs this cache (RFC 9213 §2.1): a route's
  // own ttl overrides the origin's lifetimes, never its word that a response is personal.
  const unqualified = (name: string) =>
    cc.get(name) === true || (!route.fromResponse && directives.get(name) === true);
  if (unqualified("private")) return new NotStorable("private");
  if (!route.fromResponse && unqualified("no-cache")) return new NotStorable("no-cache");
  // Fields named by private="…" or no-cache="…" may not be stored; the rest may.
  const unstored = qualifiedFields(cc);
  if (headers["set-cookie"] !== undefined && !unstored.has("set-cookie")) {
    return new NotStorable("set-cookie");
  }
  let freshness: Freshness | undefined;
  let age0 = 0;
  let staleIfError: number | undefined;
  if (route.fromResponse) {
    const origin = originFreshness(status, headers, directives, targeted !== undefined, {
      ...times,
      heuristic: route.heuristic,
      heuristicMax: route.heuristicMax,
    });
    // RFC 9111 §3: explicit freshness makes any final status storable; without it only the
    // heuristically cacheable ones (the route's statuses) are kept, to be validated.
    if (!origin.explicit && !route.statuses.has(status)) return new NotStorable(`status-${status}`);
    age0 = origin.age0;
    const remaining = origin.lifetime - origin.age0;
    const swr = origin.mayServeStale ? (origin.staleWhileRevalidate ?? route.policy.swr) : 0;
    staleIfError = origin.mayServeStale ? (origin.staleIfError ?? route.policy.grace) : 0;
    const validatable = typeof headers.etag === "string" || headers["last-modified"] !== undefined;
    const keep = validatable ? route.keepStale : 0;
    if (remaining <= 0 && swr <= 0 && staleIfError <= 0 && keep <= 0) {
      return new NotStorable(origin.noCache ? "no-cache" : "no-freshness");
    }
    // The origin may promise more than any store keeps (an Expires centuries away, max-age
    // of 2^31 s): clamped to the longest duration cachet accepts, never refused.
    freshness = {
      ttl: clamp(remaining),
      staleWhileRevalidate: clamp(swr),
      staleIfError: clamp(Math.max(staleIfError, keep)),
    };
  } else if (!route.statuses.has(status)) {
    return new NotStorable(`status-${status}`);
  }
  // RFC 9111 §4.1: `Vary: *` always fails to match.
  const vary = parseVary(headers.vary);
  if (vary[0] === "*") return new NotStorable("vary-star");
  if (response.tooLarge) return limits.oversize(undefined);
  if (body === undefined && !response.pending) return new NotStorable("stream");
  const bytes =
    body === undefined
      ? Buffer.alloc(0)
      : typeof body === "string"
        ? Buffer.from(body, "utf8")
        : toBuffer(body);
  if (bytes.length > limits.maxEntrySize) return limits.oversize(bytes.length);
  // Every end-to-end field is stored (RFC 9111 §3.1), less the hop-by-hop ones and those the
  // `Connection` field lists (RFC 9110 §7.6.1), and those private="…"/no-cache="…" name.
  const dropped = connectionListed(headers.connection);
  const kept: Record<string, string | readonly string[]> = {};
  for (const [name, value] of Object.entries(headers)) {
    const lower = name.toLowerCase();
    if (value === undefined || NEVER_STORED.has(lower) || dropped.has(lower)) continue;
    if (unstored.has(lower)) continue;
    kept[lower] = Array.isArray(value) ? value.map(String) : String(value);
  }
  // cachet's own targeted field is for cachet alone (RFC 9213 §2.1).
  delete kept["cachet-cache-control"];
  // The origin's validator is kept, weak or strong (RFC 9110 §8.8.3): it is what the origin
  // can validate against later. Only a response without one (or with a malformed one) gets a
  // strong tag derived from the bytes we store, the same in every process.
  const origin = typeof kept.etag === "string" ? kept.etag.trim() : undefined;
  const originEtag = origin !== undefined && /^(?:W\/)?"[^"]*"$/.test(origin);
  const etag = originEtag ? origin! : strongEtag(bytes);
  delete kept.etag;
  // A hit replays the origin's Date; a response without one gets the time it was received
  // (RFC 9110 §6.6.1), so that hits never carry a newer Date than the response they are.
  if (kept.date === undefined) kept.date = new Date(times.responseTime).toUTCString();
  const surrogate = limits.surrogate;
  if (surrogate) kept[surrogate[0]] = surrogate[1];
  if (route.downstream) delete kept["cache-control"];
  const lastModified = httpDate(kept["last-modified"] as HeaderValue, times.responseTime);
  const varyOn = undeclaredVary(vary, route, headers["content-encoding"] !== undefined);
  return {
    record: {
      kind: "response",
      status,
      headers: kept,
      body: bytes,
      etag,
      originEtag,
      lastModified,
      codings: [],
      encoded: {},
      varyOn,
      selecting: varyOn.map((name) => selectingValue(request.headers[name])),
      age0,
      staleIfError,
    },
    freshness,
  };
}

/**
 * Response `Vary` names the route's key does not already cover (all of them when the route
 * builds its own key). `Accept-Encoding` is left out for an identity body: cachet negotiates
 * codings itself, and identity is acceptable to every client.
 */
function undeclaredVary(
  names: readonly string[],
  route: CompiledRoute,
  encoded: boolean,
): string[] {
  return names
    .filter(
      (name) =>
        (route.key || !route.vary.includes(name)) && (encoded || name !== "accept-encoding"),
    )
    .sort();
}

/** Whether a stored response may answer this request: its own `Vary` matches (RFC 9111 §4.1). */
export function usable(record: StoredResponse, request: HttpRequest): boolean {
  return (
    record.varyOn.length === 0 || varyMatches(record.varyOn, record.selecting, request.headers)
  );
}

export function toBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes)
    ? bytes
    : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function clamp(ms: number): number {
  return Math.min(Math.max(0, ms), MAX_DURATION_MS);
}
