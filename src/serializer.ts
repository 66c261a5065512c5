import { UnsupportedValueError } from "./errors.js";
import { type FidelityRules, findUnsupported, type UnsupportedAt } from "./fidelity.js";
import { addExtension, Packr } from "./vendor/msgpackr.js";

/**
 * Turns values into bytes for remote stores and back. Whatever a serializer returns from
 * `deserialize` is data: nothing read back from a store is evaluated.
 */
export interface Serializer {
  /**
   * A short name, for error messages. It is also recorded in every entry: an entry written
   * under another name is a miss, never decoded by the wrong format.
   */
  readonly name: string;
  /** Encode a value. Returning a string lets cachet write it straight into the entry buffer. */
  serialize(value: unknown): Uint8Array | string;
  /** Decode bytes produced by `serialize`. Throwing marks the entry corrupt (a miss). */
  deserialize(bytes: Buffer): unknown;
  /**
   * The first place in `value` this serializer cannot round-trip, without encoding it. When
   * present, cachet refuses such values with {@link UnsupportedValueError} in every tier,
   * the memory-only one included (which never encodes). Without it, values are not checked.
   */
  unsupported?(value: unknown): UnsupportedAt | undefined;
}

export type { UnsupportedAt } from "./fidelity.js";

function refuse(serializer: string, found: UnsupportedAt): never {
  throw new UnsupportedValueError(undefined, found.path, found.reason, serializer);
}

const jsonRules: FidelityRules = {
  prototypes: new Set(),
  bigint: false,
  nestedUndefined: false,
  nonFinite: false,
  loneSurrogates: true,
  cycles: false,
};

/**
 * JSON, for interoperability with other readers of the store. It stores only what
 * `JSON.parse(JSON.stringify(v))` gives back unchanged: plain objects, dense arrays, strings,
 * finite numbers, booleans and `null` (and `undefined` as the whole value). A Date, Map, Set,
 * Buffer, BigInt, NaN, nested `undefined` or a cycle is refused with
 * {@link UnsupportedValueError}. Shared references come back as copies.
 */
export const jsonSerializer: Serializer = {
  name: "json",
  serialize(value) {
    const found = findUnsupported(value, jsonRules);
    if (found) refuse("json", found);
    const text = JSON.stringify(value);
    if (text === undefined) throw new TypeError(`JSON cannot represent a ${typeof value}`);
    return text;
  },
  deserialize(bytes) {
    return JSON.parse(bytes.toString("utf8"));
  },
  unsupported(value) {
    return findUnsupported(value, jsonRules);
  },
};

/** Bytes stored as they are: values must be Buffers or Uint8Arrays; reads give Buffers. */
export const rawSerializer: Serializer = {
  name: "raw",
  serialize(value) {
    if (value instanceof Uint8Array) return value;
    throw new TypeError("the raw serializer stores only Buffers and Uint8Arrays");
  },
  deserialize(bytes) {
    return bytes;
  },
};

const structured = [
  Date,
  Map,
  Set,
  RegExp,
  Buffer,
  ArrayBuffer,
  DataView,
  Uint8Array,
  Uint8ClampedArray,
  Int8Array,
  Uint16Array,
  Int16Array,
  Uint32Array,
  Int32Array,
  Float32Array,
  Float64Array,
  BigInt64Array,
  BigUint64Array,
];

const codecs = new Set<object>();

const msgpackRules: FidelityRules = {
  prototypes: new Set(structured.map((c) => c.prototype as object)),
  codecs,
  bigint: true,
  nestedUndefined: true,
  nonFinite: true,
  loneSurrogates: false,
  cycles: true,
};

// Structured clone: cycles and shared references, Date, Map, Set, RegExp, typed arrays,
// BigInt (any size). Record definitions travel inside each payload (no shared structures),
// so any process decodes any entry.
const packr = new Packr({ structuredClone: true, mapsAsObjects: false, moreTypes: true });

/**
 * The default: MessagePack (msgpackr) with its structured-clone extension. A hit returns what
 * was stored, in type and content, from memory and from a remote store alike: `undefined`
 * (nested too), NaN, ±Infinity, BigInt, Date, Map, Set, RegExp, Buffer, typed arrays,
 * ArrayBuffer, DataView, cycles and shared references. Refused with
 * {@link UnsupportedValueError}: functions, symbols, `-0`, strings with a lone surrogate,
 * sparse arrays, objects with a null prototype or symbol keys, and class instances (Error,
 * Promise, WeakMap, boxed primitives, your classes) unless a codec is registered with
 * {@link registerCodec}.
 */
export const msgpackSerializer: Serializer = {
  name: "msgpack",
  serialize(value) {
    const found = findUnsupported(value, msgpackRules);
    if (found) refuse("msgpack", found);
    return packr.pack(value);
  },
  deserialize(bytes) {
    return packr.unpack(bytes);
  },
  unsupported(value) {
    return findUnsupported(value, msgpackRules);
  },
};

/** How instances of a class of yours are stored by {@link msgpackSerializer}. */
export interface Codec<T, D> {
  /** An extension type number, 1–100, the same in every process that reads these entries. */
  readonly type: number;
  readonly Class: abstract new (...args: never[]) => T;
  /** The data to store for an instance (any value the serializer supports). */
  write(instance: T): D;
  /** The instance for stored data. */
  read(data: D): T;
}

/**
 * Register a codec for a class with the default serializer, in every process that writes or
 * reads its entries (registration is process-wide). Instances are then accepted and come back
 * as instances of the class.
 */
export function registerCodec<T, D>(codec: Codec<T, D>): void {
  if (!Number.isInteger(codec.type) || codec.type < 1 || codec.type > 100) {
    throw new RangeError("a codec type is an integer from 1 to 100");
  }
  addExtension({
    Class: codec.Class as unknown as new (...args: unknown[]) => T,
    type: codec.type,
    write: (instance: T) => codec.write(instance),
    read: (data: D) => codec.read(data),
  });
  codecs.add(codec.Class.prototype as object);
}

/** Whether `serializer.serialize` itself throws {@link UnsupportedValueError} (the built-ins). */
export function checksWhileEncoding(serializer: Serializer): boolean {
  return serializer === msgpackSerializer || serializer === jsonSerializer;
}
