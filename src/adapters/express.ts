import { randomBytes } from "node:crypto";
import type { Application, NextFunction, Request, RequestHandler, Response } from "express";
import { inject } from "light-my-request";
import type {
  CompiledRoute,
  Decision,
  Dispatch,
  Exchange,
  HttpCacheOptions,
  HttpRequest,
  ReplyPlan,
  RouteCacheOptions,
} from "../http/http-cache.js";
import { DISPATCH_HEADER, dispatchHeaders, HttpCache } from "../http/http-cache.js";

export type { HttpCacheOptions, RouteCacheOptions } from "../http/http-cache.js";
export { HttpCache } from "../http/http-cache.js";

/** Route-level caching for Express, plus the app-level invalidator. */
export interface CachetExpress {
  /**
   * Middleware that caches the route it is mounted on.
   * @example app.get("/posts", cached({ ttl: "60s" }), listPosts);
   */
  (options?: RouteCacheOptions | true): RequestHandler;
  /** The HTTP cache behind the middleware: invalidate paths and tags through it. */
  readonly http: HttpCache;
  /**
   * App-level middleware: after a successful POST/PUT/PATCH/DELETE, expire the stored
   * responses of its path (and same-origin `Location`/`Content-Location`), RFC 9111 §4.4,
   * before the response goes out. Mount it before your routes: `app.use(cached.invalidator())`.
   */
  invalidator(): RequestHandler;
}

/** Content headers a 304 must not carry (RFC 9110 §15.4.5). */
const CONTENT_HEADERS = [
  "content-type",
  "content-length",
  "content-encoding",
  "content-language",
  "content-disposition",
];

/**
 * Create route-level cache middleware for Express 5.
 *
 * @example
 * const cached = cachetExpress({ cache });
 * app.use(cached.invalidator());
 * app.get("/posts", cached({ ttl: "60s" }), listPosts);
 */
export function cachetExpress(options: HttpCacheOptions): CachetExpress {
  const http = new HttpCache(options);
  const secret = randomBytes(16).toString("hex");
  let routes = 0;

  const factory = (routeOptions: RouteCacheOptions | true = true): RequestHandler => {
    const route = http.route(routeOptions, `express route #${++routes}`);
    return function cachetExpressRoute(req: Request, res: Response, next: NextFunction) {
      if (req.headers[DISPATCH_HEADER] === secret) {
        next();
        return;
      }
      let decision: Decision | Promise<Decision>;
      try {
        decision = http.handle(toRequest(req), route, dispatcher(req.app, secret));
      } catch (error) {
        next(error);
        return;
      }
      if (decision instanceof Promise) {
        decision.then((d) => apply(http, route, d, req, res, next), next);
      } else {
        apply(http, route, decision, req, res, next);
      }
    };
  };

  const invalidator = (): RequestHandler =>
    function cachetExpressInvalidator(req: Request, res: Response, next: NextFunction) {
      if (!HttpCache.isUnsafe(req.method)) {
        next();
        return;
      }
      const end = res.end;
      res.end = function endAfterInvalidation(this: Response, ...args: unknown[]) {
        res.end = end;
        http
          .invalidateAfter(toRequest(req), { status: res.statusCode, headers: res.getHeaders() })
          .catch(() => {})
          .finally(() => (end as (...a: unknown[]) => Response).apply(res, args));
        return res;
      } as Response["end"];
      next();
    };

  return Object.assign(factory, { http, invalidator });
}

function toRequest(req: Request): HttpRequest {
  return { method: req.method, url: req.originalUrl, headers: req.headers };
}

function apply(
  http: HttpCache,
  _route: CompiledRoute,
  decision: Decision,
  req: Request,
  res: Response,
  next: NextFunction,
): void {
  if (decision.kind === "respond") {
    send(res, decision.reply);
    return;
  }
  if (!decision.exchange) {
    if (decision.cacheStatus) res.setHeader("cache-status", decision.cacheStatus);
    next();
    return;
  }
  const exchange = decision.exchange;
  // The cache needs the full response (Express would answer a conditional itself).
  delete req.headers["if-none-match"];
  delete req.headers["if-modified-since"];
  capture(http, exchange, res);
  res.once("close", () => http.abandon(exchange));
  next();
}

function send(res: Response, plan: ReplyPlan): void {
  res.statusCode = plan.status;
  for (const [name, value] of Object.entries(plan.headers)) {
    res.setHeader(name, value as string | string[]);
  }
  if (plan.body) res.setHeader("content-length", plan.body.length);
  res.end(plan.body);
}

/**
 * Watch the handler's response: collect the body (up to the size limit) and, at `end`, hand
 * it to the cache before the headers go out, so that `ETag`, `Cache-Status` and a 304 can
 * still be applied. A body streamed with `write` is collected too and stored when it fits.
 */
function capture(http: HttpCache, exchange: Exchange, res: Response): void {
  const chunks: Buffer[] = [];
  let size = 0;
  let overflow = false;
  const collect = (chunk: unknown, encoding: unknown) => {
    if (chunk === undefined || chunk === null || typeof chunk === "function" || overflow) return;
    const buf = Buffer.isBuffer(chunk)
      ? chunk
      : typeof chunk === "string"
        ? Buffer.from(chunk, typeof encoding === "string" ? (encoding as BufferEncoding) : "utf8")
        : Buffer.from(chunk as Uint8Array);
    size += buf.length;
    if (size > http.maxEntrySize) {
      overflow = true;
      chunks.length = 0;
      return;
    }
    chunks.push(buf);
  };
  const write = res.write;
  const end = res.end;
  res.write = function captureWrite(this: Response, ...args: unknown[]) {
    collect(args[0], args[1]);
    return (write as (...a: unknown[]) => boolean).apply(res, args);
  } as Response["write"];
  res.end = function captureEnd(this: Response, ...args: unknown[]) {
    res.write = write;
    res.end = end;
    collect(args[0], args[1]);
    const completion = http.complete(exchange, {
      status: res.statusCode,
      headers: res.getHeaders(),
      body: overflow ? undefined : Buffer.concat(chunks, size),
      tooLarge: overflow,
    });
    if (res.headersSent) return (end as (...a: unknown[]) => Response).apply(res, args);
    for (const [name, value] of Object.entries(completion.headers)) res.setHeader(name, value);
    if (completion.notModified) {
      res.statusCode = 304;
      for (const name of CONTENT_HEADERS) res.removeHeader(name);
      const callback = args.find((a) => typeof a === "function");
      return (end as (...a: unknown[]) => Response).apply(res, callback ? [callback] : []);
    }
    return (end as (...a: unknown[]) => Response).apply(res, args);
  } as Response["end"];
}

/** Refresh requests go through the whole app again, marked so the middleware lets them pass. */
function dispatcher(app: Application, secret: string): Dispatch {
  return async (request) => {
    const headers = dispatchHeaders(request, secret);
    const res = await inject(app as unknown as Parameters<typeof inject>[0], {
      method: "GET",
      url: request.url,
      headers,
    });
    return { status: res.statusCode, headers: res.headers, body: res.rawPayload };
  };
}

export default cachetExpress;
