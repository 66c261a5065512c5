import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, describe, it } from "node:test";
import { type Cache, type CacheOptions, createCache } from "../src/index.js";
import { keySlot, redisStore } from "../src/stores/redis.js";
import { deferred } from "./helpers/core.js";
import { ChildInstance } from "./helpers/fleet-child.js";
import { waitFor } from "./helpers/ports.js";
import { type RedisCluster, startRedisCluster } from "./helpers/redis-cluster.js";

/**
 * The core's fleet behaviour on a real 3-master Redis Cluster: several cache instances (each
 * with its own store, so its own connections and bus subscriber, as separate processes would
 * have) and real child processes sharing the cluster. Keys are spread over every master, so
 * every feature is exercised across slots: the lease, the bus, tags and namespaces.
 */

let started: Promise<RedisCluster> | undefined;
const cluster = () => {
  started ??= startRedisCluster({ masters: 3 });
  return started;
};
const caches: Cache[] = [];
after(async () => {
  await Promise.all(caches.splice(0).map((c) => c.close()));
  if (started) await (await started).stop();
});

const run = randomUUID().slice(0, 8);

/**
 * A running cache instance on the cluster, closed after the file. It is warmed up, as a
 * long-lived instance is: connected to the cluster (the first connection takes longer than the
 * guard's 50 ms, so the very first calls of a new instance fail open) and its bus up. Its
 * guard timeout is generous: these tests are about what the cluster does, and a store call
 * slowed down by a busy test machine would fail open (a miss, an extra factory call).
 */
async function instance(options: CacheOptions = {}): Promise<Cache> {
  const { url } = await cluster();
  const cache = createCache({
    store: redisStore({ url }),
    l1: true,
    l1MaxTtl: 60_000,
    storeTimeout: 1_000,
    ...options,
  });
  caches.push(cache);
  await cache.get(`warm-up:${run}`);
  await waitFor(
    () => {
      const health = cache.health();
      return (
        health.l2?.connection === "ready" &&
        health.l2.breaker === "closed" &&
        (options.bus === false || health.bus?.state === "up")
      );
    },
    "the instance to be connected, its bus up",
    10_000,
  );
  return cache;
}

/** Tags whose states (`cachet:__cachet:tag:<tag>`) live on three different masters. */
async function spreadTags(prefix: string): Promise<string[]> {
  const c = await cluster();
  const byOwner = new Map<number, string>();
  for (let i = 0; byOwner.size < 3; i++) {
    const tag = `${prefix}-${i}`;
    const owner = (await c.ownerOf(keySlot(`cachet:__cachet:tag:${tag}`))).port;
    if (!byOwner.has(owner)) byOwner.set(owner, tag);
  }
  return [...byOwner.values()];
}

/** Keys whose entries (`cachet:<key>`) land on every master, `perMaster` each. */
async function spreadKeys(prefix: string, perMaster: number): Promise<string[]> {
  const c = await cluster();
  const byOwner = new Map<number, string[]>();
  for (let i = 0; [...byOwner.values()].filter((k) => k.length >= perMaster).length < 3; i++) {
    const key = `${prefix}:${i}`;
    const owner = (await c.ownerOf(keySlot(`cachet:${key}`))).port;
    const keys = byOwner.get(owner) ?? [];
    if (keys.length < perMaster) keys.push(key);
    byOwner.set(owner, keys);
  }
  return [...byOwner.values()].flat();
}

describe("fleet on a cluster: the lease", () => {
  it("concurrent misses of keys on every master, from three instances: one factory call per key", async () => {
    const fleet = await Promise.all([0, 1, 2].map(() => instance({ lease: true })));
    const keys = await spreadKeys(`lease:${run}`, 3);
    const calls = new Map<string, number>();
    const gate = deferred<void>();
    const results = Promise.all(
      fleet.flatMap((cache, i) =>
        keys.flatMap((key) =>
          Array.from({ length: 10 }, () =>
            cache.getOrSet(key, async () => {
              calls.set(key, (calls.get(key) ?? 0) + 1);
              await gate.promise;
              return `${key} by instance ${i}`;
            }),
          ),
        ),
      ),
    );
    // Every key's factory has started somewhere; the other instances are waiting on the lease.
    await waitFor(() => calls.size === keys.length, "a factory call for every key", 10_000);
    gate.resolve();
    const values = await results;
    for (const key of keys) assert.equal(calls.get(key), 1, `factory calls for ${key}`);
    // Every caller of a key got the one value produced for it.
    const byKey = new Map<string, Set<unknown>>();
    values.forEach((value, n) => {
      const key = keys[Math.floor(n / 10) % keys.length]!;
      byKey.set(key, (byKey.get(key) ?? new Set()).add(value));
    });
    for (const [key, seen] of byKey) assert.equal(seen.size, 1, `${key}: ${[...seen].join(", ")}`);
  });
});

describe("fleet on a cluster: the bus", () => {
  it("a write or a delete on one instance drops the other's in-process copy, whatever the key's master", async () => {
    const [a, b] = await Promise.all([instance(), instance()]);
    const keys = await spreadKeys(`bus:${run}`, 2);
    for (const key of keys) {
      await a.set(key, "v1");
      // b holds v1 in its in-process tier (l1MaxTtl is a minute: only the bus can drop it).
      assert.equal(await b.getOrSet(key, () => "unused"), "v1");
    }
    for (const key of keys) await a.set(key, "v2");
    await waitFor(
      async () => (await Promise.all(keys.map((k) => b.get(k)))).every((v) => v === "v2"),
      "b to see every rewrite",
      5_000,
    );
    for (const key of keys) await a.delete(key);
    await waitFor(
      async () => (await Promise.all(keys.map((k) => b.get(k)))).every((v) => v === undefined),
      "b to see every delete",
      5_000,
    );
  });
});

describe("fleet on a cluster: tags and namespaces across slots", () => {
  it("invalidating tags whose states live on different masters expires entries on every master, for every instance", async () => {
    const a = await instance();
    const b = await instance();
    // c has neither a bus nor an in-process tier: it reads every entry from Redis and learns
    // of invalidations by reading the tag states (getMany across slots) once per
    // tagSyncInterval.
    const c = await instance({ bus: false, l1: false, tagSyncInterval: 100 });
    const tags = await spreadTags(`colour:${run}`);
    const keys = await spreadKeys(`tags:${run}`, 2);
    let version = 1;
    const load = (cache: Cache) =>
      Promise.all(keys.map((key) => cache.getOrSet(key, () => `${key}#${version}`, { tags })));
    await load(a);
    for (const cache of [b, c]) {
      assert.deepEqual(
        await load(cache),
        keys.map((k) => `${k}#1`),
        "shared through Redis",
      );
    }
    version = 2;
    await a.invalidateTags([tags[1]!]);
    // a and b (bus) at once, c within its tagSyncInterval: every entry is recomputed.
    assert.deepEqual(
      await load(a),
      keys.map((k) => `${k}#2`),
    );
    await waitFor(
      async () => (await load(b)).every((v, i) => v === `${keys[i]}#2`),
      "b to see the invalidation",
      5_000,
    );
    await waitFor(
      async () => (await load(c)).every((v, i) => v === `${keys[i]}#2`),
      "c to see the invalidation by reading tag states",
      5_000,
    );
  });

  it("clearing a namespace expires its entries on every master, for every instance, and nothing else", async () => {
    const a = await instance();
    const b = await instance();
    const keys = await spreadKeys(`ns:${run}`, 2);
    const nsA = a.namespace(`users-${run}`);
    const nsB = b.namespace(`users-${run}`);
    let version = 1;
    for (const key of keys) {
      await nsA.getOrSet(key, () => `${key}#${version}`);
      await a.getOrSet(`root:${key}`, () => `root ${key}`);
      assert.equal(await nsB.getOrSet(key, () => "unused"), `${key}#1`);
    }
    version = 2;
    await nsA.clear();
    await waitFor(
      async () => {
        for (const key of keys)
          if ((await nsB.getOrSet(key, () => `${key}#${version}`)) !== `${key}#2`) return false;
        return true;
      },
      "b to see the namespace cleared",
      5_000,
    );
    for (const key of keys) {
      assert.equal(
        await b.getOrSet(`root:${key}`, () => "recomputed"),
        `root ${key}`,
        "a root key survived",
      );
    }
  });
});

describe("fleet on a cluster: separate processes", () => {
  it("three processes: one factory call per key for concurrent misses, and writes reach the others' in-process tiers", async () => {
    const { url } = await cluster();
    const children = [0, 1, 2].map(() => new ChildInstance(url));
    try {
      // Warm up: each child connects and starts its bus.
      for (const child of children) await child.send({ op: "get", key: `warm:${run}` });
      await waitFor(
        async () =>
          (
            await Promise.all(
              children.map((c) => c.send<{ bus: string; connection: string }>({ op: "health" })),
            )
          ).every((h) => h.bus === "up" && h.connection === "ready"),
        "every child to be connected, its bus up",
        10_000,
      );
      const keys = await spreadKeys(`procs:${run}`, 2);
      const answers = await Promise.all(
        children.map((c) =>
          c.send<{ values: string[]; factoryCalls: number; outcomes: object }>({
            op: "getOrSet",
            keys,
            concurrency: 10,
            factoryMs: 300,
          }),
        ),
      );
      const total = answers.reduce((sum, a) => sum + a.factoryCalls, 0);
      assert.equal(
        total,
        keys.length,
        `factory calls across the three processes (leases: ${JSON.stringify(answers.map((a) => a.outcomes))})`,
      );
      keys.forEach((key, k) => {
        const seen = new Set(answers.flatMap((a) => a.values.slice(k * 10, k * 10 + 10)));
        assert.equal(
          seen.size,
          1,
          `${key}: every process got the one value (${[...seen].join(", ")})`,
        );
      });
      // The bus across processes: the others hold the key in their in-process tier; one
      // process rewrites it; the others see the new value.
      for (const key of keys) {
        await children[0]!.send({ op: "set", key, value: `${key}=rewritten` });
      }
      // The rewrites are in Redis (read by an instance without an in-process tier)…
      const reader = await instance({ l1: false, bus: false });
      for (const key of keys) assert.equal(await reader.get(key), `${key}=rewritten`, key);
      // …and the other processes, which held the old values in process, see them.
      for (const [i, child] of children.entries()) {
        if (i === 0) continue;
        let seen: unknown[] = [];
        await waitFor(
          async () => {
            seen = [];
            for (const key of keys)
              seen.push((await child.send<{ value: string }>({ op: "get", key })).value);
            return seen.every((value, k) => value === `${keys[k]}=rewritten`);
          },
          "the other processes to see the rewrite",
          5_000,
        ).catch(async (error: Error) => {
          const health = await child.send({ op: "health" });
          throw new Error(
            `child ${i}: ${error.message}; it reads ${JSON.stringify(seen)}; health ${JSON.stringify(health)}`,
          );
        });
      }
      await Promise.all(children.map((c) => c.send({ op: "close" })));
    } finally {
      for (const child of children) child.kill();
    }
  });
});
