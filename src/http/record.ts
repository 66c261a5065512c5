import type { Serializer } from "../serializer.js";

/**
 * A stored HTTP response: what is needed to replay it byte for byte, prepared once at store
 * time so that a hit only adds `Age` and `Cache-Status`.
 */
export interface StoredResponse {
  readonly status: number;
  /**
   * Response headers to replay, lower-case names, already filtered by the allow-list and
   * including `etag` and `content-length`. Shared by every hit: never mutate it.
   */
  readonly headers: Readonly<Record<string, string | readonly string[]>>;
  /** The body bytes. */
  readonly body: Buffer;
  /** The strong entity tag sent with the response. */
  readonly etag: string;
  /** `Last-Modified` as ms since the epoch, for `If-Modified-Since`, when the origin set one. */
  readonly lastModified: number | undefined;
}

/**
 * The headers of a 304 (RFC 9110 §15.4.5): those a 200 would carry that describe the
 * representation's metadata for caches, never the content ones.
 */
export const NOT_MODIFIED_HEADERS = [
  "cache-control",
  "content-location",
  "date",
  "etag",
  "expires",
  "vary",
  "last-modified",
] as const;

/**
 * Binary form: `u32` length of a JSON header block (status, headers, etag, lastModified),
 * the block, then the body bytes. The body is never escaped or re-encoded.
 */
export const responseSerializer: Serializer = {
  name: "http-response",
  serialize(value) {
    const record = value as StoredResponse;
    const meta = Buffer.from(
      JSON.stringify({
        s: record.status,
        h: record.headers,
        e: record.etag,
        m: record.lastModified ?? null,
      }),
      "utf8",
    );
    const out = Buffer.allocUnsafe(4 + meta.length + record.body.length);
    out.writeUInt32BE(meta.length, 0);
    meta.copy(out, 4);
    record.body.copy(out, 4 + meta.length);
    return out;
  },
  deserialize(bytes) {
    if (bytes.length < 4) throw new Error("truncated response record");
    const metaLength = bytes.readUInt32BE(0);
    if (4 + metaLength > bytes.length) throw new Error("truncated response record");
    const meta = JSON.parse(bytes.toString("utf8", 4, 4 + metaLength)) as {
      s: unknown;
      h: unknown;
      e: unknown;
      m: unknown;
    };
    if (
      typeof meta.s !== "number" ||
      !Number.isInteger(meta.s) ||
      meta.s < 100 ||
      meta.s > 599 ||
      typeof meta.e !== "string" ||
      !isHeaderRecord(meta.h) ||
      !(meta.m === null || typeof meta.m === "number")
    ) {
      throw new Error("malformed response record");
    }
    // Copy the body out of the entry buffer so that the record does not pin it.
    const body = Buffer.from(bytes.subarray(4 + metaLength));
    const record: StoredResponse = {
      status: meta.s,
      headers: meta.h,
      body,
      etag: meta.e,
      lastModified: meta.m ?? undefined,
    };
    return record;
  },
};

function isHeaderRecord(value: unknown): value is Record<string, string | string[]> {
  if (value === null || typeof value !== "object" || Array.isArray(value)) return false;
  for (const v of Object.values(value)) {
    if (typeof v === "string") continue;
    if (Array.isArray(v) && v.every((x) => typeof x === "string")) continue;
    return false;
  }
  return true;
}
