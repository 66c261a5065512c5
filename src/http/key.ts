import { unescape as unescapeQuery } from "node:querystring";
import { digest } from "../keys.js";
import type { HeaderValue } from "./headers.js";
import { headerString } from "./headers.js";

/** Keys longer than this are replaced by their digest, so a key never grows with the input. */
const MAX_KEY_LENGTH = 200;

/**
 * The query string with its parameters sorted by name, bytes untouched: `?b=2&a=1` and
 * `?a=1&b=2` share a key, while `?a=1%26b=2` (one parameter) and `?a=1&b=2` (two) do not.
 * Empty parameters (`?&a=1&`) are dropped. The sort is stable and compares names as the
 * frameworks read them (`+` a space, percent-encoding decoded), so parameters repeated under
 * one name keep their relative order however each is spelled: `?a=1&a=EVIL` and
 * `?a=EVIL&a=1` are different requests (frameworks hand the handler the first, or the list in
 * order), and so are `?%61=EVIL&a=1` and `?a=1&%61=EVIL`.
 */
export function canonicalQuery(query: string): string {
  if (query === "") return "";
  // One parameter (the common case): nothing to sort, no arrays to build.
  if (query.indexOf("&") === -1) return `?${query}`;
  const params = query.split("&").filter((p) => p !== "");
  if (params.length === 0) return "";
  if (params.length === 1) return `?${params[0]}`;
  const named = params.map((param) => ({ param, name: paramName(param) }));
  named.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  return `?${named.map((p) => p.param).join("&")}`;
}

/**
 * A parameter's name as Node's query parsers read it (`querystring`, which Express and
 * Fastify use; Hono's decoder agrees on valid input): `+` is a space, `%XX` decoded, bytes
 * that are not UTF-8 replaced (so such names compare equal, which only keeps their order).
 */
function paramName(param: string): string {
  const eq = param.indexOf("=");
  const raw = eq === -1 ? param : param.slice(0, eq);
  if (raw.indexOf("%") === -1 && raw.indexOf("+") === -1) return raw;
  return unescapeQuery(raw.replace(/\+/g, " "));
}

/**
 * An origin-form request target (RFC 9112 §3.2.1) made only of the characters RFC 3986 allows
 * in a path and a query: unreserved, percent-encoded octets, sub-delims, `:`, `@`, `/`, `?`.
 * Anything else — a fragment (`#`), raw spaces, quotes, braces, non-ASCII, a stray `%`, an
 * absolute-form or asterisk-form target — is a request the cache neither serves nor stores:
 * frameworks disagree on what such a target means (one puts `#?a=2` into the query the handler
 * reads, the key would have dropped it), so the only safe answer is to pass it through.
 */
const ORIGIN_FORM = /^\/(?:[A-Za-z0-9\-._~!$&'()*+,;=:@/?]|%[0-9A-Fa-f]{2})*$/;

/** Whether `target` is an origin-form request target the cache may key (see ORIGIN_FORM). */
export function cacheableTarget(target: string): boolean {
  return ORIGIN_FORM.test(target);
}

/**
 * A host as a key part: lower-cased; `undefined` when it is absent or holds characters a
 * host (reg-name, IPv4, IP-literal) and port cannot (RFC 3986 §3.2.2), so that no host can
 * forge another key (a `/` in a host would shift the path).
 */
export function keyHost(host: string | undefined): string | undefined {
  if (host === undefined || host === "" || host.length > 255) return undefined;
  const lower = host.toLowerCase();
  return /^[a-z0-9.\-_~!$&'()*+,;=%[\]:]+$/.test(lower) ? lower : undefined;
}

/** Split a request target into its path and its query (without `?`). Fragments are dropped. */
export function splitUrl(url: string): { path: string; query: string } {
  const hash = url.indexOf("#");
  const target = hash === -1 ? url : url.slice(0, hash);
  const q = target.indexOf("?");
  return q === -1
    ? { path: target, query: "" }
    : { path: target.slice(0, q), query: target.slice(q + 1) };
}

/**
 * The key of a request: host (when keyed), path, canonical query, and the values of the
 * `vary` request headers (lower-case names, in the order given, which the caller keeps
 * sorted). The method is not part of it: only GET responses are stored, and HEAD is answered
 * from them. Readable keys start with the host or with `/`.
 */
export function requestKey(
  host: string | undefined,
  path: string,
  query: string,
  vary: readonly string[],
  headers: Readonly<Record<string, HeaderValue>>,
): string {
  let key = (host ?? "") + path + canonicalQuery(query);
  for (const name of vary) {
    // A header's absence and its empty value are different requests.
    const value = headerString(headers[name]);
    key += value === undefined ? `\n${name}` : `\n${name}:${normalizeSpace(value)}`;
  }
  return shorten(key);
}

/** Keys beyond {@link MAX_KEY_LENGTH} become `#<sha256>`; readable keys never start with `#`. */
export function shorten(key: string): string {
  return key.length > MAX_KEY_LENGTH || key.startsWith("#") ? `#${digest(key)}` : key;
}

/**
 * A selecting header's value as keys and stored responses compare it (RFC 9111 §4.1: values
 * may be normalized): repeated lines combined, whitespace runs collapsed; `null` when absent.
 */
export function selectingValue(value: HeaderValue): string | null {
  const text = headerString(value);
  return text === undefined ? null : normalizeSpace(text);
}

/** Whether a request carries the selecting header values a stored response was produced for. */
export function varyMatches(
  names: readonly string[],
  selecting: readonly (string | null)[],
  headers: Readonly<Record<string, HeaderValue>>,
): boolean {
  for (let i = 0; i < names.length; i++) {
    if (selectingValue(headers[names[i]!]) !== selecting[i]) return false;
  }
  return true;
}

function normalizeSpace(value: string): string {
  return value.trim().replace(/\s+/g, " ");
}

/**
 * The secondary key of a response that varies on headers the route does not key on: the
 * primary key plus those request headers' values (RFC 9111 §4.1).
 */
export function varyKey(
  primary: string,
  names: readonly string[],
  headers: Readonly<Record<string, HeaderValue>>,
): string {
  let key = `${primary}\n~`;
  for (const name of names) {
    const value = headerString(headers[name]);
    key += value === undefined ? `\n${name}` : `\n${name}:${normalizeSpace(value)}`;
  }
  return shorten(key);
}

/**
 * The tag every stored response of a path carries, so that the path can be invalidated. The
 * path is normalized the way the most lenient router reads it (see {@link routePath}), so that
 * invalidating `/items/1` reaches `/items/%31`, `/ITEMS/1` and `/items/1/`: an invalidation may
 * reach more than one resource (a miss more), never fewer.
 */
export function pathTag(path: string): string {
  const normal = routePath(path);
  return normal.length > 200 ? `@path:#${digest(normal)}` : `@path:${normal}`;
}

/**
 * A path as routers match it, at its most lenient: percent-encoded octets decoded (except
 * `/`, `%`, `?` and `#`, which would change the path's structure), dot segments removed
 * (RFC 3986 §5.2.4), empty segments and a trailing slash dropped, letters lower-cased
 * (Express routes case-insensitively and ignores a trailing slash by default; Fastify and
 * Hono decode before matching).
 */
export function routePath(path: string): string {
  let decoded = path;
  if (path.includes("%")) {
    decoded = path
      .split(/(%2[Ff]|%25|%3[Ff]|%23)/)
      .map((part, i) => (i % 2 === 1 ? part.toUpperCase() : safeDecode(part)))
      .join("");
  }
  const out: string[] = [];
  for (const segment of decoded.split("/")) {
    if (segment === "" || segment === ".") continue;
    if (segment === "..") out.pop();
    else out.push(segment.toLowerCase());
  }
  return `/${out.join("/")}`;
}

function safeDecode(text: string): string {
  try {
    const decoded = decodeURIComponent(text);
    // Control characters stay encoded: a tag is printable.
    for (let i = 0; i < decoded.length; i++) {
      const code = decoded.charCodeAt(i);
      if (code < 0x20 || code === 0x7f) return text;
    }
    return decoded;
  } catch {
    return text;
  }
}
