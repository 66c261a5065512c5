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
