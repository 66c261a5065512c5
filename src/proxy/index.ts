/**
 * `cachet proxy`: a caching reverse proxy for any HTTP upstream, built on the Fastify adapter.
 * The origin's headers decide everything (`fromResponse`): freshness, validation, `Vary`,
 * what may be stored. What is not stored streams through.
 */
import type { IncomingHttpHeaders, IncomingMessage } from "node:http";
import { request as httpRequest } from "node:http";
import { request as httpsRequest } from "node:https";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import Fastify from "fastify";
import { cachetFastify } from "../adapters/fastify.js";
import type { Cache } from "../cache.js";
import { createCache } from "../cache.js";
import type { Duration } from "../duration.js";
import { toMs } from "../duration.js";
import { InvalidOptionError } from "../errors.js";
import type { HttpCacheOptions, RouteCacheOptions } from "../http/route.js";

/** Options of {@link createProxy}. */
export interface ProxyOptions {
  /** The origin: an `http:` or `https:` URL, e.g. `http://127.0.0.1:3000`. */
  upstream: string | URL;
  /**
   * The cache to store responses in. By default an in-process one, or memory in front of
   * Redis with fleet-wide leases when `redis` is given.
   */
  cache?: Cache | undefined;
  /** A Redis URL (`redis://`, `redis+cluster://`, `redis+sentinel://`): tiered, shared cache. */
  redis?: string | undefined;
  /** Longest wait for the upstream's response head. @default "30s" */
  timeout?: Duration | undefined;
  /**
   * Serve a stored response, stale, for this long after it expired when the upstream cannot be
   * reached or fails (RFC 9111 §4.2.4 allows it when disconnected), unless the response says
   * `must-revalidate`, `proxy-revalidate`, `s-maxage` or `no-cache`. `0` for never.
   * @default "1h"
   */
  staleIfError?: Duration | undefined;
  /** Route options on top of `fromResponse: true` (e.g. `keepStale`, `heuristic`). */
  route?: Omit<RouteCacheOptions, "fromResponse"> | undefined;
  /** HTTP cache options (statuses, `maxEntrySize`, `cacheStatus`, …). */
  http?: Omit<HttpCacheOptions, "cache"> | undefined;
  /** Fastify's logger: `true` for JSON lines on stdout. @default false */
  logger?: boolean | undefined;
  /** Largest request body forwarded, in bytes. @default 100 MiB */
  bodyLimit?: number | undefined;
}

/** Request fields a proxy does not forward (RFC 9110 §7.6.1): hop-by-hop, and `Host`. */
const HOP_BY_HOP = new Set([
  "connection",
  "keep-alive",
  "proxy-connection",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
  "proxy-authorization",
  "proxy-authenticate",
  "host",
]);

/** Methods Node parses that Fastify does not route by default (WebDAV, UPnP, purge, …). */
const EXTRA_METHODS = [
  "M-SEARCH",
  "PURGE",
  "PROPFIND",
  "PROPPATCH",
  "MKCOL",
  "COPY",
  "MOVE",
  "LOCK",
  "UNLOCK",
  "REPORT",
  "SEARCH",
  "LINK",
  "UNLINK",
];

/**
 * A Fastify app that forwards every request to `upstream` and caches what the upstream's
 * headers allow. Call `listen()` on it, or use {@link startProxy}.
 *
 * @example
 * const proxy = await createProxy({ upstream: "http://127.0.0.1:3000" });
 * await proxy.listen({ port: 8080 });
 */
export async function createProxy(options: ProxyOptions): Promise<FastifyInstance> {
  if (options === null || typeof options !== "object") {
    throw new InvalidOptionError("proxy", "expected an options object with `upstream`");
  }
  const upstream = upstreamUrl(options.upstream);
  const timeout = toMs(options.timeout ?? "30s", "proxy.timeout", false);
  const staleIfError = options.staleIfError ?? "1h";
  const cache = options.cache ?? (await defaultCache(options.redis));
  const app = Fastify({
    logger: options.logger === true,
    bodyLimit: options.bodyLimit ?? 100 * 1024 * 1024,
    // The upstream decides what a path means: Fastify must not rewrite or reject it.
    routerOptions: { ignoreTrailingSlash: false, ignoreDuplicateSlashes: false },
  });
  for (const method of EXTRA_METHODS) app.addHttpMethod(method, { hasBody: true });
  // Bodies are forwarded as bytes, whatever their type.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser("*", { parseAs: "buffer" }, (_request, body, done) => done(null, body));
  await app.register(cachetFastify, { cache, ...options.http });
  if (options.cache === undefined) app.addHook("onClose", () => cache.close());
  app.route({
    method: ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", ...EXTRA_METHODS],
    url: "*",
    config: {
      cache: { ...options.route, fromResponse: true, staleIfError, name: "proxy" },
    },
    handler: (request, reply) => forward(upstream, timeout, request, reply),
  });
  return app;
}

/**
 * {@link createProxy}, listening. Resolves once it accepts connections.
 * @example const { url, close } = await startProxy({ upstream, port: 8080 });
 */
export async function startProxy(
  options: ProxyOptions & { port?: number | undefined; host?: string | undefined },
): Promise<{ app: FastifyInstance; url: string; close(): Promise<void> }> {
  const app = await createProxy(options);
  const address = await app.listen({
    port: options.port ?? 8080,
    host: options.host ?? "127.0.0.1",
  });
  return { app, url: address, close: () => app.close() };
}

function upstreamUrl(value: string | URL): URL {
  let url: URL;
  try {
    url = new URL(String(value));
  } catch {
    throw new InvalidOptionError(
      "upstream",
      `expected an http:// or https:// URL, got ${JSON.stringify(String(value))}`,
    );
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new InvalidOptionError(
      "upstream",
      `expected an http:// or https:// URL, got ${url.protocol}`,
    );
  }
  return url;
}

async function defaultCache(redis: string | undefined): Promise<Cache> {
  if (redis === undefined) return createCache();
  const { redisStore } = await import("../stores/redis.js");
  return createCache({ store: redisStore({ url: redis }), l1: true, lease: true });
}

/**
 * Send `request` to the upstream and the upstream's answer to the client: status, end-to-end
 * headers and the body as a stream (the cache buffers what it stores).
 */
function forward(
  upstream: URL,
  timeout: number,
  request: FastifyRequest,
  reply: FastifyReply,
): Promise<FastifyReply> {
  const headers = forwardedHeaders(request.headers);
  headers["x-forwarded-host"] = request.headers.host ?? "";
  headers["x-forwarded-proto"] = request.protocol;
  const forwardedFor = request.headers["x-forwarded-for"];
  headers["x-forwarded-for"] = forwardedFor ? `${forwardedFor}, ${request.ip}` : request.ip;
  const base = upstream.pathname.replace(/\/$/, "");
  const send = upstream.protocol === "https:" ? httpsRequest : httpRequest;
  const body = Buffer.isBuffer(request.body) ? request.body : undefined;
  return new Promise((resolve) => {
    let settled = false;
    const fail = (status: number, message: string) => {
      if (settled) return;
      settled = true;
      resolve(reply.code(status).type("text/plain; charset=utf-8").send(`${message}\n`));
    };
    const outgoing = send(
      {
        protocol: upstream.protocol,
        hostname: upstream.hostname,
        port: upstream.port,
        method: request.method,
        path: base + request.url,
        headers,
        agent: false,
      },
      (incoming: IncomingMessage) => {
        if (settled) {
          incoming.resume();
          return;
        }
        const status = incoming.statusCode ?? 0;
        if (!Number.isInteger(status) || status < 200 || status > 599) {
          // Fastify (and HTTP/1.1 clients) take final statuses 200–599 only.
          incoming.resume();
          fail(502, `cachet proxy: the upstream answered with an invalid status (${status})`);
          return;
        }
        settled = true;
        try {
          reply.code(status);
          for (const [name, value] of Object.entries(responseHeaders(incoming.headers))) {
            reply.header(name, value);
          }
        } catch (error) {
          incoming.resume();
          resolve(
            reply
              .code(502)
              .type("text/plain; charset=utf-8")
              .send(
                `cachet proxy: the upstream's response cannot be relayed (${(error as Error).message})\n`,
              ),
          );
          return;
        }
        const noBody =
          request.method === "HEAD" || incoming.statusCode === 204 || incoming.statusCode === 304;
        if (noBody) {
          incoming.resume();
          resolve(reply.send());
          return;
        }
        resolve(reply.send(incoming));
      },
    );
    outgoing.setTimeout(timeout, () => {
      outgoing.destroy();
      fail(504, `cachet proxy: the upstream did not answer within ${timeout} ms`);
    });
    outgoing.on("error", (error) =>
      fail(
        502,
        `cachet proxy: the upstream could not be reached (${(error as NodeJS.ErrnoException).code ?? error.message})`,
      ),
    );
    outgoing.end(body);
  });
}

/** The request's end-to-end headers: hop-by-hop ones and those `Connection` lists dropped. */
function forwardedHeaders(headers: IncomingHttpHeaders): Record<string, string | string[]> {
  const listed = connectionListed(headers.connection);
  const out: Record<string, string | string[]> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined || HOP_BY_HOP.has(name) || listed.has(name)) continue;
    out[name] = value;
  }
  return out;
}

/** The response's end-to-end headers, for the client. */
function responseHeaders(headers: IncomingHttpHeaders): Record<string, string | string[]> {
  const listed = connectionListed(headers.connection);
  const out: Record<string, string | string[]> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined || HOP_BY_HOP.has(name) || listed.has(name)) continue;
    out[name] = value;
  }
  return out;
}

function connectionListed(value: string | string[] | undefined): Set<string> {
  const text = Array.isArray(value) ? value.join(",") : (value ?? "");
  return new Set(
    text
      .split(",")
      .map((v) => v.trim().toLowerCase())
      .filter(Boolean),
  );
}
