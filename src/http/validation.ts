/**
 * Validation (RFC 9111 §4.3): the conditional request that revalidates a stored response, and
 * the stored response freshened by a 304.
 */
import type { HeaderValue } from "./headers.js";
import { headerString } from "./headers.js";
import type { StoredResponse } from "./record.js";
import type { HttpResponse } from "./types.js";

/**
 * The request headers of a refresh of `stored`: the client's, without its own conditionals
 * (the cache needs a full response, or a 304 for the one it holds), with the stored
 * response's validators (RFC 9111 §4.3.1): the origin's `ETag` and `Last-Modified`.
 */
export function validationHeaders(
  headers: Readonly<Record<string, HeaderValue>>,
  stored: StoredResponse | undefined,
): Record<string, HeaderValue> {
  const out: Record<string, HeaderValue> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (name !== "if-none-match" && name !== "if-modified-since") out[name] = value;
  }
  if (stored?.originEtag) out["if-none-match"] = stored.etag;
  const lastModified = stored?.headers["last-modified"];
  if (typeof lastModified === "string") out["if-modified-since"] = lastModified;
  return out;
}

/** Header fields a 304 does not update in the stored response (RFC 9111 §3.2). */
const NOT_UPDATED = new Set(["content-length", "content-encoding", "content-range", "etag"]);

/** Whether a 304 validates the stored response (RFC 9111 §4.3.4: its ETag, when it has one). */
export function sameValidator(stored: StoredResponse, response: HttpResponse): boolean {
  const etag = headerString(response.headers.etag);
  if (etag === undefined) return true;
  const strip = (tag: string) => (tag.startsWith("W/") ? tag.slice(2) : tag);
  return stored.originEtag && strip(etag.trim()) === strip(stored.etag);
}

/** The stored response freshened with a 304's fields: the same body, the new metadata. */
export function freshened(
  stored: StoredResponse,
  notModified: HttpResponse,
  receivedAt: number,
): HttpResponse {
  const headers: Record<string, HeaderValue> = { ...stored.headers } as Record<string, HeaderValue>;
  if (stored.originEtag) headers.etag = stored.etag;
  for (const [name, value] of Object.entries(notModified.headers)) {
    const lower = name.toLowerCase();
    if (value !== undefined && !NOT_UPDATED.has(lower)) headers[lower] = value;
  }
  // The 304 is the newest message about the response: its Date, or when it arrived (RFC 9110
  // §6.6.1), not the stored one's, which would make the freshened response look old.
  if (notModified.headers.date === undefined) headers.date = new Date(receivedAt).toUTCString();
  return { status: stored.status, headers, body: stored.body };
}
