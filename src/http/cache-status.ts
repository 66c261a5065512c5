/**
 * The `Cache-Status` response header (RFC 9211): one list member for this cache, whose
 * parameters say how the request was handled.
 */
export interface CacheStatusFields {
  /** Satisfied from the cache without going to the origin (§2.1). */
  hit?: boolean | undefined;
  /** Why the request went to the origin (§2.2): `uri-miss`, `vary-miss`, `bypass`, `method`, `stale`, `request`, `miss`. */
  fwd?: string | undefined;
  /** The status the origin answered with (§2.3). */
  fwdStatus?: number | undefined;
  /** Remaining freshness in seconds; negative when stale (§2.4). */
  ttl?: number | undefined;
  /** The response was stored (§2.5). */
  stored?: boolean | undefined;
  /** The request was collapsed with another one going to the origin (§2.6). */
  collapsed?: boolean | undefined;
  /** The cache key (§2.7); only when enabled. */
  key?: string | undefined;
  /** Free-form detail (§2.8). */
  detail?: string | undefined;
}

const TOKEN = /^[A-Za-z*][!#$%&'*+\-.^_`|~0-9A-Za-z:/]*$/;

/** `name; hit; ttl=42`, `name; fwd=uri-miss; stored`, … */
export function formatCacheStatus(name: string, f: CacheStatusFields): string {
  let out = name;
  if (f.hit) out += "; hit";
  if (f.fwd) out += `; fwd=${f.fwd}`;
  if (f.fwdStatus !== undefined) out += `; fwd-status=${f.fwdStatus}`;
  if (f.ttl !== undefined) out += `; ttl=${f.ttl}`;
  if (f.stored) out += "; stored";
  if (f.collapsed) out += "; collapsed";
  if (f.key !== undefined) out += `; key=${sfString(f.key)}`;
  if (f.detail !== undefined)
    out += `; detail=${TOKEN.test(f.detail) ? f.detail : sfString(f.detail)}`;
  return out;
}

/** An RFC 8941 sf-string: printable ASCII, `"` and `\` escaped; anything else becomes `?`. */
function sfString(value: string): string {
  let out = '"';
  for (const ch of value) {
    const code = ch.charCodeAt(0);
    if (ch === '"' || ch === "\\") out += `\\${ch}`;
    else if (code >= 0x20 && code <= 0x7e && ch.length === 1) out += ch;
    else out += "?";
  }
  return `${out}"`;
}
