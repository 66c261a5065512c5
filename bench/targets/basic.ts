/**
 * The reference points: `limit` (and its A/A twin), the same constant-Buffer route on Express
 * and Hono, and `nocache` (every request proxied).
 */
import { createHash } from "node:crypto";
import type { Server } from "node:http";
import { createAdaptorServer } from "@hono/node-server";
import express from "express";
import Fastify from "fastify";
import { Hono } from "hono";
import type { RunningTarget, TargetConfig } from "./common.js";
import {
  closeServer,
  fetchPosts,
  listen,
  listenExpress,
  listenFastify,
  searchOf,
} from "./common.js";

const JSON_TYPE = "application/json; charset=utf-8";

/**
 * The headers a cachet hit on `body` carries (the stored set plus `ETag`, `Age`,
 * `Cache-Status`), as a function of the time: what the `limit-*` targets send with a hit's
 * cost in Fastify's reply path but no cache behind it.
 */
export function hitHeaders(body: Buffer): () => Record<string, string> {
  const etag = `"${createHash("sha256").update(body).digest("base64url").slice(0, 27)}"`;
  const startedAt = Date.now();
  return () => {
    const age = Math.floor((Date.now() - startedAt) / 1000);
    return {
      "content-type": JSON_TYPE,
      vary: "Accept-Encoding",
      etag,
      age: String(age),
      "cache-status": `cachet; hit; ttl=${Math.max(0, 60 - age)}`,
    };
  };
}

export async function start(config: TargetConfig): Promise<RunningTarget> {
  if (config.name === "nocache") {
    const app = Fastify({ logger: false });
    app.get("/posts", async (request) => fetchPosts(config.upstreamUrl, searchOf(request.url)));
    return listenFastify(app);
  }

  // The same bytes every other target sends on a hit: the upstream's posts, parsed and
  // serialized again by the framework (JSON.stringify), here once at start-up.
  const body = Buffer.from(JSON.stringify(await fetchPosts(config.upstreamUrl, "")), "utf8");

  switch (config.name) {
    case "limit":
    case "limit-aa": {
      const app = Fastify({ logger: false });
      app.get("/posts", function constantBody(_request, reply) {
        reply.header("content-type", JSON_TYPE).send(body);
      });
      return listenFastify(app);
    }
    case "limit-headers": {
      // What a cachet memory hit sends, without the cache: the reply from onRequest (no
      // handler), the stored header set plus the four headers every hit adds.
      const headers = hitHeaders(body);
      const app = Fastify({ logger: false });
      app.get(
        "/posts",
        {
          onRequest(_request, reply, _done) {
            reply.code(200);
            reply.headers(headers());
            reply.send(body);
          },
        },
        function unreached(_request, reply) {
          reply.code(500).send();
        },
      );
      return listenFastify(app);
    }
    case "limit-redis": {
      // limit-headers, the body read from Redis each time: what any Redis-backed hit must pay
      // (a round trip, a 27 KB reply read and parsed) without a cache's own work.
      const { createClient, RESP_TYPES } = await import("redis");
      const client = createClient({ url: config.redisUrl, commandOptions: { timeout: 0 } });
      await client.connect();
      const redis = client.withTypeMapping({ [RESP_TYPES.BLOB_STRING]: Buffer });
      const headers = hitHeaders(body);
      const app = Fastify({ logger: false });
      app.get(
        "/posts",
        {
          async onRequest(request, reply) {
            const key = `limit-redis:${request.url}`;
            let bytes = await redis.get(key);
            if (bytes === null) {
              bytes = body;
              await redis.set(key, body);
            }
            reply.code(200);
            reply.headers(headers());
            return reply.send(bytes);
          },
        },
        function unreached(_request, reply) {
          reply.code(500).send();
        },
      );
      const running = await listenFastify(app);
      return {
        ...running,
        close: async () => {
          await running.close();
          client.destroy();
        },
      };
    }
    case "limit-express": {
      const app = express();
      app.get("/posts", function constantBody(_req, res) {
        res.type("json").send(body);
      });
      return listenExpress(app);
    }
    case "limit-hono": {
      const app = new Hono();
      app.get("/posts", (c) => c.body(body, 200, { "content-type": JSON_TYPE }));
      const server = createAdaptorServer({ fetch: app.fetch }) as Server;
      const port = await listen(server);
      return { port, close: () => closeServer(server) };
    }
    default:
      throw new Error(`basic.ts does not build ${config.name}`);
  }
}
