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
  /**
   * The codings the body was compressed to once at store time (best first). Their bodies are
   * in {@link encoded} when this process holds them; a record read from a remote store has
   * none there: each coded body is an entry of its own, under {@link variantKey} (see
   * {@link CodedBody}), so that a hit reads only the body it sends.
   */
  readonly codings: readonly Coding[];
  /** The coded bodies this process holds, by coding (a subset of {@link codings}). */
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

/**
 * One compressed body of a stored response, stored under {@link variantKey} of the response's
 * key, with the same lifetime and tags. Served only with a response whose `etag` (and identity
 * body length) it carries: whatever replaced the response, an old copy is never served with it.
 */
export interface CodedBody {
  readonly kind: "coded";
  readonly coding: Coding;
  readonly etag: string;
  readonly length: number;
  readonly body: Buffer;
}

export type StoredRecord = StoredResponse | VaryMarker | CodedBody;

/**
 * The key of a stored response's body in `coding`. A space never appears in a request key
 * (the request target grammar has none, and such targets are never cached), so no request's
 * key can be a variant's.
 */
export function variantKey(key: string, coding: Coding): string {
  return `${key} ~${coding}`;
}

/** Whether `coded` is the `coding` body of `record` (same entity tag and identity length). */
export function codedBodyOf(
  record: StoredResponse,
  coding: Coding,
  coded: StoredRecord | undefined,
): Buffer | undefined {
  return coded?.kind === "coded" &&
    coded.coding === coding &&
    coded.etag === record.etag &&
    coded.length === record.body.length
    ? coded.body
    : undefined;
}

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
  const codings = CODINGS.filter((c) => encoded[c] !== undefined);
  if (codings.length === 0) return record;
  // The representation now depends on Accept-Encoding, whichever coding a client gets.
  const vary = record.headers.vary;
  const names = (Array.isArray(vary) ? vary.join(",") : (vary ?? "")) as string;
  const headers = /(^|,)\s*accept-encoding\s*(,|$)/i.test(names)
    ? record.headers
    : { ...record.headers, vary: names.trim() ? `${names}, Accept-Encoding` : "Accept-Encoding" };
  return { ...record, headers, codings, encoded };
}

/**
 * The coding to serve for an `Accept-Encoding` value (RFC 9110 §12.5.3) among the stored
 * ones: the acceptable one with the highest weight, `br` first on ties; `undefined` for
 * identity. Malformed members are ignored; identity is served when nothing else is acceptable.
 */
export function negotiate(
  acceptEncoding: string | undefined,
  available: readonly Coding[],
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
    if (!available.includes(coding)) continue;
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
 * Binary form: `u32` length of a JSON metadata block, the block, then the body. A response
 * carries its identity body only (its coded bodies are entries of their own, {@link CodedBody},
 * listed by name in the metadata); a coded body carries its bytes. Bodies are never escaped or
 * re-encoded, and decoded records keep views into the entry's bytes.
 *
 * The serializer's name is recorded in every entry: format 2 (coded bodies apart) is
 * `http-response-2`, so that an entry of the previous layout (`http-response`, every body in
 * one value) is a miss, never decoded as this one.
 */
export const recordSerializer: Serializer = {
  name: "http-response-2",
  serialize(value) {
    const record = value as StoredRecord;
    if (record.kind === "vary") return withMeta({ v: record.vary }, undefined);
    if (record.kind === "coded") {
      return withMeta({ k: record.coding, e: record.etag, n: record.length }, record.body);
    }
    return withMeta(
      {
        s: record.status,
        h: record.headers,
        e: record.etag,
        m: record.lastModified ?? null,
        o: record.originEtag,
        a: record.age0,
        ...(record.staleIfError === undefined ? {} : { g: record.staleIfError }),
        c: record.codings,
        ...(record.varyOn.length > 0 ? { x: record.varyOn, y: record.selecting } : {}),
      },
      record.body,
    );
  },
  deserialize(bytes) {
    if (bytes.length < 4) throw new Error("truncated response record");
    const metaLength = bytes.readUInt32BE(0);
    if (4 + metaLength > bytes.length) throw new Error("truncated response record");
    const meta = JSON.parse(bytes.toString("utf8", 4, 4 + metaLength)) as Record<string, unknown>;
    // The body is a view into the entry's bytes: no copy on a hit. (Whoever keeps the record
    // longer than the request, L1, is handed bytes of their own: see `Tiers`' decode.)
    const body = bytes.subarray(4 + metaLength);
    if (Array.isArray(meta.v)) {
      if (!meta.v.every((v) => typeof v === "string") || body.length !== 0) {
        throw new Error("malformed vary marker");
      }
      return { kind: "vary", vary: meta.v } satisfies VaryMarker;
    }
    if (meta.k !== undefined) {
      const { k, e, n } = meta;
      if (
        (k !== "br" && k !== "gzip") ||
        typeof e !== "string" ||
        typeof n !== "number" ||
        !Number.isInteger(n) ||
        n < 0
      ) {
        throw new Error("malformed coded body");
      }
      return { kind: "coded", coding: k, etag: e, length: n, body } satisfies CodedBody;
    }
    const { s, h, e, m, c, x = [], y = [], o = false, a = 0, g } = meta;
    if (
      typeof s !== "number" ||
      !Number.isInteger(s) ||
      s < 100 ||
      s > 599 ||
      typeof e !== "string" ||
      !isHeaderRecord(h) ||
      !(m === null || typeof m === "number") ||
      !Array.isArray(c) ||
      !c.every((v, i) => (v === "br" || v === "gzip") && c.indexOf(v) === i) ||
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
    return {
      kind: "response",
      status: s,
      headers: h,
      body,
      etag: e,
      lastModified: m ?? undefined,
      codings: c as Coding[],
      encoded: {},
      originEtag: o,
      age0: a,
      staleIfError: g as number | undefined,
      varyOn: x as string[],
      selecting: y as (string | null)[],
    } satisfies StoredResponse;
  },
};

/** `u32` metadata length, the metadata as JSON, then `body`. */
function withMeta(meta: object, body: Buffer | undefined): Buffer {
  const json = JSON.stringify(meta);
  const metaLength = Buffer.byteLength(json, "utf8");
  const out = Buffer.allocUnsafe(4 + metaLength + (body?.length ?? 0));
  out.writeUInt32BE(metaLength, 0);
  out.write(json, 4, "utf8");
  if (body) body.copy(out, 4 + metaLength);
  return out;
}

function isHeaderRecord(value: unknown): value is Record<string, string | string[]> {
  if (value === null || typeof value !== "object" || Array.isArray(value)) return false;
  for (const v of Object.values(value)) {
    if (typeof v === "string") continue;
    if (Array.isArray(v) && v.every((x) => typeof x === "string")) continue;
    return false;
  }
  return true;
}
