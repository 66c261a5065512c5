/**
 * The article's `@cache(expire=60)` (FastAPI + fastapi-cache's Redis backend), ported to
 * TypeScript as written: the key is the function's name and its arguments (hashed, like
 * fastapi-cache's default key builder); a hit is a Redis GET and a JSON.parse; a miss calls the
 * function, JSON.stringify's the result and SETs it with EX. The endpoint returns the object,
 * which the framework serializes again. node-redis with its default options.
 */
import { createHash } from "node:crypto";
import Fastify from "fastify";
import { createClient } from "redis";
import type { RunningTarget, TargetConfig } from "./common.js";
import { fetchPosts, listenFastify, searchOf } from "./common.js";

export async function start(config: TargetConfig): Promise<RunningTarget> {
  const redis = createClient({ url: config.redisUrl });
  let errors = 0;
  redis.on("error", () => {
    errors++; // node-redis requires an error listener; it reconnects by itself
  });
  await redis.connect();

  /** `@cache(expire=N)`: cache an async function's result in Redis for N seconds. */
  function cache({ expire }: { expire: number }) {
    return <A extends unknown[], R>(fn: (...args: A) => Promise<R>) =>
      async function cached(...args: A): Promise<R> {
        const key = `fastapi-cache:${createHash("md5")
          .update(`${fn.name}:${JSON.stringify(args)}`)
          .digest("hex")}`;
        const hit = await redis.get(key);
        if (hit !== null) return JSON.parse(hit) as R;
        const value = await fn(...args);
        await redis.set(key, JSON.stringify(value), { EX: expire });
        return value;
      };
  }

  const getPosts = cache({ expire: config.ttlMs / 1000 })(async function getPosts(search: string) {
    return fetchPosts(config.upstreamUrl, search);
  });

  const app = Fastify({ logger: false });
  app.get("/posts", async (request) => getPosts(searchOf(request.url)));
  app.addHook("onClose", async () => {
    redis.destroy();
  });
  const running = await listenFastify(app);
  return { ...running, stats: () => ({ storeErrors: errors }) };
}
