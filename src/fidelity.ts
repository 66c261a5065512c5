/**
 * The fidelity walker: finds the first place in a value that a serializer cannot round-trip,
 * without encoding it. The memory tier never serializes, so it applies the configured
 * serializer's rules through this walk; that way a hit returns the same thing, in type and
 * content, from every tier and every process.
 */

/** What a serializer can store faithfully. */
export interface FidelityRules {
  /** Classes (by prototype) the format round-trips besides plain objects and arrays. */
  readonly prototypes: ReadonlySet<object>;
  /** Classes stored through a registered codec: accepted, their contents not walked. */
  readonly codecs?: ReadonlySet<object> | undefined;
  readonly bigint: boolean;
  /** `undefined` as an object property or array element. */
  readonly nestedUndefined: boolean;
  /** `NaN` and the infinities. */
  readonly nonFinite: boolean;
  /** Strings with a lone surrogate. */
  readonly loneSurrogates: boolean;
  /** Cycles (an object containing itself). */
  readonly cycles: boolean;
}

/** The first unsupported place in a value: `path` starts at `value`. */
export interface UnsupportedAt {
  readonly path: string;
  readonly reason: string;
}

const IDENT = /^[A-Za-z_$][\w$]*$/;
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

function member(path: string, key: string): string {
  return IDENT.test(key) ? `${path}.${key}` : `${path}[${JSON.stringify(key)}]`;
}

function describe(value: object): string {
  const proto = Object.getPrototypeOf(value) as { constructor?: { name?: string } } | null;
  if (proto === null) return "an object with a null prototype";
  const name = proto.constructor?.name;
  return name ? `an instance of ${name} (register a codec for it)` : "an object of unknown class";
}

/** The first place in `value` that `rules` cannot store faithfully, or `undefined`. */
export function findUnsupported(value: unknown, rules: FidelityRules): UnsupportedAt | undefined {
  return walk(value, "value", rules, undefined, true);
}

function walk(
  value: unknown,
  path: string,
  rules: FidelityRules,
  ancestors: Set<object> | undefined,
  top: boolean,
): UnsupportedAt | undefined {
  switch (typeof value) {
    case "string":
      if (!rules.loneSurrogates && LONE_SURROGATE.test(value))
        return { path, reason: "a string with a lone surrogate" };
      return undefined;
    case "boolean":
      return undefined;
    case "number":
      if (Object.is(value, -0)) return { path, reason: "-0 (it would come back as 0)" };
      if (!rules.nonFinite && !Number.isFinite(value)) return { path, reason: `${value}` };
      return undefined;
    case "undefined":
      if (!top && !rules.nestedUndefined) return { path, reason: "undefined" };
      return undefined;
    case "bigint":
      return rules.bigint ? undefined : { path, reason: "a BigInt" };
    case "function":
      return { path, reason: "a function" };
    case "symbol":
      return { path, reason: "a symbol" };
  }
  if (value === null) return undefined;
  const object = value as object;
  const proto = Object.getPrototypeOf(object) as object | null;
  const plain = proto === Object.prototype;
  const array = !plain && Array.isArray(object);
  if (!plain && !array) {
    if (proto !== null && rules.codecs?.has(proto)) return undefined;
    if (proto === null || !rules.prototypes.has(proto)) return { path, reason: describe(object) };
    if (!(object instanceof Map) && !(object instanceof Set)) return undefined;
  }
  const seen = ancestors ?? new Set<object>();
  if (seen.has(object)) {
    return rules.cycles ? undefined : { path, reason: "a circular reference" };
  }
  seen.add(object);
  let found: UnsupportedAt | undefined;
  if (array) found = walkArray(object as unknown[], path, rules, seen);
  else if (object instanceof Map) {
    let i = 0;
    for (const [k, v] of object) {
      found =
        walk(k, `${path}.keys()[${i}]`, rules, seen, false) ??
        walk(v, `${path}.get(${keyText(k, i)})`, rules, seen, false);
      if (found) break;
      i++;
    }
  } else if (object instanceof Set) {
    let i = 0;
    for (const v of object) {
      found = walk(v, `${path}.values()[${i}]`, rules, seen, false);
      if (found) break;
      i++;
    }
  } else {
    if (Object.getOwnPropertySymbols(object).length > 0)
      found = { path, reason: "an object with symbol keys" };
    else {
      for (const key in object) {
        found = walk(
          (object as Record<string, unknown>)[key],
          member(path, key),
          rules,
          seen,
          false,
        );
        if (found) break;
      }
    }
  }
  // Only ancestors count as cycles: a value shared by two branches is not one.
  if (!rules.cycles) seen.delete(object);
  return found;
}

function keyText(key: unknown, index: number): string {
  return typeof key === "string"
    ? JSON.stringify(key)
    : typeof key === "number"
      ? `${key}`
      : `#${index}`;
}

function walkArray(
  array: unknown[],
  path: string,
  rules: FidelityRules,
  seen: Set<object>,
): UnsupportedAt | undefined {
  const length = array.length;
  for (let i = 0; i < length; i++) {
    if (!(i in array)) return { path: `${path}[${i}]`, reason: "a hole in a sparse array" };
    const found = walk(array[i], `${path}[${i}]`, rules, seen, false);
    if (found) return found;
  }
  if (Object.keys(array).length !== length)
    return { path, reason: "an array with extra properties" };
  return undefined;
}
