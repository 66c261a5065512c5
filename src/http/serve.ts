/** Serving a stored response: what a 304 carries (RFC 9110 §15.4.5). */
import { NOT_MODIFIED_HEADERS } from "./record.js";

/** The fields of a 304 made from a full reply's: never the content ones. */
export function notModifiedHeaders(
  headers: Record<string, string | readonly string[]>,
): Record<string, string | readonly string[]> {
  const out: Record<string, string | readonly string[]> = {};
  for (const name of [...NOT_MODIFIED_HEADERS, "age", "cache-status"]) {
    const v = headers[name];
    if (v !== undefined) out[name] = v;
  }
  return out;
}

/**
 * The single byte range a stored response of `total` bytes can answer (RFC 9110 §14.2):
 * `{ start, end }` (inclusive), `"unsatisfiable"` (416), or `undefined` to send the whole
 * response (no `Range`, several ranges, a unit other than bytes, a malformed value, or an
 * `If-Range` that no longer matches).
 */
export function byteRange(
  range: string | undefined,
  ifRange: string | undefined,
  total: number,
  etag: string,
  lastModified: number | undefined,
): { start: number; end: number } | "unsatisfiable" | undefined {
  if (range === undefined) return undefined;
  if (ifRange !== undefined) {
    const tag = ifRange.trim();
    if (tag.startsWith('"') || tag.startsWith("W/")) {
      // A strong comparison only (RFC 9110 §13.1.5).
      if (tag.startsWith("W/") || etag.startsWith("W/") || tag !== etag) return undefined;
    } else {
      const date = Date.parse(tag);
      if (Number.isNaN(date) || lastModified === undefined || date !== lastModified)
        return undefined;
    }
  }
  const m = /^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$/i.exec(range);
  if (!m || (m[1] === "" && m[2] === "")) return undefined;
  if (m[1] === "") {
    const suffix = Number(m[2]);
    if (suffix === 0) return "unsatisfiable";
    return { start: Math.max(0, total - suffix), end: total - 1 };
  }
  const start = Number(m[1]);
  const end = m[2] === "" ? total - 1 : Math.min(Number(m[2]), total - 1);
  if (m[2] !== "" && Number(m[2]) < start) return undefined;
  if (start >= total) return "unsatisfiable";
  return { start, end };
}
