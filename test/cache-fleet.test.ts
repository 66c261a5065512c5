import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { leaseStoreKey } from "../src/cache.js";
import type { CacheEventMap, Clock } from "../src/index.js";
import { createCache, InvalidOptionError } from "../src/index.js";
import { newLeaseToken } from "../src/lease.js";
import { type Deferred, deferred, flush, MapStore, manualClock } from "./helpers/core.js";
import { waitFor } from "./helpers/ports.js";

/**
 * The fleet-wide lease, early refresh and jitter, on two caches sharing one remote-store
 * double (two "instances" in one process). The same behaviour across real processes on a
 * real Redis is tested in test/resilience/.
 */

/** The Map-based remote double, with the lease operations (atomic, as on a real server). */
class LeaseStore extends MapStore {
  readonly #clock: Clock;

  constructor(clock: Clock) {
    super(clock);
    this.#clock = clock;
  }

  #live(key: string): Buffer | undefined {
    const stored = this.data.get(key);
    return stored && this.#clock.now() < stored.expiresAt ? stored.bytes : undefined;
  }

  async setIfAbsent(key: string, value: Uint8Array, ttlMs: number): Promise<boolean> {
    if (this.failWith) throw this.failWith;
    if (this.#live(key) !== undefined) return false;
    this.data.set(key, { bytes: Buffer.from(value), expiresAt: this.#clock.now() + ttlMs });
    return true;
  }

  async deleteIfEquals(key: string, value: Uint8Array): Promise<boolean> {
    if (this.failWith) throw this.failWith;
    const current = this.#live(key);
    if (!current?.equals(Buffer.from(value))) return false;
    return this.data.delete(key);
  }
}

function fleet(options: { lease?: boolean | { ttl?: number; wait?: number }; l1?: boolean } = {}) {
  const clock = manualClock();
  const store = new LeaseStore(clock);
  const make = () =>
    createCache({
      clock,
      store,
      l1: options.l1 ?? true,
      lease: options.lease ?? true,
      ttl: 60_000,
    });
  const leases: Array<CacheEventMap["lease"]["outcome"]> = [];
  const byKey: Array<`${string} ${CacheEventMap["lease"]["outcome"]}`> = [];
  const a = make();
  const b = make();
  for (const c of [a, b]) {
    c.on("lease", (e) => {
      leases.push(e.outcome);
      byKey.push(`${e.key} ${e.outcome}`);
    });
  }
  return { clock, store, a, b, leases, byKey };
}

describe("fleet-wide single-flight (lease)", () => {
  it("runs the factory once across instances; the others wait for the value to land", async () => {
    const { a, b, leases } = fleet();
    let calls = 0;
    const gate: Deferred<string> = deferred();
    const factory = async () => {
      calls++;
      return gate.promise;
    };
    const results = Promise.all([
      ...Array.from({ length: 50 }, () => a.getOrSet("k", factory)),
      ...Array.from({ length: 50 }, () => b.getOrSet("k", factory)),
    ]);
    await waitFor(() => leases.includes("waiting"), "the second instance to wait");
    gate.resolve("value");
    const values = await results;
    assert.equal(calls, 1);
    assert.ok(values.every((v) => v === "value"));
    assert.deepEqual(leases.sort(), ["acquired", "landed", "waiting"]);
  });

  it("releases the lease after the write, so the next refresh can take it", async () => {
    const { a, store, clock } = fleet();
    await a.getOrSet("k", () => "v1");
    assert.equal(store.raw(leaseStoreKey("k")), undefined, "released");
    clock.advance(61_000);
    assert.equal(await a.getOrSet("k", () => "v2"), "v2");
  });

  it("lets a waiter take over when the holder dies (its lease expires)", async () => {
    const { a, b, clock, leases } = fleet({ lease: { ttl: 1_000, wait: 30_000 } });
    const hung = a.getOrSet("k", () => new Promise<string>(() => {})); // the holder never finishes
    void hung;
    await waitFor(() => leases.includes("acquired"), "the first instance to take the lease");
    let calls = 0;
    const waiter = b.getOrSet("k", async () => {
      calls++;
      return "from b";
    });
    await waitFor(() => leases.includes("waiting"), "the second instance to wait");
    clock.advance(1_001); // the holder's lease expires
    assert.equal(await waiter, "from b");
    assert.equal(calls, 1);
    assert.ok(leases.includes("took-over"));
  });

  it("runs the factory itself when the wait runs out", async () => {
    const { a, b, clock, leases } = fleet({ lease: { ttl: 60_000, wait: 2_000 } });
    void a.getOrSet("k", () => new Promise<string>(() => {}));
    await waitFor(() => leases.includes("acquired"), "the lease holder");
    const waiter = b.getOrSet("k", () => "impatient");
    await waitFor(() => leases.includes("waiting"), "the waiter");
    clock.advance(2_001);
    assert.equal(await waiter, "impatient");
    assert.ok(leases.includes("timed-out"));
  });

  it("only the owner releases: a holder finishing after its lease was taken over leaves the new one", async () => {
    const { a, b, clock, store, byKey } = fleet({ lease: { ttl: 1_000, wait: 30_000 } });
    const slow: Deferred<string> = deferred();
    const first = a.getOrSet("k", () => slow.promise);
    await waitFor(() => byKey.includes("k acquired"), "the first holder");
    const firstToken = store.raw(leaseStoreKey("k"));
    clock.advance(1_001); // the first holder's lease expires while its factory still runs
    const second: Deferred<string> = deferred();
    const next = b.getOrSet("k", () => second.promise);
    await waitFor(() => byKey.filter((l) => l === "k acquired").length === 2, "the new holder");
    const held = store.raw(leaseStoreKey("k"));
    assert.ok(held && firstToken && !held.equals(firstToken), "a new token");
    slow.resolve("late");
    await first;
    await flush();
    assert.deepEqual(
      store.raw(leaseStoreKey("k")),
      held,
      "the late holder did not delete the new lease",
    );
    second.resolve("fresh");
    assert.equal(await next, "fresh");
  });

  it("a waiter whose SET NX wins just after the holder wrote and released takes the landed value, not a second factory call", async () => {
    const { a, b, store, leases } = fleet();
    // Someone holds the lease (a value in the lease format): b waits.
    store.put(leaseStoreKey("k"), newLeaseToken(), 60_000);
    const setIfAbsent = store.setIfAbsent.bind(store);
    let attempts = 0;
    store.setIfAbsent = async (key, value, ttlMs) => {
      // Between b's read (a miss) and its next SET NX, the holder writes its value and
      // releases the lease.
      if (key === leaseStoreKey("k") && ++attempts === 2) {
        await a.set("k", "the holder's value");
        store.data.delete(leaseStoreKey("k"));
      }
      return setIfAbsent(key, value, ttlMs);
    };
    let calls = 0;
    const value = await b.getOrSet("k", () => {
      calls++;
      return "a second call";
    });
    assert.ok(attempts >= 2, "b waited and tried again");
    assert.equal(value, "the holder's value");
    assert.equal(calls, 0);
    assert.ok(leases.includes("landed"));
    await flush();
    assert.equal(store.raw(leaseStoreKey("k")), undefined, "the lease b took is given back");
  });

  it("a foreign value under the lease key (store without takeLease) is replaced, not waited on", async () => {
    const { a, store, leases } = fleet({ lease: { wait: 30_000 } });
    store.put(leaseStoreKey("k"), Buffer.from("written by something else"), 60_000);
    const answer = await Promise.race([
      a.getOrSet("k", () => "fresh"),
      new Promise((resolve) => setTimeout(resolve, 1_000, "still waiting")),
    ]);
    assert.equal(answer, "fresh");
    assert.deepEqual(leases, ["acquired"]);
    await flush();
    assert.equal(store.raw(leaseStoreKey("k")), undefined, "the lease taken is released");
  });

  it("refuses a lease.ttl under 30 ms (renewed every third of it), naming the option", () => {
    for (const ttl of [10, "20ms"]) {
      assert.throws(
        () => createCache({ lease: { ttl } }),
        (error: unknown) =>
          error instanceof InvalidOptionError &&
          error.option === "createCache.lease.ttl" &&
          error.code === "E_INVALID_OPTION",
      );
    }
    assert.doesNotThrow(() => createCache({ lease: { ttl: 30 } }));
  });

  it("never fails because of the lease: a failing store means every instance runs its factory", async () => {
    const { a, store } = fleet();
    store.failWith = new Error("store down");
    assert.equal(await a.getOrSet("k", () => "still answers"), "still answers");
  });
});

describe("probabilistic early refresh (XFetch)", () => {
  it("refreshes ahead of expiry when the draw says so, and not otherwise", async (t) => {
    const clock = manualClock();
    const cache = createCache({ clock, earlyRefresh: 1 });
    let calls = 0;
    const factory = async () => {
      calls++;
      clock.advance(100); // the value takes 100 ms to compute: delta = 100
      return calls;
    };
    assert.equal(await cache.getOrSet("k", factory, { ttl: 10_000 }), 1);
    clock.advance(9_000); // 1 s before expiry
    const random = t.mock.method(Math, "random", () => 0); // ln(1 - 0) = 0: never early
    assert.equal(await cache.getOrSet("k", factory), 1);
    await flush();
    assert.equal(calls, 1);
    random.mock.mockImplementation(() => 0.999_999); // -ln(1e-6) ≈ 13.8: 100·13.8 > 1000 ms left
    assert.equal(await cache.getOrSet("k", factory), 1, "the current value is served meanwhile");
    await waitFor(() => calls === 2, "the early refresh");
    await flush();
    assert.equal(await cache.getOrSet("k", factory), 2);
  });

  it("never refreshes early a value that took no time to compute", async (t) => {
    const clock = manualClock();
    const cache = createCache({ clock, earlyRefresh: 5 });
    let calls = 0;
    await cache.getOrSet("k", () => ++calls, { ttl: 1_000 });
    t.mock.method(Math, "random", () => 0.999_999);
    clock.advance(999);
    await cache.getOrSet("k", () => ++calls);
    await flush();
    assert.equal(calls, 1);
  });
});

describe("ttl jitter", () => {
  it("shortens each ttl by a random fraction up to `jitter`, never lengthens it", async (t) => {
    const clock = manualClock();
    const cache = createCache({ clock, jitter: 0.2 });
    t.mock.method(Math, "random", () => 0.5);
    await cache.set("k", "v", { ttl: 10_000 });
    clock.advance(8_999);
    assert.equal(await cache.get("k"), "v");
    clock.advance(1); // 10 000 · (1 − 0.2 · 0.5) = 9 000
    assert.equal(await cache.get("k"), undefined);
  });

  it("rejects a jitter outside 0–1 and a negative earlyRefresh, naming the option", () => {
    assert.throws(() => createCache({ jitter: 1.5 }), {
      code: "E_INVALID_OPTION",
      option: "createCache.jitter",
    });
    assert.throws(() => createCache({ earlyRefresh: -1 }), {
      code: "E_INVALID_OPTION",
      option: "createCache.earlyRefresh",
    });
    assert.throws(() => createCache({ lease: { ttl: "soon" } }), {
      code: "E_INVALID_OPTION",
      option: "createCache.lease.ttl",
    });
  });
});
