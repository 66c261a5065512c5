/**
 * The article's service in TypeScript: `GET /posts` proxies a slow external API and is cached
 * for `CACHE_TTL` (60 s), so that responses go from the upstream's >100 ms to a few ms.
 */
import swagger from "@fastify/swagger";
import swaggerUi from "@fastify/swagger-ui";
import { cachetFastify } from "cachet/fastify";
import Fastify, {
  type FastifyContextConfig,
  type FastifyError,
  type FastifyInstance,
  LogController,
} from "fastify";
import { createDemoCache } from "./cache.js";
import type { DemoConfig } from "./config.js";
import { formatDuration } from "./config.js";
import { createUpstream, UpstreamError } from "./upstream.js";

const JSON_TYPE = "application/json; charset=utf-8";

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

/** The query string of a raw request URL, `?` included, or `""`. */
function queryOf(url: string): string {
  const i = url.indexOf("?");
  return i === -1 ? "" : url.slice(i);
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
  const demoCache = await createDemoCache(config, app.log);
  app.addHook("onClose", async () => {
    await demoCache.close();
  });
  app.addHook("onReady", async () => {
    await demoCache.probe();
  });

  // Route-level opt-in: only the proxied routes are cached, never /health or /docs.
  const cached: FastifyContextConfig = demoCache.cache ? { cache: { ttl: config.cacheTtlMs } } : {};
  if (demoCache.cache) await app.register(cachetFastify, { cache: demoCache.cache });

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
      config: cached,
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
    async (request, reply) => {
      const { body } = await upstream.getJson(`/posts${queryOf(request.url)}`);
      return reply.type(JSON_TYPE).send(body);
    },
  );

  app.get<{ Params: { id: number } }>(
    "/posts/:id",
    {
      config: cached,
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
    async (request, reply) => {
      const { body } = await upstream.getJson(`/posts/${request.params.id}`);
      return reply.type(JSON_TYPE).send(body);
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
                  store: { type: "string", enum: ["memory", "redis", "none"] },
                  state: { type: "string", enum: ["ok", "degraded"] },
                  breaker: { type: "string", enum: ["closed", "open", "half-open"] },
                  connection: {
                    type: "string",
                    enum: ["idle", "connecting", "ready", "reconnecting", "closed"],
                    description: "The Redis connection (CACHE_STORE=redis only)",
                  },
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

  return app;
}
