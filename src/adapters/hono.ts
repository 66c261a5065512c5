import { randomBytes } from "node:crypto";
import { Readable } from "node:stream";
import type { ReadableStream as WebReadableStream } from "node:stream/web";
import type { Context, MiddlewareHandler } from "hono";
import { InvalidOptionError } from "../errors.js";
import type {
  Dispatch,
  HttpCacheOptions,
  HttpRequest,
  HttpResponse,
  ReplyPlan,
  RouteCacheOptions,
} from "../http/http-cache.js";
import { DISPATCH_HEADER, dispatchHeaders, HttpCache } from "../http/http-cache.js";
import { readUpTo } from "./stream.js";

export type { HttpCacheOptions, RouteCacheOptions } from "../http/http-cache.js";
export { HttpCache } from "../http/http-cache.js";

/** Options of {@link cachetHono}. */
export interface CachetHonoOptions extends HttpCacheOptions {
  /**
   * The Hono app (anything with `fetch`). Needed by routes that refresh entries out of band:
   * `staleWhileRevalidate`, `staleIfError`, `timeout` or `fromResponse`, because a Hono
   * middleware cannot otherwise run the handler again without a client.
   */
  app?: { fetch(request: Request): Response | Promise<Response> } | undefined;
}

/** Route-level caching for Hono, plus the app-level invalidator. */
export interface CachetHono {
  /**
   * Middleware that caches the route it is mounted on.
   * @example app.get("/posts", cached({ ttl: "60s" }), (c) => c.json(posts));
   */
  (options?: RouteCacheOptions | true): MiddlewareHandler;
  /** The HTTP cache behind the middleware: invalidate paths and tags through it. */
  readonly http: HttpCache;
  /**
   * App-level middleware: after a successful request with a method not known to be safe (POST, PUT, PATCH, DELETE, …), expire the stored
   * responses of its path (and same-origin `Location`/`Content-Location`), RFC 9111 §4.4.
   * Mount it before your routes: `app.use(cached.invalidator())`.
   */
  invalidator(): MiddlewareHandler;
}

/**
 * Create route-level cache middleware for Hono (on `@hono/node-server` or any runtime with
 * `node:` modules).
 *
 * @example
 * const cached = cachetHono({ cache, app });
 * app.use(cached.invalidator());
 * app.get("/posts", cached({ ttl: "60s" }), (c) => c.json(posts));
 */
export function cachetHono(options: CachetHonoOptions): CachetHono {
  const { app, ...httpOptions } = options;
  const http = new HttpCache(httpOptions);
  const secret = randomBytes(16).toString("hex");
  const dispatch = app ? dispatcher(app, secret) : undefined;
  let routes = 0;

  const factory = (routeOptions: RouteCacheOptions | true = true): MiddlewareHandler => {
    const name = `hono route #${++routes}`;
    const route = http.route(routeOptions, name);
    if (route.needsDispatch && !dispatch) {
      throw new InvalidOptionError(
        "app",
        `${name} uses staleWhileRevalidate, staleIfError, timeout or fromResponse: pass { app } to cachetHono() so that entries can be refreshed without a client`,
      );
    }
    return async function cachetHonoRoute(c, next) {
      if (c.req.header(DISPATCH_HEADER) === secret) {
        // The marker is ours: a handler that forwards headers must not pass the secret on.
        c.req.raw.headers.delete(DISPATCH_HEADER);
        await next();
        return;
      }
      const request = toRequest(c.req.raw, c.env);
      const decision = await http.handle(request, route, dispatch);
      if (decision.kind === "respond") return toResponse(decision.reply);
      const exchange = decision.exchange;
      // The client going away ends this request's part (the server aborts the request's
      // signal on a premature close): a handler that stops there, or never answers, must not
      // leave a truncated body stored or the requests waiting on this one held.
      const signal = c.req.raw.signal;
      if (exchange && !signal.aborted) {
        signal.addEventListener("abort", () => http.abandon(exchange), { once: true });
      }
      try {
        await next();
      } catch (error) {
        // Hono hands non-Error throws up the chain: release the requests waiting on this one.
        if (exchange) http.abandon(exchange);
        throw error;
      }
      if (!exchange) {
        if (decision.cacheStatus) replace(c, c.res, { "cache-status": decision.cacheStatus });
        return;
      }
      let res = c.res;
      let body: Uint8Array | string | undefined;
      let stream: Readable | undefined;
      try {
        if (res.body) {
          const read = await readUpTo(
            Readable.fromWeb(res.body as WebReadableStream),
            http.maxEntrySize,
          );
          body = read.bytes;
          stream = read.stream;
        } else {
          body = "";
        }
      } catch (error) {
        http.abandon(exchange);
        throw error;
      }
      const response: HttpResponse = {
        status: res.status,
        headers: toRecord(res.headers),
        body,
        tooLarge: stream !== undefined,
      };
      // The head as the client gets it now; what is stored is decided a turn later, once the
      // middleware around this one has run its code after `await next()`: a session layer adds
      // its `Set-Cookie` there, and a response carrying one must not be shared.
      const deferred = response.status !== 304 && !response.tooLarge && !NULL_BODY.has(res.status);
      const completion = deferred
        ? http.prepare(exchange, response)
        : http.complete(exchange, response);
      let ours: Response | undefined;
      if (deferred) {
        setImmediate(() => {
          const final = c.res;
          // A response the middleware around replaced (not one carrying this body) is not the
          // handler's: nothing is stored.
          if (final !== ours && (ours?.body == null || final.body !== ours.body)) {
            http.abandon(exchange);
            return;
          }
          http.commitAsSent(exchange, response, toRecord(final.headers), completion.headers);
        });
      }
      const headers = new Headers(res.headers);
      for (const [n, v] of Object.entries(completion.headers)) headers.set(n, v);
      if (completion.notModified) {
        for (const n of [
          "content-type",
          "content-length",
          "content-encoding",
          "content-language",
          "content-disposition",
        ]) {
          headers.delete(n);
        }
        res = new Response(null, { status: 304, headers });
      } else {
        const out = NULL_BODY.has(res.status)
          ? null
          : stream
            ? (Readable.toWeb(stream) as unknown as ReadableStream)
            : body;
        res = new Response(out as ConstructorParameters<typeof Response>[0], {
          status: res.status,
          statusText: res.statusText,
          headers,
        });
      }
      ours = res;
      // Assigning over an existing response merges the old headers back in; reset first.
      c.res = undefined;
      c.res = res;
    };
  };

  const invalidator = (): MiddlewareHandler =>
    async function cachetHonoInvalidator(c, next) {
      await next();
      if (!HttpCache.isUnsafe(c.req.method)) return;
      await http.invalidateAfter(toRequest(c.req.raw, c.env), {
        status: c.res.status,
        headers: toRecord(c.res.headers),
      });
    };

  return Object.assign(factory, { http, invalidator });
}

/**
 * The request as the cache sees it: the raw target when the server exposes it
 * (`@hono/node-server` puts the Node request in `c.env.incoming`), so that a target the
 * grammar does not allow is recognised as such; else the URL's path and query. The host is
 * the URL's, the one the handler sees.
 */
function toRequest(raw: Request, env: unknown): HttpRequest {
  const url = new URL(raw.url);
  const incoming = (env as { incoming?: { url?: unknown } } | undefined)?.incoming;
  const target = typeof incoming?.url === "string" ? incoming.url : url.pathname + url.search;
  return { method: raw.method, url: target, headers: toRecord(raw.headers), host: url.host };
}

function toRecord(headers: Headers): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  headers.forEach((value, name) => {
    out[name] = value;
  });
  const cookies = headers.getSetCookie();
  if (cookies.length > 0) out["set-cookie"] = cookies;
  return out;
}

function toResponse(plan: ReplyPlan): Response {
  const headers = new Headers();
  for (const [name, value] of Object.entries(plan.headers)) {
    if (typeof value === "string") headers.set(name, value);
    else for (const v of value) headers.append(name, v);
  }
  const body = NULL_BODY.has(plan.status) ? undefined : plan.body;
  if (body) headers.set("content-length", String(body.length));
  return new Response(body ?? null, { status: plan.status, headers });
}

/** Statuses whose responses have no body (the Fetch standard's null body statuses). */
const NULL_BODY = new Set([101, 204, 205, 304]);

function replace(c: Context, res: Response, extra: Record<string, string>): void {
  const headers = new Headers(res.headers);
  for (const [n, v] of Object.entries(extra)) headers.set(n, v);
  const next = new Response(res.body, { status: res.status, statusText: res.statusText, headers });
  c.res = undefined;
  c.res = next;
}

function dispatcher(
  app: { fetch(request: Request): Response | Promise<Response> },
  secret: string,
): Dispatch {
  return async (request) => {
    const headers = new Headers(dispatchHeaders(request, secret));
    const host = typeof request.headers.host === "string" ? request.headers.host : "localhost";
    const res = await app.fetch(new Request(`http://${host}${request.url}`, { headers }));
    const body = Buffer.from(await res.arrayBuffer());
    return { status: res.status, headers: toRecord(res.headers), body };
  };
}

export default cachetHono;
