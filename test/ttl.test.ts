/**
 * TTL edges (issue 13): "never" exists and is accepted by every tier, Infinity and values past
 * what stores accept are refused naming the option, a bare number in a string is refused as
 * ambiguous. On a real Redis, an entry stored with `ttl: "never"` carries an expiry Redis
 * accepted (checked with PTTL), so it neither vanishes nor fails silently.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { createClient } from "redis";
import { createCache, InvalidOptionError } from "../src/index.js";
import { redisStore } from "../src/stores/redis.js";
import { manualClock } from "./helpers/core.js";
import { type RedisServer, startRedis } from "./helpers/redis.js";

const YEAR = 365 * 24 * 3600 * 1000;

describe('ttl: "never"', { timeout: 30_000 }, () => {
  let redis: RedisServer;
  before(async () => {
    redis = await startRedis();
  });
  after(async () => {
    await redis?.stop();
  });

  it("keeps a value in memory for as long as it is not deleted (99 years on)", async () => {
    const clock = manualClock();
    const cache = createCache({ clock, ttl: "never" });
    let calls = 0;
    await cache.getOrSet("config", () => ++calls);
    clock.advance(99 * YEAR);
    assert.equal(await cache.getOrSet("config", () => ++calls), 1);
    assert.equal(calls, 1);
    await cache.set("other", "x", { ttl: "never" });
    clock.advance(YEAR / 2);
    assert.equal(await cache.get("other"), "x");
    assert.equal(await cache.delete("other"), true);
    assert.equal(await cache.has("other"), false);
  });

  it("is stored in Redis with an expiry Redis accepted, and read back", async () => {
    const cache = createCache({ store: redisStore({ url: redis.url }), storeTimeout: "2s" });
    const client = createClient({ url: redis.url });
    await client.connect();
    try {
      await cache.set("forever", { v: 1 }, { ttl: "never", staleIfError: "1d" });
      const pttl = await client.pTTL("cachet:forever");
      assert.ok(pttl > 99 * YEAR, `PTTL ${pttl} is about 100 years`);
      const other = createCache({ store: redisStore({ url: redis.url }), storeTimeout: "2s" });
      try {
        assert.deepEqual(await other.get("forever"), { v: 1 });
      } finally {
        await other.close();
      }
    } finally {
      await client.quit();
      await cache.close();
    }
  });

  it('refuses Infinity with a message that points to "never"', () => {
    assert.throws(
      () => createCache({ ttl: Number.POSITIVE_INFINITY }),
      (error: unknown) =>
        error instanceof InvalidOptionError &&
        error.option === "createCache.ttl" &&
        /"never"/.test(error.message),
    );
  });

  it('accepts "never" only where it means something: not for stale windows', () => {
    assert.throws(
      () => createCache({ staleIfError: "never" }),
      (error: unknown) =>
        error instanceof InvalidOptionError && error.option === "createCache.staleIfError",
    );
  });
});
