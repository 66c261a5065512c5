/**
 * The article's service in TypeScript: `GET /posts` proxies a slow external API and is cached
 * for `CACHE_TTL` (60 s), so that responses go from the upstream's >100 ms to a few ms.
 */
import { createHash, timingSafeEqual } from "node:crypto";
import swagger from "@fastify/swagger";
import swaggerUi from "@fastify/swagger-ui";
import { cachetFastify, type RouteCacheOptions } from "cachet/fastify";
import { prometheusMetrics } from "cachet/prometheus";
import Fastify, {
  type FastifyContextConfig,
  type FastifyError,
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
  LogController,
} from "fastify";
import { Registry } from "prom-client";
import { createDemoCache } from "./cache.js";
import type { DemoConfig } from "./config.js";
import { formatDuration } from "./config.js";
import { createUpstream, UpstreamError, type UpstreamJson } from "./upstream.js";

const JSON_TYPE = "application/json; charset=utf-8";

/** How much longer than `UPSTREAM_TIMEOUT` a lease waiter waits, per upstream timeout. */
const LEASE_MARGIN_MS = 1_000;

const postSchema = {
  $id: "Post",
  type: "object",
  required: ["userId", "id", "title", "body"],
  properties: {
    userId: { type: "integer" },
    id: { type: "integer" },
    title: { type: "string" },
    body: { type: "string" },
  },
} as const;

const errorSchema = {
  $id: "Error",
  type: "object",
  required: ["error"],
  properties: { error: { type: "string" } },
} as const;

const errors = (...codes: number[]) =>
  Object.fromEntries(
    codes.map((code) => [code, { $ref: "Error#", description: ERROR_DESCRIPTIONS[code] }]),
  );

const ERROR_DESCRIPTIONS: Record<number, string> = {
  400: "Invalid request (e.g. a non-numeric id)",
  404: "No such post upstream",
  502: "The upstream is unreachable, failed, or sent invalid JSON (never cached)",
  504: "The upstream did not answer within UPSTREAM_TIMEOUT (never cached)",
};

/**
 * The validator to send upstream: the one cachet puts on its refresh of a stale entry (the
 * upstream's own ETag), so that unchanged data comes back as a 304 without a body.
 */
function validators(request: FastifyRequest): { ifNoneMatch: string | undefined } {
  const inm = request.headers["if-none-match"];
  return { ifNoneMatch: typeof inm === "string" ? inm : undefined };
}

/** The upstream's answer, byte for byte, with its ETag; a 304 as a 304 (cachet freshens its copy). */
function relay(reply: FastifyReply, answer: UpstreamJson): FastifyReply {
  if (answer.etag) reply.header("etag", answer.etag);
  if (answer.status === 304) return reply.code(304).send();
  return reply.type(JSON_TYPE).send(answer.body);
}

/** The query string of a raw request URL, `?` included, or `""`. */
function queryOf(url: string): string {
  const i = url.indexOf("?");
  return i === -1 ? "" : url.slice(i);
}

/**
 * Tags of a `/posts/:id` response: `posts` and `post:<id>`. The cache runs before Fastify
 * validates the id, so the id is normalized here (`/posts/007` is post 7, and must be
 * invalidated by `post:7`); a malformed id gets `posts` only (it answers 400, never stored).
 */
function postTags(request: { readonly url: string }): readonly string[] {
  const match = /^\/posts\/(\d{1,10})(?:[/?#]|$)/.exec(request.url);
  const id = match ? Number(match[1]) : Number.NaN;
  return Number.isSafeInteger(id) && id > 0 ? ["posts", `post:${id}`] : ["posts"];
}

/** Longest tag or path accepted by `POST /cache/invalidate`, and most of them per request. */
const MAX_INVALIDATE_ITEM = 512;
const MAX_INVALIDATE_ITEMS = 100;

/** What `POST /cache/invalidate` accepts, checked by hand (see the route). */
interface InvalidateRequest {
  readonly tags: readonly string[];
  readonly paths: readonly string[];
  readonly soft: boolean;
}

/** A bad request to `POST /cache/invalidate`: 400 with the reason. */
class InvalidBodyError extends Error {
  readonly statusCode = 400;
}

/** The body of `POST /cache/invalidate`, strictly: no coercion, no unknown field. */
function parseInvalidateBody(body: unknown): InvalidateRequest {
  if (body === null || typeof body !== "object" || Array.isArray(body)) {
    throw new InvalidBodyError(
      'invalid request: expected a JSON object such as {"tags": ["posts"]} or {"paths": ["/posts"]}',
    );
  }
  const record = body as Record<string, unknown>;
  for (const name of Object.keys(record)) {
    if (name !== "tags" && name !== "paths" && name !== "soft") {
      throw new InvalidBodyError(`invalid request: unknown field ${JSON.stringify(name)}`);
    }
  }
  const list = (name: "tags" | "paths"): string[] => {
    const value = record[name];
    if (value === undefined) return [];
    if (!Array.isArray(value) || value.length > MAX_INVALIDATE_ITEMS) {
      throw new InvalidBodyError(
        `invalid request: ${name} must be an array of at most ${MAX_INVALIDATE_ITEMS} strings`,
      );
    }
    for (const item of value) {
      if (typeof item !== "string" || item.length === 0 || item.length > MAX_INVALIDATE_ITEM) {
        throw new InvalidBodyError(
          `invalid request: every item of ${name} must be a string of 1 to ${MAX_INVALIDATE_ITEM} characters`,
        );
      }
    }
    return value as string[];
  };
  const tags = list("tags");
  const paths = list("paths");
  if (tags.length === 0 && paths.length === 0) {
    throw new InvalidBodyError("invalid request: give tags or paths to invalidate");
  }
  for (const tag of tags) {
    // cachet's own tags (namespaces, paths) are not the admin's to name.
    if (tag.startsWith("@")) {
      throw new InvalidBodyError(`invalid request: tags starting with "@" are reserved: ${tag}`);
    }
  }
  for (const path of paths) {
    if (!path.startsWith("/") || path.startsWith("//")) {
      throw new InvalidBodyError(`invalid request: a path starts with one "/": ${path}`);
    }
  }
  const soft = record.soft ?? false;
  if (typeof soft !== "boolean")
    throw new InvalidBodyError("invalid request: soft must be a boolean");
  return { tags, paths, soft };
}

/**
 * Whether `header` is `Bearer <token>`. Both sides are hashed first, so that the comparison
 * runs in constant time on equal-length buffers whatever the length of what was sent.
 */
function bearerMatches(header: string | undefined, expected: Buffer): boolean {
  // RFC 9110 §11.1: the scheme is case-insensitive.
  const match = header === undefined ? null : /^Bearer +(\S+) *$/i.exec(header);
  const sent = createHash("sha256")
    .update(match?.[1] ?? "")
    .digest();
  return timingSafeEqual(sent, expected) && match !== null;
}

/**
 * Build the demo service: routes, error mapping, OpenAPI docs at `/docs`, and the response cache
 * on `/posts` and `/posts/:id` unless `CACHE_STORE=none`. The cache is closed with the app.
 */
export async function buildApp(config: DemoConfig): Promise<FastifyInstance> {
  const app = Fastify({
    logger: { level: config.logLevel },
    // One log line per request would dominate the cost of a cache hit; errors are still logged.
    logController: new LogController({ disableRequestLogging: true }),
  });
  const upstream = createUpstream({
    baseUrl: config.upstreamUrl,
    timeoutMs: config.upstreamTimeoutMs,
  });
  const demoCache = await createDemoCache(config);
  app.addHook("onClose", async () => {
    await demoCache.close();
  });
  app.addHook("onReady", async () => {
    await demoCache.probe();
  });

  // Route-level opt-in: only the proxied routes are cached, never /health or /docs.
  const shared = ["redis", "tiered", "memcached", "dynamodb"].includes(config.cacheStore);
  const routeCache = (tags: RouteCacheOptions["tags"]): FastifyContextConfig => {
    if (!demoCache.cache) return {};
    return {
      cache: {
        ttl: config.cacheTtlMs,
        staleWhileRevalidate: config.cacheStaleWhileRevalidateMs,
        staleIfError: config.cacheStaleIfErrorMs,
        tags,
        // One upstream call per key across the fleet. The lease is short and renewed while
        // the handler runs (a dead holder is noticed within about a second); waiters wait at
        // most two upstream timeouts for the holder's value before calling the upstream.
        ...(shared && config.cacheLease
          ? { lease: { wait: 2 * (config.upstreamTimeoutMs + LEASE_MARGIN_MS) } }
          : {}),
      },
    };
  };
  if (demoCache.cache) {
    // The demo has no unsafe routes of its own; the admin endpoint invalidates what it is told.
    await app.register(cachetFastify, {
      cache: demoCache.cache,
      invalidateOnUnsafe: false,
      maxEntrySize: config.cacheMaxEntrySize,
      // The API builds nothing from the host (no links, no redirects), and a fleet's instances
      // must share entries whatever name a request reached them by (a load balancer, a pod IP).
      keyHost: false,
    });
  }

  await app.register(swagger, {
    // Name shared schemas after their $id ("Post", "Error") in the document.
    refResolver: {
      buildLocalReference: (json, _base, _fragment, i) => String(json.$id ?? `def-${i}`),
    },
    openapi: {
      openapi: "3.0.3",
      info: {
        title: "cachet demo",
        description:
          `The /posts API of "How to implement caching in FastAPI?", in TypeScript: a proxy of ` +
          `${config.upstreamUrl}, cached for ${formatDuration(config.cacheTtlMs)} ` +
          `(store: ${demoCache.kind}).`,
        version: "0.1.0",
      },
      tags: [
        { name: "posts", description: "Proxied from the upstream, cached" },
        { name: "ops", description: "Not cached" },
      ],
      ...(config.adminToken !== undefined
        ? { components: { securitySchemes: { bearerAuth: { type: "http", scheme: "bearer" } } } }
        : {}),
    },
  });
  await app.register(swaggerUi, { routePrefix: "/docs" });

  app.addSchema(postSchema);
  app.addSchema(errorSchema);

  app.setErrorHandler((error: FastifyError, request, reply) => {
    // Errors must never be stored, by this cache or by any cache downstream (RFC 9111 §5.2.2.5).
    reply.header("cache-control", "no-store");
    if (error instanceof UpstreamError) {
      request.log.warn({ code: error.code }, error.message);
      return reply.code(error.statusCode).send({ error: error.message });
    }
    if (error.validation) {
      return reply.code(400).send({ error: `invalid request: ${error.message}` });
    }
    if (typeof error.statusCode === "number" && error.statusCode >= 400 && error.statusCode < 500) {
      return reply.code(error.statusCode).send({ error: error.message });
    }
    request.log.error({ err: error }, "unexpected error");
    return reply.code(500).send({ error: "internal server error" });
  });

  app.setNotFoundHandler((request, reply) => {
    reply.header("cache-control", "no-store");
    return reply.code(404).send({ error: `not found: ${request.method} ${request.url}` });
  });

  app.get(
    "/posts",
    {
      config: routeCache(["posts"]),
      schema: {
        tags: ["posts"],
        summary: "All posts (proxied, cached)",
        description:
          "The upstream's /posts, byte for byte. The query string is forwarded (e.g. ?userId=1).",
        querystring: {
          type: "object",
          properties: {
            userId: { type: "integer", minimum: 1, description: "Only this user's posts" },
          },
        },
        response: {
          200: { description: "The posts", type: "array", items: { $ref: "Post#" } },
          ...errors(400, 502, 504),
        },
      },
    },
    async (request, reply) =>
      relay(reply, await upstream.getJson(`/posts${queryOf(request.url)}`, validators(request))),
  );

  app.get<{ Params: { id: number } }>(
    "/posts/:id",
    {
      config: routeCache(postTags),
      schema: {
        tags: ["posts"],
        summary: "One post (proxied, cached)",
        params: {
          type: "object",
          required: ["id"],
          properties: { id: { type: "integer", minimum: 1, maximum: 2_147_483_647 } },
        },
        response: { 200: { $ref: "Post#" }, ...errors(400, 404, 502, 504) },
      },
    },
    async (request, reply) =>
      relay(reply, await upstream.getJson(`/posts/${request.params.id}`, validators(request))),
  );

  // Prometheus metrics of the cache (see docs/operations.md), on a registry of this app's own.
  const metrics = new Registry();
  if (demoCache.cache) prometheusMetrics(demoCache.cache, { register: metrics });
  app.get(
    "/metrics",
    {
      schema: {
        tags: ["ops"],
        summary: "Prometheus metrics of the cache (hit ratio by route and tier, latency, errors)",
        produces: ["text/plain"],
        response: {
          200: {
            description: "Prometheus text exposition format",
            type: "string",
          },
        },
      },
    },
    async function metricsRoute(_request, reply) {
      reply.header("cache-control", "no-store");
      return reply.type(metrics.contentType).send(await metrics.metrics());
    },
  );

  app.get(
    "/health",
    {
      schema: {
        tags: ["ops"],
        summary: "Liveness, and the state of the cache store (200 even while it is degraded)",
        response: {
          200: {
            type: "object",
            required: ["status", "cache"],
            properties: {
              status: { type: "string", enum: ["ok"] },
              cache: {
                type: "object",
                required: ["store", "state"],
                properties: {
                  store: {
                    type: "string",
                    enum: ["memory", "redis", "tiered", "memcached", "dynamodb", "none"],
                  },
                  state: { type: "string", enum: ["ok", "degraded"] },
                  redis: {
                    type: "string",
                    enum: ["up", "down", "breaker-open"],
                    description: "Redis as the cache sees it (CACHE_STORE=redis or tiered)",
                  },
                  remote: {
                    type: "string",
                    enum: ["up", "down", "breaker-open"],
                    description:
                      "The remote store (Redis, Memcached or DynamoDB) as the cache sees it",
                  },
                  breaker: { type: "string", enum: ["closed", "open", "half-open"] },
                  connection: {
                    type: "string",
                    enum: ["idle", "connecting", "ready", "reconnecting", "failing", "closed"],
                    description:
                      "The remote store's connection (failing: Memcached or DynamoDB, the last call failed)",
                  },
                  lease: { type: "boolean", description: "The fleet-wide lease is on" },
                  bus: {
                    type: "object",
                    description: "The invalidation bus (CACHE_STORE=tiered)",
                    required: ["state", "resets"],
                    properties: {
                      state: { type: "string", enum: ["idle", "connecting", "up", "down"] },
                      resets: {
                        type: "integer",
                        description:
                          "Times the in-process tier was dropped because bus messages may have been lost",
                      },
                      lastReset: { type: "string", enum: ["reconnected", "gap"] },
                    },
                  },
                  problems: { type: "array", items: { type: "string" } },
                },
              },
              upstream: { type: "string" },
              ttlSeconds: { type: "number" },
            },
          },
        },
      },
    },
    async (_request, reply) => {
      reply.header("cache-control", "no-store");
      return {
        status: "ok",
        cache: demoCache.health(),
        upstream: config.upstreamUrl,
        ttlSeconds: config.cacheTtlMs / 1000,
      };
    },
  );

  const cache = demoCache.cache;
  if (config.adminToken !== undefined && cache) {
    const expected = createHash("sha256").update(config.adminToken).digest();
    app.post(
      "/cache/invalidate",
      {
        bodyLimit: 64 * 1024,
        // Checked before the body is even parsed: a caller without the token learns nothing.
        onRequest: function checkAdminToken(request, reply, done) {
          if (bearerMatches(request.headers.authorization, expected)) {
            done();
            return;
          }
          reply
            .code(401)
            .header("cache-control", "no-store")
            .header("www-authenticate", 'Bearer realm="cachet demo"')
            .send({ error: "unauthorized: send Authorization: Bearer <ADMIN_TOKEN>" });
        },
        // The body is checked by hand (no type coercion, no silently dropped field); the
        // schema below is for the OpenAPI document.
        validatorCompiler: () => () => true,
        schema: {
          tags: ["ops"],
          summary: "Invalidate cached responses by tag or path (needs ADMIN_TOKEN)",
          description:
            "Tags: `posts` (every cached response), `post:<id>` (one post's responses). " +
            "A path expires every query string of that path. Each tag or path is one write, " +
            "whatever the number of cached responses. `soft` marks tagged responses stale " +
            "instead (still served within CACHE_STALE_IF_ERROR if the upstream fails).",
          security: [{ bearerAuth: [] }],
          body: {
            type: "object",
            additionalProperties: false,
            properties: {
              tags: { type: "array", items: { type: "string" }, maxItems: MAX_INVALIDATE_ITEMS },
              paths: {
                type: "array",
                items: { type: "string", pattern: "^/" },
                maxItems: MAX_INVALIDATE_ITEMS,
              },
              soft: { type: "boolean" },
            },
          },
          response: {
            200: {
              description: "Invalidated",
              type: "object",
              required: ["invalidated"],
              properties: {
                invalidated: {
                  type: "object",
                  properties: {
                    tags: { type: "array", items: { type: "string" } },
                    paths: { type: "array", items: { type: "string" } },
                    soft: { type: "boolean" },
                  },
                },
              },
            },
            400: { $ref: "Error#", description: "Malformed body" },
            401: { $ref: "Error#", description: "Missing or wrong bearer token" },
          },
        },
      },
      async (request, reply) => {
        reply.header("cache-control", "no-store");
        const { tags, paths, soft } = parseInvalidateBody(request.body);
        await Promise.all([
          tags.length > 0 ? app.cachet.invalidateTags(tags, { soft }) : undefined,
          paths.length > 0 ? app.cachet.invalidatePaths(paths) : undefined,
        ]);
        request.log.info({ tags, paths, soft }, "cache invalidated");
        return { invalidated: { tags, paths, soft } };
      },
    );
  }

  return app;
}
