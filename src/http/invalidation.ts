/** Invalidation (RFC 9111 §4.4): which requests invalidate, and which paths. */
import type { HeaderValue } from "./headers.js";
import { headerString } from "./headers.js";
import { splitUrl } from "./key.js";
import type { HttpRequest, HttpResponse } from "./types.js";

/** Methods known to be safe (RFC 9110 §9.2.1); every other one invalidates (RFC 9111 §4.4). */
const SAFE_METHODS = new Set(["GET", "HEAD", "OPTIONS", "TRACE"]);

/** Whether `method` may change the resource: anything not known to be safe. */
export function isUnsafe(method: string): boolean {
  return !SAFE_METHODS.has(method.toUpperCase());
}

/**
 * The paths a response to `request` invalidates (RFC 9111 §4.4): after a non-error status to
 * an unsafe method, its target's path and its same-origin `Location` / `Content-Location`;
 * none otherwise.
 */
export function invalidatedPaths(
  request: HttpRequest,
  response: Pick<HttpResponse, "status" | "headers">,
): string[] {
  if (!isUnsafe(request.method) || response.status < 200 || response.status >= 400) return [];
  const path = targetPath(request.url);
  if (path === undefined) return [];
  const paths = new Set([path]);
  for (const name of ["location", "content-location"]) {
    const target = sameOriginPath(headerString(response.headers[name]), path, request.headers.host);
    if (target !== undefined) paths.add(target);
  }
  return [...paths];
}

/** The path of a request target, origin-form or absolute-form. */
function targetPath(target: string): string | undefined {
  if (target.startsWith("/")) return splitUrl(target).path;
  try {
    return new URL(target).pathname;
  } catch {
    return undefined;
  }
}

/** The path of `target` when it is on the request's origin, else `undefined`. */
function sameOriginPath(
  target: string | undefined,
  base: string,
  host: HeaderValue,
): string | undefined {
  if (!target) return undefined;
  try {
    const origin = `http://${headerString(host) ?? "origin.invalid"}`;
    const url = new URL(target, origin + (base.startsWith("/") ? base : `/${base}`));
    if (url.host !== new URL(origin).host) return undefined;
    return url.pathname;
  } catch {
    return undefined;
  }
}
