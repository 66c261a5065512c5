/**
 * async-cache-dedupe, as its README shows: `createCache({ ttl, storage })` and `define`, on
 * its memory storage or its Redis storage (an ioredis client, which the README requires).
 */
import { createCache } from "async-cache-dedupe";
import Fastify from "fastify";
import { Redis } from "ioredis";
import type { RunningTarget, TargetConfig } from "./common.js";
import { fetchPosts, listenFastify, searchOf } from "./common.js";

export async function start(config: TargetConfig): Promise<RunningTarget> {
  const client = config.name === "acd-redis" ? new Redis(config.redisUrl) : undefined;
  let errors = 0;
  const cache = createCache({
    ttl: config.ttlMs / 1000, // seconds
    storage: client ? { type: "redis", options: { client } } : { type: "memory" },
    onError: () => {
      errors++;
    },
  }).define("getPosts", (search: string) => fetchPosts(config.upstreamUrl, search));

  const app = Fastify({ logger: false });
  app.get("/posts", async (request) => cache.getPosts(searchOf(request.url)));
  app.addHook("onClose", async () => {
    client?.disconnect();
  });
  const running = await listenFastify(app);
  return { ...running, stats: () => ({ storeErrors: errors }) };
}
