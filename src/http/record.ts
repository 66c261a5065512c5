import { promisify } from "node:util";
import { brotliCompress, constants, gzip } from "node:zlib";
import type { Serializer } from "../serializer.js";

/** Content codings cachet stores ready-made, best first. */
export type Coding = "br" | "gzip";
export const CODINGS: readonly Coding[] = ["br", "gzip"];

/**
 * A stored HTTP response: what is needed to replay it byte for byte, prepared once at store
 * time so that a hit only picks a body and adds `Age` and `Cache-Status`.
 */
export interface StoredResponse {
  readonly kind: "response";
  readonly status: number;
  /**
   * Headers to replay, lower-case names, filtered by the allow-list; without
   * `content-length` and `etag`, which depend on the coding served. Never mutate it.
   */
  readonly headers: Readonly<Record<string, string | readonly string[]>>;
  /** The identity body. */
  readonly body: Buffer;
  /** The identity body's entity tag: the origin's (weak or strong), else a strong digest. */
  readonly etag: string;
  /** `etag` is the origin's, so it can be sent back to validate (`If-None-Match`). */
  readonly originEtag: boolean;
  /**
   * The response's age, in ms, when the request that produced it was sent (RFC 9111 §4.2.3):
   * a hit's `Age` is this plus the time since the entry was created.
   */
  readonly age0: number;
  /**
   * How long after it turns stale the response may be served because producing a new one
   * failed (`stale-if-error`, RFC 5861 §4), in ms; `undefined` for as long as the entry lives.
   * An entry may live longer than that, kept only to be validated.
   */
  readonly staleIfError: number | undefined;
  /** `Last-Modified` in ms since the epoch, when the origin sent one. */
  readonly lastModified: number | undefined;
  /** The body compressed once at store time, by coding. */
  readonly encoded: Readonly<Partial<Record<Coding, Buffer>>>;
  /**
   * Request headers the response varies on beyond what the route's key covers (its own
   * `Vary`, lower-case, sorted), and the values they had on the request that produced it
   * (`null` when absent). A stored response is only ever served to a request whose values
   * match (RFC 9111 §4.1), whatever key it was found under.
   */
  readonly varyOn: readonly string[];
  readonly selecting: readonly (string | null)[];
}

/**
 * Stored under a request's primary key when the response varied on headers the route does
 * not key on (RFC 9111 §4.1): the listed headers select the stored response (secondary key).
 */
export interface VaryMarker {
  readonly kind: "vary";
  readonly vary: readonly string[];
}

export type StoredRecord = StoredResponse | VaryMarker;

/** The entity tag of a coded body: the identity tag with the coding appended inside the quotes. */
export function codedEtag(etag: string, coding: Coding | undefined): string {
  if (coding === undefined) return etag;
  const weak = etag.startsWith("W/");
  const opaque = weak ? etag.slice(2) : etag;
  return `${weak ? "W/" : ""}${opaque.slice(0, -1)}-${coding}"`;
}

/**
 * The headers of a 304 (RFC 9110 §15.4.5): those a 200 would carry that caches need, never
 * the content ones.
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

const COMPRESSIBLE =
  /^(?:text\/|application\/(?:json|javascript|ecmascript|xml|x-www-form-urlencoded|graphql|ld\+json|[\w.+-]*\+(?:json|xml))|image\/svg\+xml)/i;

const brotli = promisify(brotliCompress);
const gz = promisify(gzip);

/** Options for compressing bodies once at store time. */
export interface CompressionOptions {
  /** Smallest body compressed, in bytes. @default 1024 */
  threshold: number;
  /** Codings to store. @default ["br", "gzip"] */
  codings: readonly Coding[];
}

/**
 * The record with its compressed bodies, when the body is large enough, of a compressible
 * type, not already encoded by the application, and smaller once compressed. Runs on the
 * thread pool, after the leader's response has gone out.
 */
export async function compressRecord(
  record: StoredResponse,
  options: CompressionOptions,
): Promise<StoredResponse> {
  const type = record.headers["content-type"];
  if (
    record.body.length < options.threshold ||
    record.headers["content-encoding"] !== undefined ||
    typeof type !== "string" ||
    !COMPRESSIBLE.test(type) ||
    record.status === 204 ||
    record.status === 304
  ) {
    return record;
  }
  const encoded: Partial<Record<Coding, Buffer>> = {};
  await Promise.all(
    options.codings.map(async (coding) => {
      const out =
        coding === "br"
          ? await brotli(record.body, {
              params: {
                [constants.BROTLI_PARAM_QUALITY]: 6,
                [constants.BROTLI_PARAM_SIZE_HINT]: record.body.length,
              },
            })
          : await gz(record.body, { level: 6 });
      if (out.length < record.body.length) encoded[coding] = out;
    }),
  );
  if (Object.keys(encoded).length === 0) return record;
  // The representation now depends on Accept-Encoding, whichever coding a client gets.
  const vary = record.headers.vary;
  const names = (Array.isArray(vary) ? vary.join(",") : (vary ?? "")) as string;
  const headers = /(^|,)\s*accept-encoding\s*(,|$)/i.test(names)
    ? record.headers
    : { ...record.headers, vary: names.trim() ? `${names}, Accept-Encoding` : "Accept-Encoding" };
  return { ...record, headers, encoded };
}

/**
 * The coding to serve for an `Accept-Encoding` value (RFC 9110 §12.5.3) among the stored
 * ones: the acceptable one with the highest weight, `br` first on ties; `undefined` for
 * identity. Malformed members are ignored; identity is served when nothing else is acceptable.
 */
export function negotiate(
  acceptEncoding: string | undefined,
  available: Readonly<Partial<Record<Coding, Buffer>>>,
): Coding | undefined {
  if (!acceptEncoding) return undefined;
  let star: number | undefined;
  const weights = new Map<string, number>();
  for (const member of acceptEncoding.split(",")) {
    const [rawName, ...params] = member.split(";");
    const name = rawName?.trim().toLowerCase();
    if (!name) continue;
    let q = 1;
    for (const p of params) {
      const m = /^\s*q\s*=\s*([01](?:\.\d{0,3})?)\s*$/i.exec(p);
      if (m) q = Number(m[1]);
    }
    if (name === "*") star = q;
    else if (!weights.has(name)) weights.set(name, q);
  }
  let best: Coding | undefined;
  let bestQ = 0;
  for (const coding of CODINGS) {
    if (!available[coding]) continue;
    const q =
      weights.get(coding) ?? (coding === "gzip" ? weights.get("x-gzip") : undefined) ?? star ?? 0;
    if (q > bestQ) {
      best = coding;
      bestQ = q;
    }
  }
  return best;
}

/**
 * Binary form: `u32` length of a JSON metadata block, the block, then the identity body and
 * the coded bodies back to back (their lengths are in the metadata). Bodies are never escaped
 * or re-encoded.
 */
export const recordSerializer: Serializer = {
  name: "http-response",
  serialize(value) {
    const record = value as StoredRecord;
    if (record.kind === "vary") {
      const meta = Buffer.from(JSON.stringify({ v: record.vary }), "utf8");
      const out = Buffer.allocUnsafe(4 + meta.length);
      out.writeUInt32BE(meta.length, 0);
      meta.copy(out, 4);
      return out;
    }
    const codings = CODINGS.filter((c) => record.encoded[c] !== undefined);
    const meta = Buffer.from(
      JSON.stringify({
        s: record.status,
        h: record.headers,
        e: record.etag,
        m: record.lastModified ?? null,
        o: record.originEtag,
        a: record.age0,
        ...(record.staleIfError === undefined ? {} : { g: record.staleIfError }),
        b: record.body.length,
        c: codings.map((c) => [c, record.encoded[c]!.length]),
        ...(record.varyOn.length > 0 ? { x: record.varyOn, y: record.selecting } : {}),
      }),
      "utf8",
    );
    const parts = [record.body, ...codings.map((c) => record.encoded[c]!)];
    const size = 4 + meta.length + parts.reduce((n, p) => n + p.length, 0);
    const out = Buffer.allocUnsafe(size);
    out.writeUInt32BE(meta.length, 0);
    meta.copy(out, 4);
    let offset = 4 + meta.length;
    for (const p of parts) {
      p.copy(out, offset);
      offset += p.length;
    }
    return out;
  },
  deserialize(bytes) {
    if (bytes.length < 4) throw new Error("truncated response record");
    const metaLength = bytes.readUInt32BE(0);
    if (4 + metaLength > bytes.length) throw new Error("truncated response record");
    const meta = JSON.parse(bytes.toString("utf8", 4, 4 + metaLength)) as Record<string, unknown>;
    if (Array.isArray(meta.v)) {
      if (!meta.v.every((v) => typeof v === "string")) throw new Error("malformed vary marker");
      return { kind: "vary", vary: meta.v } satisfies VaryMarker;
    }
    const { s, h, e, m, b, c, x = [], y = [], o = false, a = 0, g } = meta;
    if (
      typeof s !== "number" ||
      !Number.isInteger(s) ||
      s < 100 ||
      s > 599 ||
      typeof e !== "string" ||
      !isHeaderRecord(h) ||
      !(m === null || typeof m === "number") ||
      typeof b !== "number" ||
      !Array.isArray(c) ||
      !Array.isArray(x) ||
      !Array.isArray(y) ||
      x.length !== y.length ||
      !x.every((v) => typeof v === "string") ||
      !y.every((v) => v === null || typeof v === "string") ||
      typeof o !== "boolean" ||
      typeof a !== "number" ||
      !(g === undefined || typeof g === "number")
    ) {
      throw new Error("malformed response record");
    }
    let offset = 4 + metaLength;
    // Bodies are views into the entry's bytes (no copy on a hit), unless those bytes are a
    // small part of a larger buffer (a socket read), which the record must not keep alive.
    const share = bytes.buffer.byteLength <= bytes.length * 2;
    const take = (n: unknown): Buffer => {
      if (typeof n !== "number" || !Number.isInteger(n) || n < 0 || offset + n > bytes.length) {
        throw new Error("malformed response record lengths");
      }
      const view = bytes.subarray(offset, offset + n);
      offset += n;
      return share ? view : Buffer.from(view);
    };
    const body = take(b);
    const encoded: Partial<Record<Coding, Buffer>> = {};
    for (const pair of c) {
      if (!Array.isArray(pair) || (pair[0] !== "br" && pair[0] !== "gzip")) {
        throw new Error("malformed response record codings");
      }
      encoded[pair[0] as Coding] = take(pair[1]);
    }
    if (offset !== bytes.length) throw new Error("trailing bytes in response record");
    return {
      kind: "response",
      status: s,
      headers: h,
      body,
      etag: e,
      lastModified: m ?? undefined,
      encoded,
      originEtag: o,
      age0: a,
      staleIfError: g as number | undefined,
      varyOn: x as string[],
      selecting: y as (string | null)[],
    } satisfies StoredResponse;
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
