/**
 * Freshness and age when the origin decides (RFC 9111 §4.2, RFC 9213, RFC 5861): which
 * cache-control field governs, how long a response is fresh, how old it already is, and
 * whether it may ever be served stale. Pure functions of the response's headers and the
 * exchange's times; the HTTP cache turns their answers into an entry's policy.
 */
import { parseDictionary, Token } from "structured-headers";
import type { HeaderValue } from "./headers.js";
import { deltaSeconds, headerString, parseCacheControl } from "./headers.js";

/** Cache-control directives, names lower-cased; a directive without a value maps to `true`. */
export type Directives = Map<string, string | true>;

/**
 * Targeted cache-control fields (RFC 9213) cachet obeys, most specific first: its own, then
 * the one for CDNs (cachet is a shared cache in front of the origin, as a CDN is).
 */
export const TARGETED_FIELDS = ["cachet-cache-control", "cdn-cache-control"] as const;

/** Directives whose value, when present, must be an integer (RFC 9213 §2.1). */
const INTEGER_DIRECTIVES = new Set([
  "max-age",
  "s-maxage",
  "stale-while-revalidate",
  "stale-if-error",
]);

/**
 * The directives that govern this cache (RFC 9213 §2.1): those of the first targeted field
 * present and valid as a Structured Field dictionary — then `Cache-Control` and `Expires` are
 * ignored — else `Cache-Control`'s. `targeted` names the field used, if any.
 */
export function governingDirectives(headers: Readonly<Record<string, HeaderValue>>): {
  directives: Directives;
  targeted: string | undefined;
} {
  for (const name of TARGETED_FIELDS) {
    const text = headerString(headers[name]);
    if (text === undefined) continue;
    const directives = targetedDirectives(text);
    if (directives) return { directives, targeted: name };
  }
  return { directives: parseCacheControl(headers["cache-control"]), targeted: undefined };
}

/** A targeted field's directives, or `undefined` when it is not a valid dictionary. */
function targetedDirectives(text: string): Directives | undefined {
  let dictionary: ReturnType<typeof parseDictionary>;
  try {
    dictionary = parseDictionary(text);
  } catch {
    return undefined;
  }
  const out: Directives = new Map();
  for (const [rawName, member] of dictionary) {
    const name = rawName.toLowerCase();
    const value = member[0];
    if (Array.isArray(value)) {
      if (INTEGER_DIRECTIVES.has(name)) return undefined;
      continue;
    }
    if (value === true) {
      if (INTEGER_DIRECTIVES.has(name)) return undefined;
      out.set(name, true);
    } else if (typeof value === "number") {
      if (INTEGER_DIRECTIVES.has(name) && (!Number.isInteger(value) || value < 0)) return undefined;
      out.set(name, String(value));
    } else if (INTEGER_DIRECTIVES.has(name)) {
      // A wrong type for a directive we act on: the field is not for us to guess at.
      return undefined;
    } else if (typeof value === "string" || value instanceof Token) {
      out.set(name, String(value));
    } else {
      out.set(name, true);
    }
  }
  return out;
}

const DAYS = "(?:mon|tue|wed|thu|fri|sat|sun)";
const LONG_DAYS = "(?:monday|tuesday|wednesday|thursday|friday|saturday|sunday)";
const MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"];
const MONTH = `(${MONTHS.join("|")})`;
const IMF_FIXDATE = new RegExp(
  `^${DAYS}, (\\d{2}) ${MONTH} (\\d{4}) (\\d{2}):(\\d{2}):(\\d{2}) gmt$`,
);
const RFC850_DATE = new RegExp(
  `^${LONG_DAYS}, (\\d{2})-${MONTH}-(\\d{2}) (\\d{2}):(\\d{2}):(\\d{2}) gmt$`,
);
const ASCTIME_DATE = new RegExp(
  `^${DAYS} ${MONTH} ( \\d|\\d{2}) (\\d{2}):(\\d{2}):(\\d{2}) (\\d{4})$`,
);

/**
 * An HTTP-date (RFC 9110 §5.6.7) in ms since the epoch, or `undefined` when the value is not
 * one of its three formats (names are matched case-insensitively, as recipients may). A
 * repeated field is invalid. `now` resolves RFC 850's two-digit years (§5.6.7: a year more than
 * 50 years ahead is in the past century).
 */
export function httpDate(value: HeaderValue, now = Date.now()): number | undefined {
  if (value === undefined || Array.isArray(value)) return undefined;
  const text = String(value).trim().toLowerCase();
  let m = IMF_FIXDATE.exec(text);
  if (m) return utc(Number(m[3]), m[2]!, m[1]!, m[4]!, m[5]!, m[6]!);
  m = RFC850_DATE.exec(text);
  if (m) {
    const thisYear = new Date(now).getUTCFullYear();
    let year = Math.floor(thisYear / 100) * 100 + Number(m[3]);
    if (year > thisYear + 50) year -= 100;
    return utc(year, m[2]!, m[1]!, m[4]!, m[5]!, m[6]!);
  }
  m = ASCTIME_DATE.exec(text);
  if (m) return utc(Number(m[6]), m[1]!, m[2]!.trim(), m[3]!, m[4]!, m[5]!);
  return undefined;
}

function utc(year: number, month: string, day: string, h: string, mi: string, s: string) {
  const d = Number(day);
  const hours = Number(h);
  const minutes = Number(mi);
  const seconds = Number(s);
  if (d < 1 || d > 31 || hours > 23 || minutes > 59 || seconds > 60) return undefined;
  const time = Date.UTC(year, MONTHS.indexOf(month), d, hours, minutes, seconds);
  return Number.isNaN(time) ? undefined : time;
}

/**
 * The `Age` a response arrived with (RFC 9111 §5.1), in seconds: the first value of the first
 * line, when it is delta-seconds; otherwise 0 (the field is ignored).
 */
export function ageValue(value: HeaderValue): number {
  const text = Array.isArray(value) ? value[0] : value === undefined ? undefined : String(value);
  if (text === undefined) return 0;
  const first = text.split(",")[0]!.trim();
  return /^\d+$/.test(first) ? Math.min(Number(first), 2 ** 31) : 0;
}

/** Statuses heuristically cacheable (RFC 9110 §15.1). */
const HEURISTIC_STATUSES = new Set([200, 203, 204, 206, 300, 301, 308, 404, 405, 410, 414, 501]);

/** How the origin's headers say a response may be reused. */
export interface OriginFreshness {
  /** The freshness lifetime, in ms (0 when the response is never fresh). */
  readonly lifetime: number;
  /** Its age when the request that produced it was sent, in ms (RFC 9111 §4.2.3). */
  readonly age0: number;
  /** `stale-while-revalidate` (RFC 5861 §3), in ms, when the response gives one. */
  readonly staleWhileRevalidate: number | undefined;
  /** `stale-if-error` (RFC 5861 §4), in ms, when the response gives one. */
  readonly staleIfError: number | undefined;
  /**
   * May it ever be served stale (RFC 9111 §4.2.4)? Not with `must-revalidate`,
   * `proxy-revalidate`, `s-maxage` (§5.2.2.10) or `no-cache`.
   */
  readonly mayServeStale: boolean;
  /** `no-cache`: stored, but validated before every use (§5.2.2.4). */
  readonly noCache: boolean;
  /** The freshness came from explicit directives or `Expires` (not a heuristic, not none). */
  readonly explicit: boolean;
}

export interface FreshnessOptions {
  /** When the request was sent and when the response arrived, in ms. */
  readonly requestTime: number;
  readonly responseTime: number;
  /**
   * Heuristic freshness (RFC 9111 §4.2.2) for responses without explicit freshness: this
   * fraction of the time since `Last-Modified`, at most `heuristicMax` ms. `0` for none.
   */
  readonly heuristic: number;
  readonly heuristicMax: number;
}

/**
 * Freshness lifetime (RFC 9111 §4.2.1, for a shared cache: `s-maxage`, then `max-age`, then
 * `Expires` − `Date`), the response's age when it was requested (§4.2.3), and the stale rules,
 * from the governing directives (see {@link governingDirectives}).
 */
export function originFreshness(
  status: number,
  headers: Readonly<Record<string, HeaderValue>>,
  directives: Directives,
  targeted: boolean,
  options: FreshnessOptions,
): OriginFreshness {
  const { requestTime, responseTime } = options;
  const date = httpDate(headers.date, responseTime);
  const dateValue = date ?? responseTime;
  let lifetime: number | undefined;
  const sMaxAge = targeted ? undefined : deltaSeconds(directives, "s-maxage");
  const maxAge = deltaSeconds(directives, "max-age");
  if (sMaxAge !== undefined) lifetime = sMaxAge * 1000;
  else if (maxAge !== undefined) lifetime = maxAge * 1000;
  else if (!targeted && headers.expires !== undefined) {
    // An invalid Expires, "0" above all, means already expired (§5.3).
    const expires = httpDate(headers.expires, responseTime);
    lifetime = expires === undefined ? 0 : Math.max(0, expires - dateValue);
  }
  const explicit = lifetime !== undefined;
  if (lifetime === undefined) {
    const lastModified = httpDate(headers["last-modified"], responseTime);
    const heuristicAllowed =
      options.heuristic > 0 &&
      lastModified !== undefined &&
      (HEURISTIC_STATUSES.has(status) || directives.has("public"));
    lifetime = heuristicAllowed
      ? Math.min(options.heuristicMax, Math.max(0, (dateValue - lastModified) * options.heuristic))
      : 0;
  }
  // §4.2.3: corrected_initial_age = max(apparent_age, age_value + response_delay); kept here as
  // the age at request time, so that age at `now` is age0 + (now - requestTime).
  const apparentAge = date === undefined ? 0 : Math.max(0, responseTime - date);
  const age0 = Math.max(apparentAge - (responseTime - requestTime), ageValue(headers.age) * 1000);
  const noCache = directives.get("no-cache") === true;
  const mayServeStale = !(
    directives.has("must-revalidate") ||
    directives.has("proxy-revalidate") ||
    sMaxAge !== undefined ||
    noCache
  );
  const swr = deltaSeconds(directives, "stale-while-revalidate");
  const sie = deltaSeconds(directives, "stale-if-error");
  return {
    lifetime: noCache ? 0 : lifetime,
    age0: Math.max(0, age0),
    staleWhileRevalidate: swr === undefined ? undefined : swr * 1000,
    staleIfError: sie === undefined ? undefined : sie * 1000,
    mayServeStale,
    noCache,
    explicit,
  };
}

/**
 * Field names listed as the argument of `private` or `no-cache` (RFC 9111 §5.2.2.4,
 * §5.2.2.7): the response may be stored without them.
 */
export function qualifiedFields(directives: Directives): Set<string> {
  const out = new Set<string>();
  for (const name of ["private", "no-cache"]) {
    const v = directives.get(name);
    if (typeof v !== "string") continue;
    for (const field of v.split(",")) {
      const f = field.trim().toLowerCase();
      if (f) out.add(f);
    }
  }
  return out;
}
