/**
 * `cachet proxy`: a caching reverse proxy for any HTTP upstream, built on the Fastify adapter.
 * The origin's headers decide everything (`fromResponse`): freshness, validation, `Vary`,
 * what may be stored. What is not stored streams through.
 */
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from "node:http";
import { request as httpRequest, METHODS } from "node:http";
import { request as httpsRequest } from "node:https";
import type { Readable } from "node:stream";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import Fastify from "fastify";
import { cachetFastify } from "../adapters/fastify.js";
import type { Cache } from "../cache.js";
import { createCache } from "../cache.js";
import type { Duration } from "../duration.js";
import { toMs } from "../duration.js";
import { InvalidOptionError } from "../errors.js";
import { connectionListed } from "../http/headers.js";
import { DISPATCH_HEADER } from "../http/http-cache.js";
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

/** Hop-by-hop fields, never forwarded either way (RFC 9110 §7.6.1). */
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
]);

/**
 * Request fields that are not forwarded besides those: `Host` (the upstream's own), `Expect`
 * (the body has been read already) and the HTTP cache's marker for its own refreshes.
 */
const REQUEST_DROPPED = new Set([...HOP_BY_HOP, "host", "expect", DISPATCH_HEADER]);

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
  const bodyLimit = options.bodyLimit ?? 100 * 1024 * 1024;
  // What every response says of the cache (RFC 9211), these too: not looked up.
  const statusName = options.http?.cacheStatus ?? "cachet";
  const bypassStatus =
    statusName === false ? undefined : `${statusName}; fwd=bypass; detail=invalid-target`;
  const app = Fastify({
    logger: options.logger === true,
    bodyLimit,
    // The upstream decides what a path means: Fastify must not rewrite or reject it.
    routerOptions: { ignoreTrailingSlash: false, ignoreDuplicateSlashes: false },
    // A path Fastify cannot decode (`/%zz`) is still the upstream's to judge: forwarded as it
    // came, past the cache (which keys only targets it can read).
    frameworkErrors: (error, request, rawReply) => {
      const reply = rawReply as FastifyReply;
      if (error.code !== "FST_ERR_BAD_URL") {
        reply.send(error);
        return;
      }
      readBody(request.raw, bodyLimit).then(
        (body) => forward(upstream, timeout, request, reply, body, bypassStatus),
        (readError: Error) =>
          reply
            .code(413)
            .type("text/plain; charset=utf-8")
            .send(`cachet proxy: ${readError.message}\n`),
      );
    },
  });
  try {
    // Every method node parses (WebDAV, UPnP's M-SEARCH, PURGE, …), bodies allowed; CONNECT
    // is a tunnel, not a request to forward.
    for (const method of METHODS) {
      if (method !== "CONNECT" && !app.supportedMethods.includes(method)) {
        app.addHttpMethod(method, { hasBody: true });
      }
    }
    // Bodies are forwarded as bytes, whatever their type (or none).
    app.removeAllContentTypeParsers();
    app.addContentTypeParser("*", { parseAs: "buffer" }, (_request, body, done) =>
      done(null, body),
    );
    await app.register(cachetFastify, { cache, ...options.http });
    if (options.cache === undefined) app.addHook("onClose", () => cache.close());
    app.route({
      method: app.supportedMethods.filter((method) => method !== "CONNECT"),
      url: "*",
      config: {
        cache: { ...options.route, fromResponse: true, staleIfError, name: "proxy" },
      },
      preParsing: hideContentType,
      handler: (request, reply) => {
        restoreContentType(request);
        return forward(
          upstream,
          timeout,
          request,
          reply,
          Buffer.isBuffer(request.body) ? request.body : undefined,
        );
      },
    });
  } catch (error) {
    if (options.cache === undefined) await cache.close();
    throw error;
  }
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
  let address: string;
  try {
    address = await app.listen({ port: options.port ?? 8080, host: options.host ?? "127.0.0.1" });
  } catch (error) {
    // A port in use: close the cache (and its Redis connection) so the process can exit.
    await app.close();
    throw error;
  }
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
 * Send `request` to the upstream and the upstream's answer to the client: interim responses
 * (102, 103), then the status, end-to-end headers and the body as a stream (the cache buffers
 * what it stores; the rest passes through).
 */
function forward(
  upstream: URL,
  timeout: number,
  request: FastifyRequest,
  reply: FastifyReply,
  body: Buffer | undefined,
  /** `Cache-Status` of a request forwarded past the cache (the cache sets it otherwise). */
  cacheStatus?: string | undefined,
): Promise<FastifyReply> {
  const headers = forwardedHeaders(request, body);
  const base = upstream.pathname.replace(/\/$/, "");
  const send = upstream.protocol === "https:" ? httpsRequest : httpRequest;
  // A refresh the cache runs out of band has no client connection to relay anything to.
  const client = request.headers[DISPATCH_HEADER] === undefined ? reply.raw : undefined;
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
        path: base + request.raw.url,
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
          if (cacheStatus !== undefined) reply.header("cache-status", cacheStatus);
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
    if (client) {
      // RFC 9110 §15.2: a proxy forwards interim responses. Node answers 100-continue itself.
      outgoing.on("information", (info) => relayInterim(client, info.statusCode, info.headers));
      // A client gone before the answer: stop asking the upstream.
      client.once("close", () => {
        if (!client.writableFinished) outgoing.destroy();
      });
    }
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

/**
 * The headers sent upstream: the request's end-to-end fields (hop-by-hop ones, those listed in
 * `Connection`, `Host` and `Expect` dropped), the body framed by its length, `Via` (RFC 9110
 * §7.6.3) and `X-Forwarded-*`.
 */
function forwardedHeaders(
  request: FastifyRequest,
  body: Buffer | undefined,
): Record<string, string | string[]> {
  const out = endToEnd(request.headers, REQUEST_DROPPED);
  // The body was read whole: frame it by its length, whatever framing the client used (node
  // sends no framing at all for a DELETE or OPTIONS body without a Content-Length).
  delete out["content-length"];
  if (body !== undefined) out["content-length"] = String(body.length);
  out.via = appendList(request.headers.via, `${request.raw.httpVersion} cachet`);
  out["x-forwarded-host"] = request.headers.host ?? "";
  out["x-forwarded-proto"] = request.protocol;
  out["x-forwarded-for"] = appendList(request.headers["x-forwarded-for"], request.ip);
  return out;
}

/** The response's end-to-end headers, for the client. */
function responseHeaders(headers: IncomingHttpHeaders): Record<string, string | string[]> {
  return endToEnd(headers, HOP_BY_HOP);
}

function endToEnd(
  headers: IncomingHttpHeaders,
  dropped: ReadonlySet<string>,
): Record<string, string | string[]> {
  const listed = connectionListed(headers.connection);
  const out: Record<string, string | string[]> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined || dropped.has(name) || listed.has(name)) continue;
    out[name] = value;
  }
  return out;
}

/** `Content-Type` values hidden from Fastify's body parsing, by request. */
const hiddenContentTypes = new WeakMap<IncomingMessage, string>();

/**
 * Fastify answers 415 to a `Content-Type` it cannot parse (`text`, `a/b;;`) before any handler
 * runs; the upstream is the one to judge it. Hidden while the body is read as bytes (the cache's
 * hooks, which run before, see it), restored for forwarding. QUERY keeps it: Fastify refuses a
 * QUERY without one (RFC 10008 §2).
 */
function hideContentType(
  request: FastifyRequest,
  _reply: FastifyReply,
  payload: Readable,
  done: (error: Error | null, payload?: Readable) => void,
): void {
  const value = request.raw.headers["content-type"];
  if (value !== undefined && request.method !== "QUERY") {
    hiddenContentTypes.set(request.raw, value);
    delete request.raw.headers["content-type"];
  }
  done(null, payload);
}

function restoreContentType(request: FastifyRequest): void {
  const value = hiddenContentTypes.get(request.raw);
  if (value !== undefined) request.raw.headers["content-type"] = value;
}

/** The raw request's body, up to `limit` bytes; `undefined` when it has none. */
async function readBody(raw: IncomingMessage, limit: number): Promise<Buffer | undefined> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of raw) {
    size += (chunk as Buffer).length;
    if (size > limit) throw new Error(`request body larger than ${limit} bytes`);
    chunks.push(chunk as Buffer);
  }
  return size === 0 ? undefined : Buffer.concat(chunks);
}

/** Relay a 102 or 103 to the client while its request waits for the final response. */
function relayInterim(client: ServerResponse, status: number, headers: IncomingHttpHeaders): void {
  if (client.headersSent || client.destroyed) return;
  try {
    if (status === 102) client.writeProcessing();
    else if (status === 103) client.writeEarlyHints(endToEnd(headers, HOP_BY_HOP));
  } catch {
    // An Early Hints field node refuses to write is not worth failing the request for.
  }
}

function appendList(existing: string | string[] | undefined, value: string): string {
  const prior = Array.isArray(existing) ? existing.join(", ") : existing;
  return prior ? `${prior}, ${value}` : value;
}
