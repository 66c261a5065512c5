/**
 * Invalidation by versioning on a real Redis, counted with the server's own INFO
 * commandstats: a tag carried by 10,000 entries is invalidated in one write, after which every
 * one of them misses (in the instance that invalidated, and in another that reads Redis only,
 * told by the bus);
 * a namespace is cleared in one write, leaving other namespaces intact, and nothing ever walks
 * or wipes the keyspace (no KEYS, SCAN, FLUSHALL, FLUSHDB, RANDOMKEY).
 */
import assert from "node:assert/strict";
import { after, before, beforeEach, describe, it } from "node:test";
import { type Cache, createCache } from "../../src/index.js";
import { redisStore } from "../../src/stores/redis.js";
import { commandStats, KEYSPACE_COMMANDS, redisCli, statsDelta } from "../helpers/fleet.js";
import { waitFor } from "../helpers/ports.js";
import { type RedisServer, startRedis } from "../helpers/redis.js";

/** Commands that change the keyspace (what an invalidation may cost). */
const WRITES = new Set([
  "set",
  "setex",
  "psetex",
  "mset",
  "del",
  "unlink",
  "expire",
  "pexpire",
  "hset",
  "incr",
  "incrby",
  "eval",
  "evalsha",
  "flushall",
  "flushdb",
]);

function writes(delta: Record<string, number>): Record<string, number> {
  return Object.fromEntries(Object.entries(delta).filter(([name]) => WRITES.has(name)));
}

/** Run `task` for every item, `width` at a time. */
async function inBatches<T, R>(items: readonly T[], width: number, task: (item: T) => Promise<R>) {
  const out: R[] = [];
  for (let i = 0; i < items.length; i += width) {
    out.push(...(await Promise.all(items.slice(i, i + width).map(task))));
  }
  return out;
}

describe("invalidation on a real Redis", { timeout: 90_000 }, () => {
  let redis: RedisServer;
  /** The instance that writes and invalidates: memory in front of Redis. */
  let a: Cache;
  /** Another instance reading Redis only (every read goes to the server). */
  let c: Cache;
  let start: Map<string, number>;

  before(async () => {
    redis = await startRedis();
    // Writing 10,000 entries keeps this process busy: a generous store timeout keeps a reply
    // that waits behind that work from counting as a failure (this is not a timeout test).
    const options = { ttl: "10m", storeTimeout: "5s" } as const;
    a = createCache({ store: redisStore({ url: redis.url }), l1: true, ...options });
    c = createCache({ store: redisStore({ url: redis.url }), ...options });
    start = await commandStats(redis.port);
  });
  after(async () => {
    await a?.close();
    await c?.close();
    await redis?.stop();
  });
  beforeEach(async () => {
    // A clean server for each test (the test's own FLUSHALL, before the counting starts).
    await redisCli(redis.port, "FLUSHALL");
  });

  it("a tag carried by 10,000 entries is invalidated in one write; every one of them then misses", async () => {
    const keys = Array.from({ length: 10_000 }, (_, i) => `product:${i}`);
    const others = Array.from({ length: 100 }, (_, i) => `review:${i}`);
    await inBatches(keys, 1_000, (key) => a.set(key, { key }, { tags: ["catalog"] }));
    await inBatches(others, 100, (key) => a.set(key, { key }, { tags: ["reviews"] }));
    assert.equal(Number(await redisCli(redis.port, "DBSIZE")), 10_100);
    // Both instances see them before (all are in Redis; a sample is read back).
    const sample = keys.filter((_, i) => i % 100 === 0);
    assert.ok((await Promise.all(sample.map((key) => a.has(key)))).every(Boolean));
    assert.ok((await Promise.all(sample.map((key) => c.has(key)))).every(Boolean));

    const before = await commandStats(redis.port);
    await a.invalidateTags(["catalog"]);
    // The bus announces it on the next tick.
    await new Promise((resolve) => setImmediate(resolve));
    await waitFor(
      async () =>
        ((await commandStats(redis.port)).get("publish") ?? 0) > (before.get("publish") ?? 0),
      "the invalidation to be announced",
    );
    const delta = statsDelta(before, await commandStats(redis.port));
    assert.deepEqual(
      writes(delta),
      { set: 1 },
      `one write for 10,000 entries: ${JSON.stringify(delta)}`,
    );
    assert.equal(delta.publish, 1, "one bus message");
    assert.equal(
      await redisCli(redis.port, "GET", "cachet:__cachet:tag:catalog").then((v) => v !== ""),
      true,
      "the write is the tag's state",
    );

    const inA = await inBatches(keys, 1_000, (key) => a.get(key));
    assert.equal(
      inA.filter((v) => v !== undefined).length,
      0,
      "all miss in the instance that invalidated",
    );
    // The other instance learns the tag's new state from the bus (or from Redis, at most
    // tagSyncInterval after it last read it).
    await waitFor(async () => (await c.get(keys[0]!)) === undefined, "the other instance to know");
    const inC = await inBatches(keys, 1_000, (key) => c.get(key));
    assert.equal(inC.filter((v) => v !== undefined).length, 0, "all miss in another instance");
    // Entries without the tag are untouched.
    assert.deepEqual(await a.get("review:7"), { key: "review:7" });
    assert.deepEqual(await c.get("review:7"), { key: "review:7" });
    // A value written after the invalidation is fresh again.
    await a.set("product:1", { key: "product:1", v: 2 }, { tags: ["catalog"] });
    assert.deepEqual(await c.get("product:1"), { key: "product:1", v: 2 });
  });

  it("soft invalidation: the tagged entries become stale (served within grace when the factory fails), in one write", async () => {
    await a.set("price:1", 10, { tags: ["prices"], staleIfError: "1m" });
    const before = await commandStats(redis.port);
    await a.invalidateTags(["prices"], { soft: true });
    const delta = statsDelta(before, await commandStats(redis.port));
    assert.deepEqual(writes(delta), { set: 1 });
    assert.equal(await a.get("price:1"), undefined, "no longer fresh");
    const value = await c.getOrSet(
      "price:1",
      () => {
        throw new Error("origin down");
      },
      { staleIfError: "1m", graceBackoff: 0 },
    );
    assert.equal(value, 10, "the stale value, within grace");
    assert.equal(await c.getOrSet("price:1", () => 11), 11, "a working factory refreshes it");
  });

  it("a namespace clear leaves other namespaces intact, in one write, with no keyspace scan", async () => {
    const users = a.namespace("users");
    const posts = a.namespace("posts");
    const ids = Array.from({ length: 1_000 }, (_, i) => String(i));
    await inBatches(ids, 500, (id) => users.set(id, { user: id }));
    await inBatches(ids, 500, (id) => posts.set(id, { post: id }));
    await a.set("root", "kept");

    const before = await commandStats(redis.port);
    await users.clear();
    const delta = statsDelta(before, await commandStats(redis.port));
    assert.deepEqual(writes(delta), { set: 1 }, JSON.stringify(delta));

    const cUsers = c.namespace("users");
    const cPosts = c.namespace("posts");
    for (const [cache, label] of [
      [users, "A"],
      [cUsers, "another instance"],
    ] as const) {
      const found = await inBatches(ids, 500, (id) => cache.get(id));
      assert.equal(found.filter((v) => v !== undefined).length, 0, `users cleared (${label})`);
    }
    for (const [cache, label] of [
      [posts, "A"],
      [cPosts, "another instance"],
    ] as const) {
      const found = await inBatches(ids, 500, (id) => cache.get(id));
      assert.equal(found.filter((v) => v !== undefined).length, 1_000, `posts intact (${label})`);
    }
    assert.equal(await c.get("root"), "kept");
    assert.equal(Number(await redisCli(redis.port, "DBSIZE")) >= 2_001, true, "nothing deleted");
  });

  it("no command walked or wiped the keyspace in any of this (INFO commandstats)", async () => {
    const delta = statsDelta(start, await commandStats(redis.port));
    // FLUSHALL is this test file's own, between tests (once per test, this one included).
    const expectedFlushes = 4;
    assert.equal(delta.flushall ?? 0, expectedFlushes, "only the test's own FLUSHALL");
    for (const command of KEYSPACE_COMMANDS) {
      if (command === "flushall") continue;
      assert.equal(delta[command] ?? 0, 0, `${command} was called`);
    }
  });
});
