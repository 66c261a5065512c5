import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { type Cache, createCache } from "../src/index.js";
import { redisStore } from "../src/stores/redis.js";
import { waitFor } from "./helpers/ports.js";
import { type RedisServer, startRedis } from "./helpers/redis.js";

/**
 * A large value on a real Redis with the default 50 ms store timeout: the write and the reads
 * of it take longer than 50 ms on the wire, which must not count as a failing store (an error,
 * the breaker opening, the factory running again). The timeout is sized by the payload.
 */

const run = randomUUID().slice(0, 8);
const SIZE = 40 * 1024 * 1024;
let redis: RedisServer;
const caches: Cache[] = [];

before(async () => {
  redis = await startRedis();
});
after(async () => {
  await Promise.all(caches.splice(0).map((c) => c.close()));
  await redis.stop();
});

async function instance(): Promise<Cache> {
  // The defaults: storeTimeout 50 ms, breaker after 5 failures. A lower threshold, so that the
  // few calls of this test would open it.
  const cache = createCache({
    store: redisStore({ url: redis.url }),
    bus: false,
    breakerThreshold: 2,
  });
  caches.push(cache);
  await waitFor(
    async () => {
      await cache.get(`warm-up:${run}`);
      return cache.health().l2?.connection === "ready";
    },
    "the cache to be connected",
    10_000,
  );
  return cache;
}

describe("a large value and the store timeout (real Redis)", () => {
  it("a 40 MB value is written and read back without a timeout, an error or the breaker opening", async () => {
    const cache = await instance();
    const errors: string[] = [];
    cache.on("error", ({ operation, error }) =>
      errors.push(`${operation}: ${error instanceof Error ? error.message : String(error)}`),
    );
    const big = "x".repeat(SIZE);
    let factoryCalls = 0;
    const key = `big:${run}`;
    const timings: number[] = [];
    let began = performance.now();
    const first = await cache.getOrSet(key, () => {
      factoryCalls++;
      return big;
    });
    timings.push(performance.now() - began);
    assert.equal(first.length, SIZE);
    // While it is stored and read, small calls queued behind it on the connection do not
    // time out either.
    for (let i = 0; i < 3; i++) {
      began = performance.now();
      const [again, small] = await Promise.all([
        cache.getOrSet(key, () => {
          factoryCalls++;
          return big;
        }),
        cache.get(`small:${run}`),
      ]);
      timings.push(performance.now() - began);
      assert.equal(again.length, SIZE);
      assert.equal(small, undefined);
    }
    await cache.set(`${key}:2`, big);
    assert.deepEqual(errors, [], "no store call failed");
    assert.equal(factoryCalls, 1, "the factory ran once: the stored value was read back");
    assert.equal(cache.storeState, "closed");
    console.log(
      `40 MB: write ${timings[0]!.toFixed(0)} ms, reads ${timings
        .slice(1)
        .map((t) => t.toFixed(0))
        .join(", ")} ms`,
    );
  });
});
