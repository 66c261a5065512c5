/**
 * Approximate size in bytes of a value held in memory, used to bound the memory tier when a
 * value was never encoded. Strings count their UTF-16 length twice, numbers 8, objects a
 * small header plus their keys and members; shared references are counted once. It is an
 * estimate of the data, not of V8's exact heap layout.
 */
export function estimateSize(value: unknown): number {
  return walk(value, new Set());
}

const OBJECT_OVERHEAD = 16;

function walk(value: unknown, seen: Set<object>): number {
  switch (typeof value) {
    case "string":
      return 2 * value.length + 8;
    case "number":
    case "bigint":
      return 8;
    case "boolean":
    case "undefined":
    case "symbol":
    case "function":
      return 4;
  }
  if (value === null) return 4;
  const obj = value as object;
  if (seen.has(obj)) return 0;
  seen.add(obj);
  if (ArrayBuffer.isView(obj)) return obj.byteLength + OBJECT_OVERHEAD;
  if (obj instanceof ArrayBuffer) return obj.byteLength + OBJECT_OVERHEAD;
  let size = OBJECT_OVERHEAD;
  if (Array.isArray(obj)) {
    for (const item of obj) size += 8 + walk(item, seen);
    return size;
  }
  if (obj instanceof Map) {
    for (const [k, v] of obj) size += walk(k, seen) + walk(v, seen);
    return size;
  }
  if (obj instanceof Set) {
    for (const v of obj) size += walk(v, seen);
    return size;
  }
  for (const k of Object.keys(obj)) {
    size += 2 * k.length + 8 + walk((obj as Record<string, unknown>)[k], seen);
  }
  return size;
}
