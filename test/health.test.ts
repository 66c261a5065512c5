import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { createCache, memoryStore } from "../src/index.js";
import { redisStore } from "../src/stores/redis.js";
import { MapStore, manualClock } from "./helpers/core.js";
import { waitFor } from "./helpers/ports.js";
import { startRedis } from "./helpers/redis.js";

describe("cache.health()", () => {
  it("an in-process cache: ok, with the memory tier's size and bound", async () => {
    const cache = createCache({ store: memoryStore({ maxSize: 10_000 }) });
    await cache.set("k", "v");
    const health = cache.health();
    assert.equal(health.status, "ok");
    assert.deepEqual(health.problems, []);
    assert.equal(health.l1?.store, "memory");
    assert.equal(health.l1?.entries, 1);
    assert.ok((health.l1?.bytes ?? 0) > 0);
    assert.equal(health.l1?.maxBytes, 10_000);
    assert.equal(health.l1?.evictions, 0);
    assert.equal(health.l2, undefined);
    assert.equal(health.bus, undefined);
  });

  it("a failing remote store: degraded, spelled out, and ok again after recovery", async () => {
    const clock = manualClock();
    const store = new MapStore(clock);
    const cache = createCache({ store, clock, l1: true, breakerThreshold: 2 });
    assert.equal(cache.health().status, "ok");
    assert.deepEqual(cache.health().l2, {
      store: "fake-remote",
      reachable: true,
      breaker: "closed",
    });
    store.failWith = new Error("ECONNREFUSED");
    await cache.get("a");
    let health = cache.health();
    assert.equal(health.status, "degraded");
    assert.equal(health.l2?.reachable, false);
    assert.equal(health.l2?.breaker, "closed");
    assert.equal(health.l2?.downSince, new Date(clock.t).toISOString());
    assert.match(health.l2?.lastError ?? "", /ECONNREFUSED/);
    assert.equal(health.problems.length, 1);
    assert.match(
      health.problems[0] ?? "",
      /^fake-remote store unreachable \(calls failing since .+: fake-remote store get: ECONNREFUSED\); reads miss and writes are skipped, requests go to the origin$/,
    );
    await cache.get("b");
    health = cache.health();
    assert.equal(health.l2?.breaker, "open");
    assert.match(health.problems[0] ?? "", /circuit breaker open/);
    store.failWith = undefined;
    clock.advance(1000);
    await cache.get("c");
    health = cache.health();
    assert.equal(health.status, "ok");
    assert.equal(health.l2?.reachable, true);
    assert.equal(health.l2?.downSince, undefined);
    assert.match(
      health.l2?.lastError ?? "",
      /ECONNREFUSED/,
      "the last error is kept for reporting",
    );
  });

  it("on a real Redis: the connection and the bus, down while Redis is, up after", async () => {
    const redis = await startRedis();
    const cache = createCache({
      store: redisStore({ url: redis.url, prefix: "health:", maxReconnectDelay: 100 }),
      l1: true,
      storeTimeout: 500,
      breakerCooldown: 100,
    });
    try {
      await cache.set("k", "v");
      await waitFor(() => cache.health().bus?.state === "up", "the bus to subscribe");
      let health = cache.health();
      assert.equal(health.status, "ok");
      assert.equal(health.l2?.connection, "ready");
      assert.equal(health.l2?.reachable, true);

      await redis.kill();
      await waitFor(async () => {
        await cache.get("k2");
        return cache.health().status === "degraded";
      }, "the outage to show");
      health = cache.health();
      assert.equal(health.l2?.reachable, false);
      assert.notEqual(health.l2?.connection, "ready");
      assert.ok(health.problems.some((p) => p.startsWith("redis store unreachable")));

      await redis.start();
      await waitFor(
        async () => {
          await cache.get("k3");
          return cache.health().status === "ok";
        },
        "the recovery to show",
        10_000,
        100,
      );
      health = cache.health();
      assert.equal(health.l2?.connection, "ready");
      assert.equal(health.bus?.state, "up");
    } finally {
      await cache.close();
      await redis.stop();
    }
  });
});
