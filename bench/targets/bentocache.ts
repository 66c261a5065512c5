/**
 * bentocache, set up as its documentation's quick start does: an L1 memory driver, and for the
 * tiered target a Redis L2 plus the Redis bus that keeps L1s coherent (both on ioredis).
 */
import { BentoCache, bentostore } from "bentocache";
import { memoryDriver } from "bentocache/drivers/memory";
import { redisBusDriver, redisDriver } from "bentocache/drivers/redis";
import Fastify from "fastify";
import type { RunningTarget, TargetConfig } from "./common.js";
import { fetchPosts, listenFastify, searchOf } from "./common.js";

export async function start(config: TargetConfig): Promise<RunningTarget> {
  const connection = { host: "127.0.0.1", port: config.redisPort };
  const store =
    config.name === "bentocache-tiered"
      ? bentostore()
          .useL1Layer(memoryDriver({ maxSize: "100mb" }))
          .useL2Layer(redisDriver({ connection }))
          .useBus(redisBusDriver({ connection }))
      : bentostore().useL1Layer(memoryDriver({ maxSize: "100mb" }));
  const bento = new BentoCache({ default: "cache", stores: { cache: store } });

  const app = Fastify({ logger: false });
  app.get("/posts", async (request) => {
    const search = searchOf(request.url);
    return bento.getOrSet({
      key: `posts${search}`,
      factory: () => fetchPosts(config.upstreamUrl, search),
      ttl: config.ttlMs,
    });
  });
  app.addHook("onClose", async () => {
    await bento.disconnectAll();
  });
  return listenFastify(app);
}
