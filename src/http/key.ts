import { digest } from "../keys.js";
import type { HeaderValue } from "./headers.js";
import { headerString } from "./headers.js";

/** Keys longer than this are replaced by their digest, so a key never grows with the input. */
const MAX_KEY_LENGTH = 200;

/**
 * The query string with its parameters sorted, bytes untouched: `?b=2&a=1` and `?a=1&b=2`
 * share a key, while `?a=1%26b=2` (one parameter) and `?a=1&b=2` (two) do not. Empty
 * parameters (`?&a=1&`) are dropped. Sorting is by the raw `name=value` text, so parameters
 * repeated with different values keep a canonical order too.
 */
export function canonicalQuery(query: string): string {
  if (query === "") return "";
  // One parameter (the common case): nothing to sort, no arrays to build.
  if (query.indexOf("&") === -1) return `?${query}`;
  const params = query.split("&").filter((p) => p !== "");
  if (params.length === 0) return "";
  if (params.length > 1) params.sort(compareParams);
  return `?${params.join("&")}`;
}

function compareParams(a: string, b: string): number {
  const an = a.indexOf("=") === -1 ? a : a.slice(0, a.indexOf("="));
  const bn = b.indexOf("=") === -1 ? b : b.slice(0, b.indexOf("="));
  if (an !== bn) return an < bn ? -1 : 1;
  return a < b ? -1 : a > b ? 1 : 0;
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
 * The key of a request: path, canonical query, and the values of the `vary` request headers
 * (lower-case names, in the order given, which the caller keeps sorted). The method is not
 * part of it: only GET responses are stored, and HEAD is answered from them.
 */
export function requestKey(
  path: string,
  query: string,
  vary: readonly string[],
  headers: Readonly<Record<string, HeaderValue>>,
): string {
  let key = path + canonicalQuery(query);
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

/** The tag every stored response of a path carries, so that the path can be invalidated. */
export function pathTag(path: string): string {
  return path.length > 200 ? `@path:#${digest(path)}` : `@path:${path}`;
}
