/**
 * cache-manager 7, as its README shows: `createCache()` on its default in-memory Keyv, or
 * `createCache({ stores: [createKeyv(url)] })` with @keyv/redis; `wrap(key, fn, ttl)`.
 */
import { createKeyv } from "@keyv/redis";
import { createCache } from "cache-manager";
import Fastify from "fastify";
import type { RunningTarget, TargetConfig } from "./common.js";
import { fetchPosts, listenFastify, searchOf } from "./common.js";

export async function start(config: TargetConfig): Promise<RunningTarget> {
  let errors = 0;
  const cache =
    config.name === "cache-manager-redis"
      ? createCache({ stores: [createKeyv(config.redisUrl)], ttl: config.ttlMs })
      : createCache({ ttl: config.ttlMs });
  for (const store of cache.stores) {
    // Keyv's README: listen to `error` so that a lost connection does not crash the app.
    store.on("error", () => {
      errors++;
    });
  }
  const app = Fastify({ logger: false });
  app.get("/posts", async (request) => {
    const search = searchOf(request.url);
    return cache.wrap(`posts${search}`, () => fetchPosts(config.upstreamUrl, search), config.ttlMs);
  });
  app.addHook("onClose", async () => {
    await cache.disconnect();
  });
  const running = await listenFastify(app);
  return { ...running, stats: () => ({ storeErrors: errors }) };
}
