import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, describe, it } from "node:test";
import { leaseStoreKey } from "../src/engine/coordinator.js";
import { type Cache, createCache } from "../src/index.js";
import { newLeaseToken } from "../src/lease.js";
import { redisStore } from "../src/stores/redis.js";
import { deferred, manualClock } from "./helpers/core.js";
import { redisCli } from "./helpers/fleet.js";
import { ChildInstance } from "./helpers/fleet-child.js";
import { waitFor } from "./helpers/ports.js";
import { type RedisServer, startRedis } from "./helpers/redis.js";
import { type RedisCluster, startRedisCluster } from "./helpers/redis-cluster.js";

/**
 * The fleet-wide lease when its holder dies, when a slow factory outlives the lease's ttl, and
 * when the lease key holds something that is not a live lease: separate processes (and
 * in-process caches) on a real Redis, standalone and Cluster (issue 13, item 3).
 */

const run = randomUUID().slice(0, 8);
/** The origin's latency in the holder-death tests. */
const ORIGIN_MS = 3_000;

let redis: Promise<RedisServer> | undefined;
let cluster: Promise<RedisCluster> | undefined;
const children: ChildInstance[] = [];
const caches: Cache[] = [];
after(async () => {
  for (const child of children.splice(0)) child.kill();
  await Promise.all(caches.splice(0).map((c) => c.close()));
  if (redis) await (await redis).stop();
  if (cluster) await (await cluster).stop();
});
const standaloneUrl = async () => {
  redis ??= startRedis();
  return (await redis).url;
};
const clusterUrl = async () => {
  cluster ??= startRedisCluster({ masters: 3 });
  return (await cluster).url;
};

interface Answer {
  values: string[];
  factoryCalls: number;
  outcomes: Record<string, number>;
}

/** Two children on `url`, connected (a first call made), with the given `lease` option. */
async function pair(url: string, lease?: object): Promise<[ChildInstance, ChildInstance]> {
  const a = new ChildInstance(url, lease);
  const b = new ChildInstance(url, lease);
  children.push(a, b);
  await Promise.all([a, b].map((c) => c.send({ op: "get", key: `warm:${run}` })));
  return [a, b];
}

/** Resolves once the lease for `key` is held in the store at `url`. */
async function leaseHeld(url: string, key: string): Promise<void> {
  const store = redisStore({ url });
  try {
    await waitFor(
      async () => (await store.get(leaseStoreKey(key))) !== undefined,
      `the lease of ${key} to be taken`,
      10_000,
    );
  } finally {
    await store.disconnect();
  }
}

async function holderDies(url: string, key: string) {
  const [holder, other] = await pair(url);
  const dead = holder.send({ op: "getOrSet", keys: [key], factoryMs: ORIGIN_MS }).catch(() => {});
  await leaseHeld(url, key);
  const asked = other.send<Answer>({ op: "getOrSet", keys: [key], factoryMs: ORIGIN_MS }, 30_000);
  // Mid-fill: the holder's origin call has started and not answered.
  holder.kill();
  const killedAt = performance.now();
  const answer = await asked;
  const ms = performance.now() - killedAt;
  void dead;
  assert.equal(answer.values[0], `${key}@${other.pid}`, "the survivor ran the factory itself");
  assert.equal(answer.factoryCalls, 1);
  assert.ok(
    ms < ORIGIN_MS + 1_500,
    `answered ${Math.round(ms)} ms after the holder's death (bound ${ORIGIN_MS + 1_500} ms): ${JSON.stringify(answer.outcomes)}`,
  );
  return ms;
}

async function slowFactoryKeepsLease(url: string, key: string) {
  // A lease of 300 ms and a factory of 1.5 s: only the holder's heartbeat keeps it.
  const [a, b] = await pair(url, { ttl: 300, wait: "10s" });
  const answers = await Promise.all([
    a.send<Answer>({ op: "getOrSet", keys: [key], concurrency: 10, factoryMs: 1_500 }),
    (async () => {
      await leaseHeld(url, key);
      return b.send<Answer>({ op: "getOrSet", keys: [key], concurrency: 10, factoryMs: 1_500 });
    })(),
  ]);
  const calls = answers.reduce((sum, x) => sum + x.factoryCalls, 0);
  assert.equal(calls, 1, `factory calls across the two processes: ${JSON.stringify(answers)}`);
  assert.deepEqual(new Set(answers.flatMap((x) => x.values)), new Set([`${key}@${a.pid}`]));
}

describe("lease holder death and heartbeat, separate processes", () => {
  it("standalone Redis: the holder is SIGKILLed mid-fill; the other answers within the origin's latency + 1.5 s", async () => {
    const ms = await holderDies(await standaloneUrl(), `dies:${run}`);
    console.log(`# standalone: answered ${Math.round(ms)} ms after the holder's SIGKILL`);
  });

  it("Redis Cluster: the holder is SIGKILLed mid-fill; the other answers within the origin's latency + 1.5 s", async () => {
    const ms = await holderDies(await clusterUrl(), `dies:cluster:${run}`);
    console.log(`# cluster: answered ${Math.round(ms)} ms after the holder's SIGKILL`);
  });

  it("standalone Redis: the heartbeat keeps a slow factory's lease past lease.ttl (one origin call for 20 callers in 2 processes)", async () => {
    await slowFactoryKeepsLease(await standaloneUrl(), `slow:${run}`);
  });

  it("Redis Cluster: the heartbeat keeps a slow factory's lease past lease.ttl (one origin call)", async () => {
    await slowFactoryKeepsLease(await clusterUrl(), `slow:cluster:${run}`);
  });
});

describe("lease key holding something that is not a live lease", () => {
  async function instance(url: string): Promise<Cache> {
    const cache = createCache({
      store: redisStore({ url }),
      lease: { wait: "10s" },
      storeTimeout: 1_000,
    });
    caches.push(cache);
    await cache.get(`warm:${run}`);
    return cache;
  }

  for (const [what, value] of [
    ["a foreign value without a TTL", () => "not-a-lease"],
    ["a well-formed lease without a TTL", () => newLeaseToken().toString("latin1")],
  ] as const) {
    it(`${what} is replaced at once, not waited on`, async () => {
      const url = await standaloneUrl();
      const server = await redis!;
      const key = `foreign:${what.length}:${run}`;
      // Written as something else would: no expiry.
      await redisCli(server.port, "SET", `cachet:${leaseStoreKey(key)}`, value());
      assert.equal(await redisCli(server.port, "PTTL", `cachet:${leaseStoreKey(key)}`), "-1");
      const cache = await instance(url);
      const began = performance.now();
      const got = await cache.getOrSet(key, async () => "fresh");
      const ms = performance.now() - began;
      assert.equal(got, "fresh");
      assert.ok(ms < 2_000, `answered after ${Math.round(ms)} ms (lease.wait is 10 s)`);
      // The lease was released after the write: nothing is left under the lease key.
      await waitFor(
        async () => (await redisCli(server.port, "EXISTS", `cachet:${leaseStoreKey(key)}`)) === "0",
        "the lease key to be released",
        2_000,
      );
    });
  }

  it("a waiter holding a stale value serves it instead of waiting for the holder", async () => {
    const url = await standaloneUrl();
    const clock = manualClock();
    const options = {
      lease: { wait: "10s" },
      storeTimeout: 1_000,
      clock,
      ttl: "1m",
      staleIfError: "10m",
    } as const;
    const a = createCache({ store: redisStore({ url }), ...options });
    const b = createCache({ store: redisStore({ url }), ...options });
    caches.push(a, b);
    const key = `stale:${run}`;
    await a.set(key, "old");
    clock.advance(61_000); // past fresh, within staleIfError
    const slow = deferred<string>();
    const holding = a.getOrSet(key, () => slow.promise);
    await leaseHeld(url, key);
    let called = false;
    const began = performance.now();
    const answer = await Promise.race([
      b.getOrSet(key, async () => {
        called = true;
        return "b";
      }),
      new Promise((resolve) => setTimeout(resolve, 2_000, "still waiting")),
    ]);
    const ms = performance.now() - began;
    slow.resolve("new");
    assert.equal(await holding, "new");
    assert.equal(answer, "old", "the waiter served its stale value");
    assert.equal(called, false, "the waiter did not call the origin");
    assert.ok(ms < 1_000, `answered after ${Math.round(ms)} ms`);
  });
});
