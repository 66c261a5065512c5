/**
 * Turns values into bytes for remote stores and back. The default is JSON. Whatever a
 * serializer returns from `deserialize` is data: nothing read back from a store is evaluated.
 */
export interface Serializer {
  /** A short name, for error messages. */
  readonly name: string;
  /** Encode a value. Returning a string lets cachet write it straight into the entry buffer. */
  serialize(value: unknown): Uint8Array | string;
  /** Decode bytes produced by `serialize`. Throwing marks the entry corrupt (a miss). */
  deserialize(bytes: Buffer): unknown;
}

/** JSON, as `JSON.stringify`/`JSON.parse` see it: Dates come back as ISO strings. */
export const jsonSerializer: Serializer = {
  name: "json",
  serialize(value) {
    const text = JSON.stringify(value);
    if (text === undefined) throw new TypeError(`JSON cannot represent a ${typeof value}`);
    return text;
  },
  deserialize(bytes) {
    return JSON.parse(bytes.toString("utf8"));
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
