/**
 * `Cache-Status: stored` is a claim about the cache (RFC 9211 §2.7): the response was kept.
 * Found trying the NestJS guide with Redis killed: every request said `fwd=uri-miss; stored`
 * and every next request was a miss again. With the remote store as the only tier and
 * unreachable, a response is not stored, and the header says why; with memory in front, it is
 * stored (in memory), and the next request is a hit. Over real sockets, on a real Redis.
 */
import assert from "node:assert/strict";
import { after, afterEach, before, describe, it } from "node:test";
import Fastify, { type FastifyInstance } from "fastify";
import { cachetFastify } from "../../src/adapters/fastify.js";
import { createCache } from "../../src/cache.js";
import type { CacheEventMap } from "../../src/events.js";
import { redisStore } from "../../src/stores/redis.js";
import { type RedisServer, startRedis } from "../helpers/redis.js";

describe("Cache-Status says stored only when a tier kept the response", { timeout: 60_000 }, () => {
  let redis: RedisServer;
  const apps: FastifyInstance[] = [];

  before(async () => {
    redis = await startRedis();
  });
  after(async () => {
    await redis?.stop();
  });
  afterEach(async () => {
    for (const app of apps.splice(0)) await app.close();
    await redis.start();
  });

  async function serve(l1: boolean) {
    const cache = createCache({
      store: redisStore({ url: redis.url, prefix: `stored-${l1}:` }),
      l1,
      ttl: 60_000,
      // Not a timeout test: a loaded machine must not turn a slow reply into a miss.
      storeTimeout: 2_000,
    });
    const events: CacheEventMap["http"][] = [];
    cache.on("http", (event) => events.push(event));
    cache.on("error", () => {});
    let calls = 0;
    const app = Fastify();
    await app.register(cachetFastify, { cache });
    app.get("/posts", { config: { cache: true } }, async (request) => {
      calls++;
      return { url: request.url };
    });
    apps.push(app);
    const address = await app.listen({ port: 0, host: "127.0.0.1" });
    const get = async (path: string) => {
      const response = await fetch(`${address}${path}`);
      await response.arrayBuffer();
      return { status: response.status, cacheStatus: response.headers.get("cache-status") };
    };
    return { get, events, calls: () => calls };
  }

  it("Redis only and up: stored, then a hit", async () => {
    const { get, calls } = await serve(false);
    assert.deepEqual(await get("/posts?a=1"), {
      status: 200,
      cacheStatus: "cachet; fwd=uri-miss; stored",
    });
    const second = await get("/posts?a=1");
    assert.match(second.cacheStatus ?? "", /^cachet; hit; ttl=\d+$/);
    assert.equal(calls(), 1);
  });

  it("Redis only and killed: answered, not claimed as stored, and the event says why", async () => {
    const { get, events, calls } = await serve(false);
    assert.equal((await get("/posts?warm=1")).cacheStatus, "cachet; fwd=uri-miss; stored");
    await redis.kill();
    for (let i = 0; i < 3; i++) {
      // Each request is a miss again (nothing kept it): none may say `stored`.
      assert.deepEqual(await get("/posts?b=1"), {
        status: 200,
        cacheStatus: "cachet; fwd=uri-miss; detail=store-unavailable",
      });
    }
    assert.equal(calls(), 4);
    assert.deepEqual(
      events.slice(-3).map((e) => [e.outcome, e.reason]),
      Array(3).fill(["miss", "store-unavailable"]),
    );
  });

  it("memory in front of a killed Redis: stored in memory, and the next request is a hit", async () => {
    const { get, calls } = await serve(true);
    assert.equal((await get("/posts?warm=1")).cacheStatus, "cachet; fwd=uri-miss; stored");
    await redis.kill();
    assert.equal((await get("/posts?c=1")).cacheStatus, "cachet; fwd=uri-miss; stored");
    assert.match((await get("/posts?c=1")).cacheStatus ?? "", /^cachet; hit; ttl=\d+$/);
    assert.equal(calls(), 2);
  });
});
