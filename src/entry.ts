import { CorruptEntryError, OutdatedEntryError } from "./errors.js";
import type { Serializer } from "./serializer.js";

/**
 * The envelope stored under every key.
 *
 * `createdAt` is when the value's production started (so that a tag invalidated while the
 * factory ran invalidates the result too); the value is fresh until `freshUntil` and may be
 * served stale (stale-while-revalidate, stale-if-error) until `staleUntil`, when the store
 * drops it.
 */
export interface Entry<T = unknown> {
  readonly value: T;
  readonly createdAt: number;
  readonly freshUntil: number;
  readonly staleUntil: number;
  /**
   * The stale-while-revalidate window the writer chose, in ms after the entry stops being
   * fresh. Carried by the entry because it can come from the value itself (an HTTP response's
   * `stale-while-revalidate`). Absent means 0.
   */
  readonly swr?: number | undefined;
  /** The stale-if-error window the writer chose, in ms after the entry stops being fresh. */
  readonly grace?: number | undefined;
  /** How long the value took to produce, in ms (drives probabilistic early refresh). */
  readonly delta?: number | undefined;
  readonly tags: readonly string[];
}

/**
 * Binary layout, version 4 (big-endian):
 *
 * | bytes | field |
 * |---|---|
 * | 2 | magic `0xCA 0xC7` |
 * | 1 | format version (4) |
 * | 1 | serializer name length n (1–255) |
 * | n | serializer name, UTF-8 (`msgpack`, `json`, `raw`, `http-response`…) |
 * | 1 | flags: bit 0 = value is `undefined` |
 * | 8 × 3 | createdAt, freshUntil, staleUntil (float64, ms since the epoch) |
 * | 8 × 3 | swr, grace windows, delta (time to compute) (float64, ms) |
 * | 4 | payload length in bytes |
 * | 2 | tag count |
 * | per tag: 2 + n | tag length, UTF-8 bytes |
 * | payload length | payload from the serializer |
 *
 * A fixed binary header (rather than JSON around the payload) keeps byte payloads such as
 * HTTP bodies unescaped and makes the header cheap to validate. The payload length makes a
 * truncated (or padded) value unreadable instead of a different value: a JSON number or a
 * raw body cut short would otherwise still decode. The serializer's name makes an entry
 * written by an instance configured with another serializer a miss rather than a mis-decoded
 * value; version 3 entries (JSON payloads, no name) are misses too
 * ({@link OutdatedEntryError}).
 */
const MAGIC_0 = 0xca;
const MAGIC_1 = 0xc7;
const VERSION = 4;
const PREVIOUS_VERSION = 3;
const FLAG_UNDEFINED = 1;
const KNOWN_FLAGS = FLAG_UNDEFINED;
const FIXED_HEADER = 2 + 1 + 1 + 1 + 24 + 24 + 4 + 2;
const MAX_TAGS = 0xffff;
const MAX_PAYLOAD = 0xffffffff;

const nameBytes = new Map<string, Buffer>();

function serializerName(serializer: Serializer): Buffer {
  let bytes = nameBytes.get(serializer.name);
  if (bytes === undefined) {
    bytes = Buffer.from(serializer.name, "utf8");
    if (bytes.length < 1 || bytes.length > 255) {
      throw new RangeError("a serializer name is 1 to 255 bytes");
    }
    if (nameBytes.size < 64) nameBytes.set(serializer.name, bytes);
  }
  return bytes;
}

/** The name of the serializer that wrote `bytes` (a current-format entry), or `undefined`. */
export function entrySerializer(bytes: Uint8Array): string | undefined {
  if (bytes.length < 4 || bytes[0] !== MAGIC_0 || bytes[1] !== MAGIC_1 || bytes[2] !== VERSION)
    return undefined;
  const n = bytes[3]!;
  if (bytes.length < 4 + n) return undefined;
  return Buffer.from(bytes.buffer, bytes.byteOffset + 4, n).toString("utf8");
}

/** Encode an entry; throws whatever the serializer throws. */
export function encodeEntry(entry: Entry, serializer: Serializer): Buffer {
  const name = serializerName(serializer);
  const isUndefined = entry.value === undefined;
  const payload = isUndefined ? undefined : serializer.serialize(entry.value);
  const tagBytes = entry.tags.map((t) => Buffer.from(t, "utf8"));
  if (tagBytes.length > MAX_TAGS) throw new RangeError(`an entry carries at most ${MAX_TAGS} tags`);
  let headerSize = FIXED_HEADER + name.length;
  for (const t of tagBytes) {
    if (t.length > 0xffff) throw new RangeError("a tag is at most 65535 bytes");
    headerSize += 2 + t.length;
  }
  const payloadSize =
    payload === undefined
      ? 0
      : typeof payload === "string"
        ? Buffer.byteLength(payload, "utf8")
        : payload.byteLength;
  if (payloadSize > MAX_PAYLOAD) throw new RangeError(`a payload is at most ${MAX_PAYLOAD} bytes`);
  const out = Buffer.allocUnsafe(headerSize + payloadSize);
  out[0] = MAGIC_0;
  out[1] = MAGIC_1;
  out[2] = VERSION;
  out[3] = name.length;
  name.copy(out, 4);
  const h = 4 + name.length;
  out[h] = isUndefined ? FLAG_UNDEFINED : 0;
  out.writeDoubleBE(entry.createdAt, h + 1);
  out.writeDoubleBE(entry.freshUntil, h + 9);
  out.writeDoubleBE(entry.staleUntil, h + 17);
  out.writeDoubleBE(entry.swr ?? 0, h + 25);
  out.writeDoubleBE(entry.grace ?? 0, h + 33);
  out.writeDoubleBE(entry.delta ?? 0, h + 41);
  out.writeUInt32BE(payloadSize, h + 49);
  out.writeUInt16BE(tagBytes.length, h + 53);
  let offset = h + 55;
  for (const t of tagBytes) {
    out.writeUInt16BE(t.length, offset);
    t.copy(out, offset + 2);
    offset += 2 + t.length;
  }
  if (typeof payload === "string") out.write(payload, offset, "utf8");
  else if (payload !== undefined) out.set(payload, offset);
  return out;
}

/**
 * Decode and validate an entry. Anything that is not a well-formed current-version entry throws
 * {@link CorruptEntryError}; callers treat that as a miss. An entry of the previous format, or
 * written with another serializer, throws {@link OutdatedEntryError} (a `CorruptEntryError`
 * too), which callers may treat as a quiet miss. `anySerializer` decodes the payload with
 * `serializer` whatever wrote it (the CLI reads payloads as raw bytes).
 */
export function decodeEntry<T = unknown>(
  key: string,
  bytes: Uint8Array,
  serializer: Serializer,
  options?: { anySerializer?: boolean },
): Entry<T> {
  const buf = Buffer.isBuffer(bytes)
    ? bytes
    : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (buf.length < FIXED_HEADER) throw new CorruptEntryError(key, "too short");
  if (buf[0] !== MAGIC_0 || buf[1] !== MAGIC_1)
    throw new CorruptEntryError(key, "not a cachet entry");
  if (buf[2] === PREVIOUS_VERSION) {
    throw new OutdatedEntryError(key, "written by an older cachet (format version 3)");
  }
  if (buf[2] !== VERSION) throw new CorruptEntryError(key, `unknown format version ${buf[2]}`);
  const nameLength = buf[3]!;
  if (nameLength === 0 || buf.length < FIXED_HEADER + nameLength) {
    throw new CorruptEntryError(key, "too short");
  }
  const h = 4 + nameLength;
  // Compared as bytes: no string is made for the name on every read.
  const expected = serializerName(serializer);
  if (
    options?.anySerializer !== true &&
    (nameLength !== expected.length || buf.compare(expected, 0, nameLength, 4, h) !== 0)
  ) {
    const written = buf.toString("utf8", 4, h);
    throw new OutdatedEntryError(
      key,
      `written with the ${written} serializer, read with ${serializer.name}`,
    );
  }
  const flags = buf[h]!;
  if ((flags & ~KNOWN_FLAGS) !== 0) throw new CorruptEntryError(key, `unknown flags ${flags}`);
  const createdAt = buf.readDoubleBE(h + 1);
  const freshUntil = buf.readDoubleBE(h + 9);
  const staleUntil = buf.readDoubleBE(h + 17);
  const swr = buf.readDoubleBE(h + 25);
  const grace = buf.readDoubleBE(h + 33);
  const delta = buf.readDoubleBE(h + 41);
  if (
    !Number.isFinite(createdAt) ||
    !Number.isFinite(freshUntil) ||
    !Number.isFinite(staleUntil) ||
    freshUntil < createdAt ||
    staleUntil < freshUntil
  ) {
    throw new CorruptEntryError(key, "inconsistent timestamps");
  }
  if (!(swr >= 0 && grace >= 0 && Number.isFinite(swr) && Number.isFinite(grace))) {
    throw new CorruptEntryError(key, "invalid stale windows");
  }
  if (!(delta >= 0 && Number.isFinite(delta))) throw new CorruptEntryError(key, "invalid delta");
  const payloadSize = buf.readUInt32BE(h + 49);
  const tagCount = buf.readUInt16BE(h + 53);
  const tags: string[] = [];
  let offset = h + 55;
  for (let i = 0; i < tagCount; i++) {
    if (offset + 2 > buf.length) throw new CorruptEntryError(key, "truncated tags");
    const len = buf.readUInt16BE(offset);
    if (offset + 2 + len > buf.length) throw new CorruptEntryError(key, "truncated tags");
    tags.push(buf.toString("utf8", offset + 2, offset + 2 + len));
    offset += 2 + len;
  }
  if (buf.length - offset !== payloadSize) {
    throw new CorruptEntryError(
      key,
      buf.length - offset < payloadSize ? "truncated payload" : "bytes after the payload",
    );
  }
  let value: unknown;
  if (flags & FLAG_UNDEFINED) {
    if (payloadSize !== 0) throw new CorruptEntryError(key, "payload after an undefined value");
    value = undefined;
  } else {
    try {
      value = serializer.deserialize(buf.subarray(offset));
    } catch (cause) {
      throw new CorruptEntryError(key, `the ${serializer.name} serializer rejected the payload`, {
        cause,
      });
    }
  }
  return { value: value as T, createdAt, freshUntil, staleUntil, swr, grace, delta, tags };
}

/**
 * Make a value immutable so that a caller cannot change what later hits return. Typed arrays
 * cannot be frozen and are left as they are. An object that is already frozen is still walked:
 * `Object.freeze` is shallow, so its members may not be.
 */
export function deepFreeze<T>(value: T): T {
  freezeWalk(value, new Set());
  return value;
}

function freezeWalk(value: unknown, seen: Set<object>): void {
  if (value === null || typeof value !== "object" || seen.has(value)) return;
  if (ArrayBuffer.isView(value) || value instanceof ArrayBuffer) return;
  seen.add(value);
  Object.freeze(value);
  for (const key of Reflect.ownKeys(value)) {
    freezeWalk((value as Record<string | symbol, unknown>)[key], seen);
  }
}
