import { createHash } from "node:crypto";
import { KeyNotSerializableError } from "./errors.js";

/**
 * Keys. A wrapped call's key is `name:args`, where `args` is a canonical, type-aware
 * serialization of the argument list: the same call gives the same key in every process, and
 * two calls that differ in any argument (type included) give different keys. Long argument
 * lists are replaced by a SHA-256 digest (base64url), marked with `#` so that a digest can
 * never equal a readable form (readable forms always start with `[`).
 */

/** Argument serializations longer than this are hashed. */
export const MAX_READABLE_ARGS = 100;

/** SHA-256 of `input`, base64url, 43 characters. */
export function digest(input: string | Uint8Array): string {
  return createHash("sha256").update(input).digest("base64url");
}

/** The key part for an argument list: readable when short, `#<sha256>` when long. */
export function argsKey(args: readonly unknown[]): string {
  const text = stableSerialize(args);
  return text.length > MAX_READABLE_ARGS ? `#${digest(text)}` : text;
}

/**
 * Canonical text for a value. Object keys are sorted; Maps and Sets are ordered by their
 * serialized members; types are tagged where JSON would conflate them (`1` vs `"1"`,
 * `undefined` vs `null`, a Date vs its ISO string, `NaN`, `-0` is `0`, bigint). Properties
 * whose value is `undefined` are skipped, as JSON does, so `{ a: undefined }` keys like `{}`.
 * Functions, symbols, and cycles cannot be keyed and throw {@link KeyNotSerializableError}.
 */
export function stableSerialize(value: unknown): string {
  return serialize(value, new Set(), "args");
}

function serialize(value: unknown, seen: Set<object>, path: string): string {
  switch (typeof value) {
    case "string":
      return JSON.stringify(value);
    case "number":
      // JSON turns NaN and Infinity into null; keep them distinct from null and each other.
      return Number.isFinite(value) ? String(value === 0 ? 0 : value) : `Number(${value})`;
    case "boolean":
      return value ? "true" : "false";
    case "bigint":
      return `${value}n`;
    case "undefined":
      return "undefined";
    case "function":
      throw new KeyNotSerializableError(
        `${path} is a function; pass a \`key\` option that builds the key yourself`,
      );
    case "symbol":
      throw new KeyNotSerializableError(`${path} is a symbol, which has no stable text form`);
  }
  if (value === null) return "null";
  const obj = value as object;
  if (seen.has(obj)) throw new KeyNotSerializableError(`${path} is a circular reference`);
  seen.add(obj);
  try {
    return serializeObject(obj, seen, path);
  } finally {
    seen.delete(obj);
  }
}

function serializeObject(obj: object, seen: Set<object>, path: string): string {
  if (Array.isArray(obj)) {
    const parts: string[] = [];
    for (let i = 0; i < obj.length; i++) parts.push(serialize(obj[i], seen, `${path}[${i}]`));
    return `[${parts.join(",")}]`;
  }
  if (obj instanceof Date) {
    const t = obj.getTime();
    return `Date(${Number.isNaN(t) ? "NaN" : obj.toISOString()})`;
  }
  if (ArrayBuffer.isView(obj)) {
    const bytes = new Uint8Array(obj.buffer, obj.byteOffset, obj.byteLength);
    return `${obj.constructor.name}(${Buffer.from(bytes).toString("base64")})`;
  }
  if (obj instanceof Map) {
    const parts = [...obj].map(
      ([k, v]) => `${serialize(k, seen, `${path}.key`)}=>${serialize(v, seen, `${path}.value`)}`,
    );
    return `Map{${parts.sort().join(",")}}`;
  }
  if (obj instanceof Set) {
    const parts = [...obj].map((v) => serialize(v, seen, `${path}.member`));
    return `Set[${parts.sort().join(",")}]`;
  }
  if (obj instanceof RegExp) return `RegExp(${JSON.stringify(obj.toString())})`;
  if (obj instanceof URL) return `URL(${JSON.stringify(obj.href)})`;
  const toJSON = (obj as { toJSON?: unknown }).toJSON;
  if (typeof toJSON === "function") {
    return `${tagOf(obj)}(${serialize(toJSON.call(obj), seen, `${path}.toJSON()`)})`;
  }
  const keys = Object.keys(obj).sort();
  const parts: string[] = [];
  for (const k of keys) {
    const v = (obj as Record<string, unknown>)[k];
    if (v === undefined) continue;
    parts.push(`${JSON.stringify(k)}:${serialize(v, seen, `${path}.${k}`)}`);
  }
  return `${tagOf(obj)}{${parts.join(",")}}`;
}

/** Plain objects are untagged; class instances carry their class name. */
function tagOf(obj: object): string {
  const proto = Object.getPrototypeOf(obj);
  if (proto === null || proto === Object.prototype) return "";
  const name = proto.constructor?.name;
  return typeof name === "string" && name !== "Object" ? name : "";
}
