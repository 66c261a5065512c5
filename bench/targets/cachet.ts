/**
 * cachet's targets, imported from the built package (`dist/`) through the self-reference, as
 * an application would import it. The handler is the same as every other target's: fetch the
 * upstream, parse, return the object; cachet stores the framework's serialized bytes.
 */
import type { Server } from "node:http";
import { createAdaptorServer } from "@hono/node-server";
import type { Cache } from "cachet";
import { createCache } from "cachet";
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

async function makeCache(config: TargetConfig): Promise<Cache> {
  const ttl = config.ttlMs;
  if (config.name === "cachet-redis" || config.name === "cachet-tiered") {
    const { redisStore } = await import("cachet/redis");
    return createCache({
      // A prefix per target: the bench's targets share one Redis (keys and bus channels).
      store: redisStore({ url: config.redisUrl, prefix: `cachet:${config.name}:` }),
      l1: config.name === "cachet-tiered",
      // One factory call per key across every instance sharing Redis (README: "On Redis").
      lease: true,
      ttl,
    });
  }
  if (config.name === "cachet-cluster") {
    if (config.clusterNodes.length === 0) throw new Error("cachet-cluster: no cluster started");
    const { redisStore } = await import("cachet/redis");
    return createCache({
      // docs/stores.md, "Redis Cluster and Sentinel": some nodes to discover the others from.
      store: redisStore({
        cluster: { rootNodes: config.clusterNodes.map((url) => ({ url })) },
        prefix: `cachet:${config.name}:`,
      }),
      lease: true,
      ttl,
    });
  }
  if (config.name === "cachet-memcached") {
    if (!config.memcachedServers) throw new Error("cachet-memcached: no memcached started");
    const { memcachedStore } = await import("cachet/memcached");
    return createCache({
      store: memcachedStore({ servers: config.memcachedServers, prefix: `cachet:${config.name}:` }),
      // ADD-based lease: one factory call per key across processes (waiters poll the store).
      lease: true,
      ttl,
    });
  }
  return createCache({ ttl });
}

/**
 * The cache's own troubles, counted for the report: store errors by operation and error code
 * (a timeout, a refused connection), and circuit-breaker openings. A cache that fails to write
 * under load serves misses, and its figures are only readable next to these.
 */
function countTroubles(cache: Cache): () => Record<string, number> {
  const counts: Record<string, number> = {};
  const add = (name: string) => {
    counts[name] = (counts[name] ?? 0) + 1;
  };
  cache.on("error", (e) => {
    const code = (e.error as { code?: unknown } | undefined)?.code;
    add(`error ${e.operation}${typeof code === "string" ? ` ${code}` : ""}`);
  });
  cache.on("breaker", (e) => {
    if (e.state === "open") add("breaker open");
  });
  return () => ({ ...counts });
}

export async function start(config: TargetConfig): Promise<RunningTarget> {
  const cache = await makeCache(config);
  const stats = countTroubles(cache);
  const ttl = config.ttlMs;
  const upstream = config.upstreamUrl;

  if (config.name === "cachet-express") {
    const { cachetExpress } = await import("cachet/express");
    const app = express();
    const cached = cachetExpress({ cache });
    app.use(cached.invalidator());
    app.get("/posts", cached({ ttl }), async (req, res) => {
      res.json(await fetchPosts(upstream, searchOf(req.originalUrl)));
    });
    return { ...(await listenExpress(app, () => cache.close())), stats };
  }

  if (config.name === "cachet-hono") {
    const { cachetHono } = await import("cachet/hono");
    const app = new Hono();
    const cached = cachetHono({ cache, app });
    app.use(cached.invalidator());
    app.get("/posts", cached({ ttl }), async (c) =>
      c.json(await fetchPosts(upstream, new URL(c.req.url).search)),
    );
    const server = createAdaptorServer({ fetch: app.fetch }) as Server;
    const port = await listen(server);
    return {
      port,
      close: async () => {
        await closeServer(server);
        await cache.close();
      },
      stats,
    };
  }

  const { cachetFastify } = await import("cachet/fastify");
  const app = Fastify({ logger: false });
  await app.register(cachetFastify, { cache });
  app.get("/posts", { config: { cache: { ttl } } }, async (request) =>
    fetchPosts(upstream, searchOf(request.url)),
  );
  app.addHook("onClose", async () => {
    await cache.close();
  });
  return { ...(await listenFastify(app)), stats };
}
