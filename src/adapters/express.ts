import { randomBytes } from "node:crypto";
import {
  request as httpRequest,
  type IncomingHttpHeaders,
  type OutgoingHttpHeaders,
} from "node:http";
import { request as httpsRequest } from "node:https";
import type { AddressInfo, Server } from "node:net";
import type { NextFunction, Request, RequestHandler, Response } from "express";
import type {
  CompiledRoute,
  Decision,
  Dispatch,
  Exchange,
  HttpCacheOptions,
  HttpRequest,
  HttpResponse,
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
   * App-level middleware: after a successful request with a method not known to be safe (POST, PUT, PATCH, DELETE, …), expire the stored
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
        // The marker is ours: a handler that forwards headers must not pass the secret on.
        delete req.headers[DISPATCH_HEADER];
        next();
        return;
      }
      let decision: Decision | Promise<Decision>;
      try {
        decision = http.handle(toRequest(req), route, dispatcher(req, secret));
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
  return { method: req.method, url: req.originalUrl, headers: req.headers, host: req.host };
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

type Writer = (...args: unknown[]) => unknown;

/**
 * Watch the handler's response on its own `res` (never a prototype): collect the body (up to
 * the size limit), apply the cache's headers (`ETag`, `Cache-Status`, a 304 for the client's
 * own conditional) before the head goes out, and store the response once the head is final.
 *
 * The head is final only inside Node's `writeHead`: middleware such as express-session and
 * cookie-session (through `on-headers`) add `Set-Cookie` there, after the handler ended. So
 * headers set while the head is being written are watched (through this response's own
 * `setHeader`/`appendHeader`/`removeHeader`): the cache's headers are recomputed from what the
 * head will really carry, and the decision to store is made after `end`, from the head that
 * was sent. Headers passed to `writeHead(status, headers)` are folded into the response first,
 * so that they are seen too.
 */
function capture(http: HttpCache, exchange: Exchange, res: Response): void {
  const chunks: Buffer[] = [];
  let size = 0;
  let overflow = false;
  let body: Buffer | undefined;
  /** Header names the cache set, and must not count as the handler's. */
  const ours = new Set<string>();
  /** While the head is being written: a header set now is the handler's (or middleware's). */
  let writingHead = false;
  let notModified = false;
  /** The handler's status, when the client is sent a 304 in its place. */
  let handlerStatus = 200;
  const original = {
    write: res.write as Writer,
    end: res.end as Writer,
    writeHead: res.writeHead as Writer,
    setHeader: res.setHeader as Writer,
    appendHeader: res.appendHeader as Writer | undefined,
    removeHeader: res.removeHeader as Writer,
  };
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
  /** The content fields a 304 to the client's own conditional took off the handler's head. */
  const dropped: Record<string, string | string[] | number> = {};
  /** The response as the handler made it: its status, its headers (not ours), the body. */
  const handlerResponse = (): HttpResponse => {
    const headers: Record<string, string | string[] | number | undefined> = { ...dropped };
    for (const [name, value] of Object.entries(res.getHeaders())) {
      if (!ours.has(name)) headers[name] = value as string | string[] | number | undefined;
    }
    return {
      status: notModified ? handlerStatus : res.statusCode,
      headers,
      body: overflow ? undefined : body,
      tooLarge: overflow,
      pending: !overflow && body === undefined,
    };
  };
  /** (Re)apply the cache's headers for the response as it stands. */
  const decide = () => {
    const completion = http.prepare(exchange, handlerResponse());
    for (const name of ours) original.removeHeader.call(res, name);
    ours.clear();
    for (const [name, value] of Object.entries(completion.headers)) {
      original.setHeader.call(res, name, value);
      ours.add(name);
    }
    // Once the head is being written, its status is settled.
    if (!writingHead) notModified = completion.notModified;
  };
  /** Decide once, right before the head goes out (status and headers as the handler left them). */
  let decided = false;
  const decideHead = () => {
    if (decided) return;
    decided = true;
    decide();
    if (notModified) {
      handlerStatus = res.statusCode;
      res.statusCode = 304;
      for (const name of CONTENT_HEADERS) {
        // The 304 drops them; the stored response, the full one, keeps them.
        const value = res.getHeader(name);
        if (value !== undefined) dropped[name] = value;
        original.removeHeader.call(res, name);
      }
    }
  };
  const watch = (method: "setHeader" | "appendHeader" | "removeHeader") => {
    const fn = original[method];
    if (!fn) return;
    (res as unknown as Record<string, Writer>)[method] = function watched(
      this: Response,
      ...args: unknown[]
    ) {
      const out = fn.apply(res, args);
      const name = String(args[0]).toLowerCase();
      if (writingHead && !ours.has(name)) decide();
      return out;
    };
  };
  watch("setHeader");
  watch("appendHeader");
  watch("removeHeader");
  res.writeHead = function captureWriteHead(this: Response, ...args: unknown[]) {
    // Fold `writeHead(status, [message,] headers)` into the response so that it is seen.
    const status = args[0];
    let rest = args.slice(1);
    const message = typeof rest[0] === "string" ? rest[0] : undefined;
    if (message !== undefined) rest = rest.slice(1);
    const given = rest[0];
    if (typeof status === "number" && !decided) res.statusCode = status;
    if (Array.isArray(given)) {
      for (let i = 0; i + 1 < given.length; i += 2) {
        original.setHeader.call(res, String(given[i]), given[i + 1]);
      }
    } else if (given && typeof given === "object") {
      for (const [name, value] of Object.entries(given as OutgoingHttpHeaders)) {
        if (value !== undefined) original.setHeader.call(res, name, value);
      }
    }
    decideHead();
    writingHead = true;
    try {
      return message === undefined || notModified
        ? original.writeHead.call(res, res.statusCode)
        : original.writeHead.call(res, res.statusCode, message);
    } finally {
      writingHead = false;
    }
  } as Response["writeHead"];
  res.write = function captureWrite(this: Response, ...args: unknown[]) {
    collect(args[0], args[1]);
    if (notModified && res.headersSent) return true;
    return original.write.apply(res, args);
  } as Response["write"];
  res.end = function captureEnd(this: Response, ...args: unknown[]) {
    res.write = original.write as Response["write"];
    res.end = original.end as Response["end"];
    collect(args[0], args[1]);
    body = overflow ? undefined : Buffer.concat(chunks, size);
    const callback = args.find((a) => typeof a === "function");
    // The common case (res.send): the body is whole before the head goes out.
    if (!res.headersSent) decideHead();
    const out = notModified
      ? original.end.apply(res, callback ? [callback] : [])
      : original.end.apply(res, args);
    // The head has been written: store what the client got (never our own headers).
    // A 304 sent for the client's conditional stands for the full response it matched.
    const final = handlerResponse();
    http.commit(exchange, notModified ? { ...final, status: handlerStatus } : final);
    return out;
  } as Response["end"];
}

/**
 * Refresh requests go through the whole app again, over a real connection to the server this
 * request came in on, marked with the per-process secret so the middleware lets them pass.
 * Nothing is patched: Express handles the request as it handles any other.
 */
function dispatcher(req: Request, secret: string): Dispatch {
  return (request) =>
    new Promise((resolve, reject) => {
      const socket = req.socket as
        | (typeof req.socket & { server?: Server; encrypted?: boolean })
        | undefined;
      const address = socket?.server?.address();
      if (!address) {
        reject(
          new Error("cachet/express: cannot refresh out of band: the server's address is unknown"),
        );
        return;
      }
      const headers = dispatchHeaders(request, secret);
      const target =
        typeof address === "string"
          ? { socketPath: address }
          : { host: loopback(address), port: address.port };
      const send = socket?.encrypted ? httpsRequest : httpRequest;
      const outgoing = send(
        {
          ...target,
          method: "GET",
          path: request.url,
          headers,
          agent: false,
          ...(socket?.encrypted ? { rejectUnauthorized: false, servername: undefined } : {}),
        },
        (incoming) => {
          const chunks: Buffer[] = [];
          incoming.on("data", (chunk: Buffer) => chunks.push(chunk));
          incoming.on("error", reject);
          incoming.on("end", () =>
            resolve({
              status: incoming.statusCode ?? 502,
              headers: responseHeaders(incoming.headers),
              body: Buffer.concat(chunks),
            }),
          );
        },
      );
      outgoing.on("error", reject);
      outgoing.end();
    });
}

/** The address to reach a server listening on `address` from this process. */
function loopback(address: AddressInfo): string {
  if (address.address === "0.0.0.0" || address.address === "") return "127.0.0.1";
  if (address.address === "::") return "::1";
  return address.address;
}

function responseHeaders(headers: IncomingHttpHeaders): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const [name, value] of Object.entries(headers)) if (value !== undefined) out[name] = value;
  return out;
}

export default cachetExpress;
