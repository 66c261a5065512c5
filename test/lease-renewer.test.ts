import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, describe, it, type TestContext } from "node:test";
import { createClient } from "redis";
import { type Cache, createCache, type Store, type StoreEntry } from "../src/index.js";
import { newLeaseToken } from "../src/lease.js";
import { keySlot, type RedisStore, redisStore } from "../src/stores/redis.js";
import { type Deferred, deferred } from "./helpers/core.js";
import { type RedisServer, startRedis } from "./helpers/redis.js";
import { type RedisCluster, startRedisCluster } from "./helpers/redis-cluster.js";

/**
 * The lease renewer (src/engine/lease-renewer.ts) on real Redis servers: every lease a cache
 * holds is renewed with one store call per beat, whatever the number of leases; a lease found
 * taken is dropped from the beats; a store without the batch method is renewed per key, a
 * bounded number at a time. Beats run on node's mock timers (only `setTimeout` is mocked:
 * store I/O is real).
 */

let server: Promise<RedisServer> | undefined;
const redis = () => {
  server ??= startRedis();
  return server;
};
let clusterStarted: Promise<RedisCluster> | undefined;
after(async () => {
  if (server) await (await server).stop();
  if (clusterStarted) await (await clusterStarted).stop();
});

/** Lease life in the tests: beats every 100 ms. */
const LIFE = 300;
const BEAT = LIFE / 3;

/** What the wrapped store saw of the renewals. */
interface Renewals {
  /** Keys of each `extendManyIfEquals` call, in call order. */
  readonly batches: string[][];
  /** Answers of each settled `extendManyIfEquals` call. */
  readonly answers: boolean[][];
  /** `extendIfEquals` calls made, settled, and the most in flight at once. */
  singles: number;
  singlesSettled: number;
  maxInFlight: number;
  /** Make the next `extendManyIfEquals` call reject (a store that could not answer). */
  failNext: boolean;
}

/**
 * `inner` with its lease operations counted; without `extendManyIfEquals` when `batch` is
 * false (a store that renews one key at a time).
 */
function counted(inner: RedisStore, batch: boolean): { store: Store; renewals: Renewals } {
  const renewals: Renewals = {
    batches: [],
    answers: [],
    singles: 0,
    singlesSettled: 0,
    maxInFlight: 0,
    failNext: false,
  };
  let inFlight = 0;
  const store: Store = {
    name: inner.name,
    get: (key) => inner.get(key),
    set: (key, value, ttlMs) => inner.set(key, value, ttlMs),
    delete: (key) => inner.delete(key),
    setIfAbsent: (key, value, ttlMs) => inner.setIfAbsent(key, value, ttlMs),
    deleteIfEquals: (key, value) => inner.deleteIfEquals(key, value),
    takeLease: (key, value, ttlMs) => inner.takeLease(key, value, ttlMs),
    extendIfEquals: async (key, value, ttlMs) => {
      renewals.singles++;
      renewals.maxInFlight = Math.max(renewals.maxInFlight, ++inFlight);
      try {
        return await inner.extendIfEquals(key, value, ttlMs);
      } finally {
        inFlight--;
        renewals.singlesSettled++;
      }
    },
    disconnect: () => inner.disconnect(),
  };
  if (batch) {
    store.extendManyIfEquals = async (entries: readonly StoreEntry[]) => {
      renewals.batches.push(entries.map((e) => e.key));
      if (renewals.failNext) {
        renewals.failNext = false;
        renewals.answers.push([]);
        throw new Error("injected: the store could not answer");
      }
      const answers = await inner.extendManyIfEquals(entries);
      renewals.answers.push(answers);
      return answers;
    };
  }
  return { store, renewals };
}

/** Yield to I/O until `done()` (real store replies arrive meanwhile), for at most 5 s. */
async function until(done: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 5_000;
  while (!done()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((resolve) => setImmediate(resolve));
  }
  // Let the renewer take the answer in (the guard resolves its caller in a later microtask).
  for (let i = 0; i < 10; i++) await new Promise((resolve) => setImmediate(resolve));
}

/**
 * A cache on `store` with `n` factories running, each holding its lease until `gate` resolves.
 * Mock timers are on once the leases are held.
 */
async function holding(
  t: TestContext,
  store: Store,
  n: number,
  names: (i: number) => string = (i) => `held:${randomUUID()}:${i}`,
): Promise<{ cache: Cache; gate: Deferred<void>; results: Promise<unknown>; keys: string[] }> {
  const cache = createCache({ store, lease: { ttl: LIFE }, l1: false, bus: false });
  t.after(() => cache.close());
  await cache.get("warm-up"); // connects
  t.mock.timers.enable({ apis: ["setTimeout"] });
  const gate = deferred<void>();
  let started = 0;
  const keys = Array.from({ length: n }, (_, i) => names(i));
  const results = Promise.all(
    keys.map((key) =>
      cache.getOrSet(key, async () => {
        started++;
        await gate.promise;
        return key;
      }),
    ),
  );
  await until(() => started === n, `${n} factories to start`);
  return { cache, gate, results, keys };
}

describe("lease renewer: one store call per beat", () => {
  it("renews 200 held leases with one extendManyIfEquals per beat, and stops when the factories settle", async (t) => {
    const { url } = await redis();
    const { store, renewals } = counted(redisStore({ url }), true);
    const { gate, results, keys } = await holding(t, store, 200);
    assert.equal(renewals.batches.length, 0, "no renewal before the first beat");
    for (let beat = 1; beat <= 3; beat++) {
      t.mock.timers.tick(BEAT);
      await until(() => renewals.answers.length === beat, `beat ${beat}`);
      assert.equal(renewals.batches.length, beat, "one store call per beat");
      assert.equal(renewals.batches[beat - 1]!.length, 200, "every held lease in it");
      assert.ok(renewals.answers[beat - 1]!.every(Boolean), "every lease renewed");
    }
    assert.equal(renewals.singles, 0, "no per-key renewal");
    assert.equal(new Set(renewals.batches[0]).size, 200, "200 distinct leases");
    gate.resolve();
    assert.deepEqual(await results, keys);
    t.mock.timers.tick(BEAT * 3);
    await until(() => true, "a beat that should not happen");
    assert.equal(renewals.batches.length, 3, "no beat once no lease is held");
  });

  it("a lease found taken by another instance is no longer renewed, and the new owner's lease is left alone", async (t) => {
    const { url } = await redis();
    const raw = createClient({ url });
    await raw.connect();
    t.after(() => raw.close());
    const { store, renewals } = counted(redisStore({ url, prefix: "" }), true);
    const { gate, results } = await holding(t, store, 3);
    t.mock.timers.tick(BEAT);
    await until(() => renewals.answers.length === 1, "beat 1");
    assert.deepEqual(renewals.answers[0], [true, true, true]);
    // Another instance took the second lease (its holder was frozen past the lease's life).
    const taken = renewals.batches[0]![1]!;
    const theirs = newLeaseToken();
    await raw.set(taken, theirs, { PX: 60_000 });
    t.mock.timers.tick(BEAT);
    await until(() => renewals.answers.length === 2, "beat 2");
    assert.deepEqual(renewals.answers[1], [true, false, true]);
    t.mock.timers.tick(BEAT);
    await until(() => renewals.answers.length === 3, "beat 3");
    assert.deepEqual(renewals.batches[2], [renewals.batches[0]![0], renewals.batches[0]![2]]);
    assert.ok(!renewals.batches[2]!.includes(taken), "the lost lease is not renewed again");
    gate.resolve();
    await results;
    // The factory carried on; its release left the new owner's lease in place, life untouched.
    const pttl = await raw.pTTL(taken);
    assert.ok(pttl > 50_000, `the new owner's lease keeps its own life (PTTL ${pttl} ms)`);
    assert.ok(Buffer.from((await raw.get(taken)) ?? "").equals(theirs));
  });

  it("a renewal the store could not answer is tried again at the next beat", async (t) => {
    const { url } = await redis();
    const { store, renewals } = counted(redisStore({ url }), true);
    const { gate, results } = await holding(t, store, 5);
    renewals.failNext = true;
    t.mock.timers.tick(BEAT);
    await until(() => renewals.answers.length === 1, "beat 1 (failing)");
    t.mock.timers.tick(BEAT);
    await until(() => renewals.answers.length === 2, "beat 2");
    assert.equal(renewals.batches[1]!.length, 5, "every lease tried again");
    assert.deepEqual(renewals.answers[1], [true, true, true, true, true]);
    gate.resolve();
    await results;
  });

  it("a store without extendManyIfEquals is renewed per key, at most 32 calls at a time", async (t) => {
    const { url } = await redis();
    const { store, renewals } = counted(redisStore({ url }), false);
    const { gate, results } = await holding(t, store, 100);
    t.mock.timers.tick(BEAT);
    await until(() => renewals.singlesSettled === 100, "100 renewals");
    assert.equal(renewals.singles, 100, "one extendIfEquals per held lease");
    assert.ok(renewals.maxInFlight <= 32, `at most 32 in flight, saw ${renewals.maxInFlight}`);
    t.mock.timers.tick(BEAT);
    await until(() => renewals.singlesSettled === 200, "the next beat");
    gate.resolve();
    await results;
  });
});

describe("lease renewer on a Redis Cluster", () => {
  it("renews leases in different hash slots with one store call per beat (one script per slot)", async (t) => {
    clusterStarted ??= startRedisCluster({ masters: 3 });
    const cluster = await clusterStarted;
    const { store, renewals } = counted(redisStore({ url: cluster.url }), true);
    const { gate, results } = await holding(t, store, 40);
    t.mock.timers.tick(BEAT);
    await until(() => renewals.answers.length === 1, "beat 1");
    const keys = renewals.batches[0]!;
    assert.equal(keys.length, 40);
    const slots = new Set(keys.map((key) => keySlot(`cachet:${key}`)));
    assert.ok(slots.size > 10, `the leases span many slots (${slots.size})`);
    assert.ok(renewals.answers[0]!.every(Boolean), "every lease renewed, whatever its slot");
    // The renewed lease lives a full life again on the node that serves its slot.
    const first = keys[0]!;
    const node = await cluster.ownerOf(keySlot(`cachet:${first}`));
    const pttl = Number(await node.command("PTTL", `cachet:${first}`));
    assert.ok(pttl > 0 && pttl <= LIFE, `PTTL ${pttl}`);
    gate.resolve();
    await results;
  });
});
