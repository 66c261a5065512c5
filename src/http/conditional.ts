import { createHash } from "node:crypto";
import type { HeaderValue } from "./headers.js";
import { headerString } from "./headers.js";

/**
 * A strong entity tag for a body (RFC 9110 §8.8.3): a quoted SHA-256 prefix of the bytes, so
 * that every instance derives the same tag for the same body.
 */
export function strongEtag(body: Uint8Array): string {
  return `"${createHash("sha256").update(body).digest("base64url").slice(0, 27)}"`;
}

/** Entity tags listed in an `If-None-Match` value; `"*"` alone means any. Malformed items are skipped. */
export function parseEtagList(value: HeaderValue): string[] {
  const text = headerString(value);
  if (!text) return [];
  const out: string[] = [];
  // entity-tag = [ "W/" ] DQUOTE *etagc DQUOTE (RFC 9110 §8.8.3)
  const re = /\s*(\*|(?:W\/)?"[^"]*")\s*(?:,|$)/gy;
  let m: RegExpExecArray | null = re.exec(text);
  while (m !== null) {
    out.push(m[1]!);
    if (re.lastIndex >= text.length) break;
    m = re.exec(text);
  }
  return out;
}

/** Weak comparison (RFC 9110 §8.8.3.2): opaque tags equal once any `W/` is dropped. */
function weakEqual(a: string, b: string): boolean {
  return (a.startsWith("W/") ? a.slice(2) : a) === (b.startsWith("W/") ? b.slice(2) : b);
}

/**
 * Whether a GET/HEAD with this `If-None-Match` should get 304 for a stored response with
 * `etag` (RFC 9110 §13.1.2: false when any listed tag matches weakly, or `*` with a stored
 * representation; we answer 304 in that case).
 */
export function ifNoneMatchHits(header: HeaderValue, etag: string | undefined): boolean {
  const tags = parseEtagList(header);
  if (tags.length === 0) return false;
  for (const tag of tags) {
    if (tag === "*") return true;
    if (etag !== undefined && weakEqual(tag, etag)) return true;
  }
  return false;
}

/**
 * Whether `If-Modified-Since` allows a 304 (RFC 9110 §13.1.3): only when there is no
 * `If-None-Match`, the date parses, and the representation was not modified after it.
 */
export function notModifiedSince(
  ifModifiedSince: HeaderValue,
  ifNoneMatch: HeaderValue,
  lastModified: number | undefined,
): boolean {
  if (headerString(ifNoneMatch)) return false;
  const text = headerString(ifModifiedSince);
  if (!text || lastModified === undefined) return false;
  const since = Date.parse(text);
  if (Number.isNaN(since)) return false;
  return Math.floor(lastModified / 1000) <= Math.floor(since / 1000);
}
