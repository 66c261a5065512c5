/**
 * Small, total parsers for the request and response headers the HTTP cache reads. They never
 * throw: a malformed header is read as far as it makes sense and the rest is ignored.
 */

/** A header value as Node gives it. */
export type HeaderValue = string | string[] | number | undefined;

/** One string for a possibly repeated header (RFC 9110 §5.3: combine with commas). */
export function headerString(value: HeaderValue): string | undefined {
  if (value === undefined) return undefined;
  if (Array.isArray(value)) return value.join(", ");
  return String(value);
}

/**
 * Cache-Control directives (RFC 9111 §5.2), names lower-cased; a directive without a value
 * maps to `true`, a quoted value is unquoted. Later duplicates do not override earlier ones.
 */
export function parseCacheControl(value: HeaderValue): Map<string, string | true> {
  const out = new Map<string, string | true>();
  const text = headerString(value);
  if (!text) return out;
  for (const part of splitList(text)) {
    const eq = part.indexOf("=");
    const name = (eq === -1 ? part : part.slice(0, eq)).trim().toLowerCase();
    if (!name || !/^[!#$%&'*+.^_`|~0-9a-z-]+$/.test(name) || out.has(name)) continue;
    if (eq === -1) {
      out.set(name, true);
      continue;
    }
    let arg = part.slice(eq + 1).trim();
    if (arg.startsWith('"')) {
      arg =
        arg.endsWith('"') && arg.length >= 2
          ? arg.slice(1, -1).replace(/\\(.)/g, "$1")
          : arg.slice(1);
    }
    out.set(name, arg);
  }
  return out;
}

/**
 * A delta-seconds directive value (RFC 9111 §1.2.2) in seconds, or `undefined` when absent
 * or malformed. Values too large to represent are capped at 2^31 as the RFC asks.
 */
export function deltaSeconds(
  directives: Map<string, string | true>,
  name: string,
): number | undefined {
  const v = directives.get(name);
  if (typeof v !== "string" || !/^\d+$/.test(v)) return undefined;
  const n = Number(v);
  return Number.isFinite(n) ? Math.min(n, 2 ** 31) : 2 ** 31;
}

/** Split a comma-separated header list, respecting quoted strings. */
export function splitList(text: string): string[] {
  const out: string[] = [];
  let current = "";
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (quoted) {
      current += c;
      if (c === "\\" && i + 1 < text.length) current += text[++i];
      else if (c === '"') quoted = false;
    } else if (c === '"') {
      quoted = true;
      current += c;
    } else if (c === ",") {
      if (current.trim()) out.push(current.trim());
      current = "";
    } else {
      current += c;
    }
  }
  if (current.trim()) out.push(current.trim());
  return out;
}

/** Header names listed in a `Vary` value, lower-cased; `["*"]` when it contains `*`. */
export function parseVary(value: HeaderValue): string[] {
  const text = headerString(value);
  if (!text) return [];
  const names = new Set<string>();
  for (const part of text.split(",")) {
    const name = part.trim().toLowerCase();
    if (name === "*") return ["*"];
    if (name) names.add(name);
  }
  return [...names];
}

/** Whether a `Cookie` header carries any of the cookies `names`. */
export function hasCookie(header: HeaderValue, names: readonly string[]): boolean {
  const text = headerString(header);
  if (!text || names.length === 0) return false;
  for (const pair of text.split(";")) {
    const eq = pair.indexOf("=");
    const name = (eq === -1 ? pair : pair.slice(0, eq)).trim();
    if (names.includes(name)) return true;
  }
  return false;
}

/** Field names a `Connection` header lists (RFC 9110 §7.6.1), lower-cased; empty when none. */
export function connectionListed(value: HeaderValue): Set<string> {
  const text = headerString(value);
  if (!text) return new Set();
  return new Set(
    text
      .split(",")
      .map((name) => name.trim().toLowerCase())
      .filter(Boolean),
  );
}
