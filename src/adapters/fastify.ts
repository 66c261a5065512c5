import { randomBytes } from "node:crypto";
import type { Readable } from "node:stream";
import type {
  FastifyInstance,
  FastifyPluginCallback,
  FastifyReply,
  FastifyRequest,
  onRequestHookHandler,
  onSendHookHandler,
  RouteOptions,
} from "fastify";
import fp from "fastify-plugin";
import { useLogger } from "../engine/core.js";
import { engineOf } from "../engine/registry.js";
import { InvalidOptionError } from "../errors.js";
import type { HeaderValue } from "../http/headers.js";
import type {
  CompiledRoute,
  Decision,
  Dispatch,
  Exchange,
  HttpCacheOptions,
  ReplyPlan,
  RouteCacheOptions,
} from "../http/http-cache.js";
import { DISPATCH_HEADER, dispatchHeaders, HttpCache } from "../http/http-cache.js";
import type { HttpResponse } from "../http/types.js";
import type { Logger } from "../logging.js";
import { readUpTo } from "./stream.js";

export type { HttpCacheOptions, RouteCacheOptions } from "../http/http-cache.js";
export { HttpCache } from "../http/http-cache.js";

/** Options of the Fastify plugin: the cache, plus the HTTP cache's options. */
export interface CachetFastifyOptions extends HttpCacheOptions {
  /**
   * After a successful request with a method not known to be safe (POST, PUT, PATCH, DELETE, …) on any route, expire the stored responses of its
   * path (and same-origin `Location`/`Content-Location`), RFC 9111 §4.4.
   * @default true
   */
  invalidateOnUnsafe?: boolean | undefined;
  /**
   * Close the cache (its Redis connections) when the app closes, so that the process can exit
   * after `app.close()`. Turn off when the cache outlives the app (shared with other code that
   * closes it).
   * @default true
   */
  closeCache?: boolean | undefined;
  /**
   * Where the cache logs its changes of state (store down and back, breaker, corrupt entries),
   * when it was created without a `logger`: `fastify.log` by default, `false` for nowhere.
   * @default fastify.log
   */
  logger?: Logger | false | undefined;
}

declare module "fastify" {
  interface FastifyContextConfig {
    /**
     * Cache this route's responses: `true` for the defaults, or options such as
     * `{ ttl: "60s", vary: ["accept-language"], tags: ["posts"] }`.
     */
    cache?: RouteCacheOptions | boolean | undefined;
  }
  interface FastifyInstance {
    /** The HTTP cache behind the plugin: invalidate paths and tags through it. */
    cachet: HttpCache;
  }
  interface FastifyRequest {
    /** @internal cachet's per-request state. */
    cachetState: Decision | null;
  }
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
 * The Fastify plugin. Register it before your routes, then switch caching on per route:
 *
 * @example
 * await app.register(cachetFastify, { cache });
 * app.get("/posts", { config: { cache: { ttl: "60s" } } }, listPosts);
 *
 * Hits are answered in `onRequest` from the stored bytes: no handler, no serialization. Routes
 * with `config.cache` (and, for invalidation, routes with unsafe methods) registered after the
 * plugin get hooks of their own. Routes registered before it never reach `onRoute`: when there
 * are any, two global hooks find them at their first request and serve them the same way
 * (every request then pays two hook calls), and the first such request logs a warning naming
 * the route. With no route registered before the plugin, there are no global hooks.
 */
const plugin: FastifyPluginCallback<CachetFastifyOptions> = (fastify, options, done) => {
  let http: HttpCache;
  try {
    const { invalidateOnUnsafe: _, logger, closeCache: __, ...httpOptions } = options;
    http = new HttpCache(httpOptions);
    if (logger !== false) useLogger(engineOf(http.cache).tiers.core, logger ?? fastify.log);
  } catch (error) {
    done(error as Error);
    return;
  }
  const invalidateOnUnsafe = options.invalidateOnUnsafe ?? true;
  const secret = randomBytes(16).toString("hex");
  const dispatch = dispatcher(fastify, secret);

  fastify.decorate("cachet", http);
  if (options.closeCache !== false) {
    fastify.addHook("onClose", function cachetClose(_instance, done) {
      http.cache.close().then(() => done(), done);
    });
  }
  fastify.decorateRequest("cachetState", null);

  /** Marks the config of the routes `onRoute` has seen (registered after the plugin). */
  const hooked = Symbol("cachet.hooked");
  const isHooked = (request: FastifyRequest) =>
    (request.routeOptions.config as unknown as Record<symbol, unknown> | undefined)?.[hooked] ===
    true;
  const compile = (config: unknown, name: string): CompiledRoute | undefined => {
    if (config === undefined || config === false) return undefined;
    if (config !== true && (config === null || typeof config !== "object")) {
      throw new InvalidOptionError(
        `${name} config.cache`,
        "expected true, false or an options object",
      );
    }
    return http.route(config as RouteCacheOptions | true, name);
  };
  fastify.addHook("onRoute", function cachetOnRoute(routeOptions: RouteOptions) {
    routeOptions.config = { ...routeOptions.config, [hooked]: true } as typeof routeOptions.config;
    const methods = Array.isArray(routeOptions.method)
      ? routeOptions.method
      : [routeOptions.method];
    const name = `${methods.join(",")} ${routeOptions.url}`;
    if (invalidateOnUnsafe && methods.some((m) => HttpCache.isUnsafe(m))) {
      routeOptions.onSend = [...hooks(routeOptions.onSend), invalidateHook(http)];
    }
    const route = compile(routeOptions.config?.cache, name);
    if (route === undefined) return;
    routeOptions.onRequest = [
      ...hooks(routeOptions.onRequest),
      onRequestHook(http, route, dispatch, secret),
    ];
    routeOptions.onSend = [...hooks(routeOptions.onSend), onSendHook(http)];
  });

  // Routes registered before the plugin: found at their first request (by their config object,
  // one per route). When there are none yet, every route goes through `onRoute` and the two
  // global hooks would only cost every request (hits included) two hook calls: leave them out.
  if (!routesExist(fastify)) {
    done();
    return;
  }
  const early = new WeakMap<object, onRequestHookHandler | null>();
  const earlyRequests = new WeakSet<FastifyRequest>();
  const earlySend = onSendHook(http, true);
  const earlyInvalidate = invalidateHook(http);
  fastify.addHook("onRequest", function cachetEarlyRoute(request, reply, next) {
    const { method, url, config } = request.routeOptions;
    if (config === undefined || (config as unknown as Record<symbol, unknown>)[hooked] === true) {
      next();
      return;
    }
    let hook = early.get(config);
    if (hook === undefined) {
      const name = `${Array.isArray(method) ? method.join(",") : method} ${url}`;
      let route: CompiledRoute | undefined;
      try {
        route = compile((config as { cache?: unknown } | undefined)?.cache, name);
      } catch (error) {
        next(error as Error);
        return;
      }
      hook = route ? onRequestHook(http, route, dispatch, secret) : null;
      early.set(config, hook);
      if (hook) {
        fastify.log.warn(
          `cachet: route ${name} was registered before the cachet plugin; it is cached, but its cache options were checked only now. Register the plugin before the routes.`,
        );
      }
    }
    if (hook === null) {
      next();
      return;
    }
    earlyRequests.add(request);
    hook.call(this, request, reply, next);
  });
  fastify.addHook("onSend", function cachetEarlySend(request, reply, payload, next) {
    if (earlyRequests.has(request)) {
      earlySend.call(this, request, reply, payload, next);
    } else if (invalidateOnUnsafe && HttpCache.isUnsafe(request.method) && !isHooked(request)) {
      earlyInvalidate.call(this, request, reply, payload, next);
    } else {
      next(null, payload);
    }
  });
  done();
};

/**
 * Whether any route is registered yet (in any context: the router is shared). Anything but the
 * router's printout of an empty tree counts as routes, so that a printout it does not know
 * keeps the global hooks (the safe side).
 */
function routesExist(fastify: FastifyInstance): boolean {
  const printed = fastify.printRoutes().trim();
  return printed !== "" && printed !== "(empty tree)";
}

function onRequestHook(
  http: HttpCache,
  route: CompiledRoute,
  dispatch: Dispatch,
  secret: string,
): onRequestHookHandler {
  return function cachetOnRequest(request, reply, done) {
    if (request.headers[DISPATCH_HEADER] === secret) {
      // The marker is ours: a handler that forwards headers must not pass the secret on.
      delete request.headers[DISPATCH_HEADER];
      done();
      return;
    }
    let decision: Decision | Promise<Decision>;
    try {
      decision = http.handle(request, route, dispatch);
    } catch (error) {
      done(error as Error);
      return;
    }
    if (decision instanceof Promise) {
      decision.then(
        (d) => apply(d, request, reply, done, http),
        (error) => done(error),
      );
    } else {
      apply(decision, request, reply, done, http);
    }
  };
}

function apply(
  decision: Decision,
  request: FastifyRequest,
  reply: FastifyReply,
  done: (error?: Error) => void,
  http: HttpCache,
): void {
  if (decision.kind === "respond") {
    send(reply, decision.reply);
    return;
  }
  request.cachetState = decision;
  const exchange = decision.exchange;
  if (exchange) {
    // The cache needs the full response; it answers the client's conditional itself.
    delete request.headers["if-none-match"];
    delete request.headers["if-modified-since"];
    // Whatever happens to this request, the requests waiting on it must be released.
    reply.raw.once("close", () => http.abandon(exchange));
  }
  done();
}

function send(reply: FastifyReply, plan: ReplyPlan): void {
  reply.code(plan.status);
  reply.headers(plan.headers as Record<string, string | string[]>);
  reply.send(plan.body);
}

/**
 * `deferCommit`: for routes registered before the plugin, whose `onSend` is a global hook that
 * hooks added later run after (a session plugin's `Set-Cookie`): what is stored is decided
 * when the head is written, on the headers the client gets.
 */
function onSendHook(http: HttpCache, deferCommit = false): onSendHookHandler {
  return function cachetOnSend(request, reply, payload, done) {
    const state = request.cachetState;
    if (state?.kind !== "forward") {
      done(null, payload);
      return;
    }
    request.cachetState = null;
    const exchange = state.exchange;
    if (!exchange) {
      if (state.cacheStatus) reply.header("cache-status", state.cacheStatus);
      done(null, payload);
      return;
    }
    const finish = (body: Uint8Array | string | undefined, out: unknown) => {
      const response: HttpResponse = {
        status: reply.statusCode,
        headers: reply.getHeaders(),
        body,
        tooLarge: body === undefined && out !== payload,
      };
      const completion = deferCommit
        ? http.prepare(exchange, response)
        : http.complete(exchange, response);
      if (deferCommit) commitAtHead(http, exchange, reply, response, completion.headers);
      reply.headers(completion.headers);
      if (completion.notModified) {
        reply.code(304);
        for (const name of CONTENT_HEADERS) reply.removeHeader(name);
        done(null, null);
        return;
      }
      done(null, out);
    };
    if (isStream(payload)) {
      // Buffer a streamed body within the size limit so that it can be stored; beyond it,
      // replay what was read and pass the rest through.
      readUpTo(payload, http.maxEntrySize).then(
        (read) => (read.bytes ? finish(read.bytes, read.bytes) : finish(undefined, read.stream)),
        (error) => {
          http.abandon(exchange);
          done(error as Error);
        },
      );
      return;
    }
    finish(bodyOf(payload), payload);
  };
}

/**
 * Store `response` with the headers the client gets, read when the head is written: the
 * handler's, plus whatever later `onSend` hooks set (our own head fields left out).
 */
function commitAtHead(
  http: HttpCache,
  exchange: Exchange,
  reply: FastifyReply,
  response: HttpResponse,
  own: Record<string, string>,
): void {
  const raw = reply.raw;
  const writeHead = raw.writeHead;
  let committed = false;
  const commit = (extra: unknown) => {
    if (committed) return;
    committed = true;
    // Fastify passes its headers to writeHead rather than setting them on the response.
    const sent: Record<string, HeaderValue> = { ...raw.getHeaders() };
    if (extra !== null && typeof extra === "object" && !Array.isArray(extra)) {
      Object.assign(sent, extra);
    }
    http.commitAsSent(exchange, response, sent, own);
  };
  raw.writeHead = function cachetHead(this: typeof raw, ...args: unknown[]) {
    raw.writeHead = writeHead;
    commit(typeof args[1] === "string" ? args[2] : args[1]);
    return (writeHead as (...a: unknown[]) => typeof raw).apply(this, args);
  } as typeof raw.writeHead;
  // No head written (the connection went first): nothing is stored.
  raw.once("close", () => {
    if (!committed) http.abandon(exchange);
  });
}

function invalidateHook(http: HttpCache): onSendHookHandler {
  return function cachetInvalidate(request, reply, payload, done) {
    if (!HttpCache.isUnsafe(request.method)) {
      done(null, payload);
      return;
    }
    http
      .invalidateAfter(request, { status: reply.statusCode, headers: reply.getHeaders() })
      .then(() => done(null, payload), done);
  };
}

function isStream(payload: unknown): payload is Readable {
  return (
    payload !== null &&
    typeof payload === "object" &&
    typeof (payload as Readable).pipe === "function" &&
    typeof (payload as Readable)[Symbol.asyncIterator] === "function"
  );
}

/** The payload as bytes when Fastify has it whole; `undefined` for anything else. */
function bodyOf(payload: unknown): Uint8Array | string | undefined {
  if (payload === null || payload === undefined) return "";
  if (typeof payload === "string" || payload instanceof Uint8Array) return payload;
  return undefined;
}

/** Refresh requests go through the whole app again, marked so the plugin lets them pass. */
function dispatcher(fastify: FastifyInstance, secret: string): Dispatch {
  return async (request) => {
    const headers = dispatchHeaders(request, secret);
    const res = await fastify.inject({ method: "GET", url: request.url, headers });
    return { status: res.statusCode, headers: res.headers, body: res.rawPayload };
  };
}

function hooks<T>(value: T | T[] | undefined): T[] {
  if (value === undefined) return [];
  return Array.isArray(value) ? value : [value];
}

/** The Fastify plugin (see the module docs). */
export const cachetFastify = fp(plugin, { fastify: "5.x", name: "cachet" });
export default cachetFastify;
