import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { type Cache, type CacheOptions, createCache, memoryStore } from "../src/index.js";
import { keySlot, redisStore } from "../src/stores/redis.js";
import { manualClock } from "./helpers/core.js";
import { waitFor } from "./helpers/ports.js";
import { type RedisServer, startRedis } from "./helpers/redis.js";
import { type RedisCluster, startRedisCluster } from "./helpers/redis-cluster.js";
import { command } from "./helpers/redis-process.js";

/**
 * The batch API (getMany / setMany / deleteMany) and ttl() on real servers: one round trip on
 * Redis (commands counted by the server's INFO commandstats), one per hash slot on a real
 * Cluster, tiers and backfill, namespaces, the bus across two caches, a Redis that is down.
 */

const run = randomUUID().slice(0, 8);
let redis: RedisServer;
let cluster: RedisCluster | undefined;
const caches: Cache[] = [];

before(async () => {
  redis = await startRedis();
});
after(async () => {
  await Promise.all(caches.splice(0).map((c) => c.close()));
  await redis.stop();
  await cluster?.stop();
});

/** A connected cache on the standalone server (bus up when it has one). */
async function instance(options: CacheOptions = {}): Promise<Cache> {
  const cache = createCache({
    store: redisStore({ url: redis.url }),
    storeTimeout: 1_000,
    ...options,
  });
  caches.push(cache);
  await cache.get(`warm-up:${run}`);
  await waitFor(
    () => {
      const health = cache.health();
      return (
        health.l2?.connection === "ready" && (options.bus === false || health.bus?.state === "up")
      );
    },
    "the cache to be connected",
    10_000,
  );
  return cache;
}

/** Calls per command since the last reset, from `INFO commandstats` (`cmdstat_mget` → `mget`). */
async function commandCalls(port: number): Promise<Map<string, number>> {
  const info = String(await command(port, "INFO", "commandstats"));
  const calls = new Map<string, number>();
  for (const [, name, n] of info.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) {
    calls.set(name!, Number(n));
  }
  calls.delete("info");
  calls.delete("hello");
  calls.delete("config|resetstat");
  return calls;
}

const resetStats = (port: number) => command(port, "CONFIG", "RESETSTAT");

describe("batch API on a real Redis", () => {
  it("getMany, setMany and deleteMany are one command each, values and misses aligned", async () => {
    // Tag states (every entry carries the root namespace's tag) are read once below, not per
    // read: without a bus they are re-read each tagSyncInterval, one MGET more when due.
    const cache = await instance({ bus: false, tagSyncInterval: "1h" });
    const keys = Array.from({ length: 10 }, (_, i) => `one-trip:${run}:${i}`);
    // The first setMany on a server sends the script whole (EVAL), which loads it.
    await cache.setMany([
      { key: `one-trip:${run}:load`, value: 0 },
      { key: `one-trip:${run}:load2`, value: 0 },
    ]);
    await resetStats(redis.port);
    await cache.setMany(keys.map((key, i) => ({ key, value: { i }, ttl: "1m" })));
    // One command from the client; the server counts the SETs the script ran too.
    assert.deepEqual(Object.fromEntries(await commandCalls(redis.port)), { evalsha: 1, set: 10 });

    await cache.getMany([`one-trip:${run}:load2`]); // learns the tag states
    await resetStats(redis.port);
    const got = await cache.getMany<{ i: number }>([...keys, `one-trip:${run}:missing`]);
    assert.deepEqual(
      got,
      [...keys.map((_, i) => ({ i })), undefined],
      "values in the order of the keys",
    );
    assert.deepEqual(Object.fromEntries(await commandCalls(redis.port)), { mget: 1 });

    await resetStats(redis.port);
    assert.equal(await cache.deleteMany(keys.slice(0, 5)), true);
    assert.deepEqual(Object.fromEntries(await commandCalls(redis.port)), { del: 1 });
    const after = await cache.getMany(keys);
    assert.deepEqual(
      after.map((v) => v !== undefined),
      keys.map((_, i) => i >= 5),
    );
  });

  it("setMany honours each entry's ttl and tags", async () => {
    const cache = await instance({ bus: false });
    const [a, b] = [`opts:${run}:a`, `opts:${run}:b`];
    await cache.setMany([
      { key: a, value: "a", ttl: "10s", tags: [`t-${run}`] },
      { key: b, value: "b", ttl: "1h" },
    ]);
    const pttlA = Number(await command(redis.port, "PTTL", `cachet:${a}`));
    const pttlB = Number(await command(redis.port, "PTTL", `cachet:${b}`));
    assert.ok(pttlA > 0 && pttlA <= 10_000, `a's PTTL ${pttlA}`);
    assert.ok(pttlB > 3_500_000, `b's PTTL ${pttlB}`);
    await cache.invalidateTags([`t-${run}`]);
    assert.deepEqual(await cache.getMany([a, b]), [undefined, "b"]);
  });

  it("tiers: L1 hits first, one L2 batch for the rest, backfilled into L1", async () => {
    const writer = await instance({ bus: false });
    const reader = await instance({
      bus: false,
      l1: true,
      l1MaxTtl: 60_000,
      tagSyncInterval: "1h",
    });
    const keys = Array.from({ length: 6 }, (_, i) => `tiers:${run}:${i}`);
    await writer.setMany(keys.map((key) => ({ key, value: key })));
    // The reader learns the tag states once (a read of its own), not counted below.
    await writer.set(`tiers:${run}:other`, 0);
    await reader.getMany([`tiers:${run}:other`]);
    await reader.set(keys[0]!, "from L1"); // in the reader's L1 (and L2)
    await resetStats(redis.port);
    const tiers: string[] = [];
    reader.on("hit", ({ tier }) => tiers.push(tier));
    assert.deepEqual(await reader.getMany(keys), ["from L1", ...keys.slice(1)]);
    assert.deepEqual(tiers, ["l1", "l2", "l2", "l2", "l2", "l2"]);
    assert.deepEqual(Object.fromEntries(await commandCalls(redis.port)), { mget: 1 });
    // Backfilled: a second read touches no server.
    await resetStats(redis.port);
    assert.deepEqual(await reader.getMany(keys), ["from L1", ...keys.slice(1)]);
    assert.deepEqual(Object.fromEntries(await commandCalls(redis.port)), {});
  });

  it("namespaces: a namespace's batch stays in the namespace", async () => {
    const cache = await instance({ bus: false });
    const users = cache.namespace("users");
    await users.setMany([
      { key: "1", value: "alice" },
      { key: "2", value: "bob" },
    ]);
    await cache.setMany([{ key: "1", value: "root one" }]);
    assert.deepEqual(await users.getMany(["1", "2", "3"]), ["alice", "bob", undefined]);
    assert.deepEqual(await cache.getMany(["1", "2"]), ["root one", undefined]);
    await users.deleteMany(["1", "2"]);
    assert.deepEqual(await users.getMany(["1", "2"]), [undefined, undefined]);
    assert.equal(await cache.get("1"), "root one");
  });

  it("deleteMany drops other instances' L1 copies, announced in one bus message", async () => {
    const options = { l1: true, l1MaxTtl: 60_000 } as const;
    const a = await instance(options);
    const b = await instance(options);
    const keys = Array.from({ length: 5 }, (_, i) => `bus:${run}:${i}`);
    await a.setMany(keys.map((key) => ({ key, value: 1 })));
    assert.deepEqual(await b.getMany(keys), [1, 1, 1, 1, 1]); // now in b's L1
    await resetStats(redis.port);
    await a.deleteMany(keys);
    await waitFor(
      async () => (await b.getMany(keys)).every((v) => v === undefined),
      "b to drop its L1 copies",
      5_000,
    );
    const calls = await commandCalls(redis.port);
    assert.equal(calls.get("del"), 1);
    assert.equal(calls.get("publish"), 1, "one bus message for the batch");
  });

  it("ttl: the remaining fresh life on Redis, and how long it can still be served stale", async () => {
    const cache = await instance({ bus: false });
    const key = `ttl:${run}`;
    assert.equal(await cache.ttl(key), undefined);
    await cache.set(key, "v", { ttl: "10s", staleWhileRevalidate: "20s" });
    const fresh = await cache.ttl(key);
    const servable = await cache.ttl(key, { stale: true });
    assert.ok(fresh !== undefined && fresh > 9_000 && fresh <= 10_000, `fresh ${fresh}`);
    assert.ok(
      servable !== undefined && servable > 29_000 && servable <= 30_000,
      `servable ${servable}`,
    );
  });
});

describe("ttl with an injected clock (memory)", () => {
  it("counts down the fresh life, then the stale window, then undefined", async () => {
    const clock = manualClock();
    const cache = createCache({ store: memoryStore({ clock }), clock });
    await cache.set("k", "v", { ttl: "10s", staleWhileRevalidate: "5s" });
    assert.equal(await cache.ttl("k"), 10_000);
    assert.equal(await cache.ttl("k", { stale: true }), 15_000);
    clock.advance(3_000);
    assert.equal(await cache.ttl("k"), 7_000);
    clock.advance(8_000);
    assert.equal(await cache.ttl("k"), undefined, "stale: no fresh life left");
    assert.equal(await cache.ttl("k", { stale: true }), 4_000);
    clock.advance(4_000);
    assert.equal(await cache.ttl("k", { stale: true }), undefined);
    assert.equal(await cache.ttl("absent"), undefined);
    await cache.close();
  });
});

describe("batch API with Redis down", () => {
  it("misses and no-ops, fast", async () => {
    const down = await startRedis();
    const cache = createCache({ store: redisStore({ url: down.url }), l1: true, bus: false });
    caches.push(cache);
    await down.kill();
    const keys = Array.from({ length: 20 }, (_, i) => `down:${i}`);
    const began = performance.now();
    await cache.setMany(keys.map((key) => ({ key, value: key })));
    // L1 still answers what this instance wrote.
    assert.deepEqual(await cache.getMany(keys), keys);
    assert.equal(await cache.deleteMany(keys), false);
    assert.deepEqual(
      await cache.getMany(keys),
      keys.map(() => undefined),
    );
    const elapsed = performance.now() - began;
    assert.ok(elapsed < 500, `took ${elapsed.toFixed(0)} ms`);
  });
});

describe("batch API on a real Redis Cluster", () => {
  it("one command per hash slot for getMany, setMany and deleteMany", async () => {
    cluster = await startRedisCluster({ masters: 3 });
    const cache = createCache({
      store: redisStore({ url: cluster.url }),
      storeTimeout: 1_000,
      bus: false,
    });
    caches.push(cache);
    await cache.get(`warm-up:${run}`);
    await waitFor(() => cache.health().l2?.connection === "ready", "connected", 10_000);
    // 12 slots (hash tags), two keys each, over the three masters.
    const keys = Array.from({ length: 24 }, (_, i) => `{slot:${run}:${i >> 1}}:${i & 1}`);
    const slots = new Set(keys.map((key) => keySlot(`cachet:${key}`)));
    assert.equal(slots.size, 12);
    const total = async (name: string) => {
      let sum = 0;
      for (const { node } of await cluster!.masters()) {
        sum += (await commandCalls(node.port)).get(name) ?? 0;
      }
      return sum;
    };
    const reset = async () => {
      for (const { node } of await cluster!.masters()) await resetStats(node.port);
    };
    // Load the script on every master first (sent whole, EVAL, the first time).
    await cache.setMany(keys.map((key) => ({ key, value: 0 })));
    await reset();
    await cache.setMany(keys.map((key) => ({ key, value: key })));
    assert.equal(await total("evalsha"), 12, "one script call per slot");
    assert.equal(await total("eval"), 0);
    assert.equal(await total("set"), 24, "the SETs the scripts ran");
    await reset();
    assert.deepEqual(await cache.getMany(keys), keys);
    assert.equal(await total("mget"), 12, "one MGET per slot");
    await reset();
    assert.equal(await cache.deleteMany(keys), true);
    assert.equal(await total("del"), 12, "one DEL per slot");
    assert.deepEqual(
      await cache.getMany(keys),
      keys.map(() => undefined),
    );
  });
});
