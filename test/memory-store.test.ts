// What the memory store does beyond the shared store contract (test/stores.test.ts): it is
// bounded in bytes with least-recently-used eviction, counts evictions, refuses oversized
// entries, and rejects invalid options by name.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { HeldEntry } from "../src/index.js";
import { createCache, InvalidOptionError, MemoryStore, memoryStore } from "../src/index.js";
import { manualClock } from "./helpers/core.js";

const TTL = 60_000;

function bytes(n: number, fill = 0x61): Buffer {
  return Buffer.alloc(n, fill);
}

function held(value: unknown, createdAt: number): HeldEntry {
  return {
    entry: { value, createdAt, freshUntil: createdAt + TTL, staleUntil: createdAt + TTL, tags: [] },
    tagMark: 0,
  };
}

function assertInvalid(run: () => unknown, option: string): void {
  assert.throws(run, (error: unknown) => {
    assert.ok(error instanceof InvalidOptionError, `expected InvalidOptionError, got ${error}`);
    assert.equal(error.option, option);
    assert.ok(error.message.includes(`\`${option}\``), error.message);
    return true;
  });
}

describe("memory store: bounded in bytes", () => {
  it("evicts the least recently used entries to stay under maxSize", async () => {
    const clock = manualClock();
    const store = memoryStore({ clock, maxSize: 100, maxEntrySize: 50 });
    await store.set("a", bytes(40), TTL);
    await store.set("b", bytes(40), TTL);
    assert.equal(store.size, 80);
    assert.equal(store.evictions, 0);
    await store.set("c", bytes(40), TTL);
    assert.equal(await store.get("a"), undefined, "a was the least recently used");
    assert.deepEqual(await store.get("b"), bytes(40));
    assert.deepEqual(await store.get("c"), bytes(40));
    assert.equal(store.entries, 2);
    assert.equal(store.size, 80);
    assert.equal(store.evictions, 1);
  });

  it("counts reads as use: a recently read entry survives", async () => {
    const store = memoryStore({ clock: manualClock(), maxSize: 100, maxEntrySize: 50 });
    await store.set("a", bytes(30), TTL);
    await store.set("b", bytes(30), TTL);
    await store.set("c", bytes(30), TTL);
    await store.get("a");
    await store.set("d", bytes(30), TTL);
    assert.equal(await store.get("b"), undefined);
    assert.ok(await store.get("a"));
    assert.ok(await store.get("c"));
    assert.ok(await store.get("d"));
    assert.equal(store.evictions, 1);
  });

  it("evicts as many entries as a large write needs", async () => {
    const store = memoryStore({ clock: manualClock(), maxSize: 100, maxEntrySize: 100 });
    for (const k of ["a", "b", "c", "d", "e"]) await store.set(k, bytes(20), TTL);
    assert.equal(store.size, 100);
    await store.set("big", bytes(70), TTL);
    assert.equal(store.evictions, 4);
    assert.ok(store.size <= 100);
    assert.deepEqual(await store.get("e"), bytes(20));
    assert.deepEqual(await store.get("big"), bytes(70));
  });

  it("does not store an entry larger than maxEntrySize, and drops the old value of its key", async () => {
    const store = memoryStore({ clock: manualClock(), maxSize: 1000, maxEntrySize: 100 });
    await store.set("k", bytes(10), TTL);
    await store.set("other", bytes(10), TTL);
    await store.set("k", bytes(101), TTL);
    assert.equal(await store.get("k"), undefined, "an oversized write never leaves the old value");
    assert.deepEqual(await store.get("other"), bytes(10), "and evicts nothing else");
    assert.equal(store.evictions, 0);
    await store.set("k", bytes(100), TTL);
    assert.deepEqual(await store.get("k"), bytes(100), "maxEntrySize itself is allowed");
  });

  it("defaults maxEntrySize to a quarter of maxSize", async () => {
    const store = memoryStore({ clock: manualClock(), maxSize: 400 });
    assert.equal(store.maxEntrySize, 100);
    await store.set("fits", bytes(100), TTL);
    await store.set("too-big", bytes(101), TTL);
    assert.ok(await store.get("fits"));
    assert.equal(await store.get("too-big"), undefined);
    assert.equal(memoryStore().maxSize, 64 * 1024 * 1024);
  });

  it("bounds held (decoded) entries by their size too", () => {
    const clock = manualClock();
    const store = memoryStore({ clock, maxSize: 100, maxEntrySize: 60 });
    assert.equal(store.setHeld("a", held("a", clock.t), 50, clock.t + TTL), true);
    assert.equal(store.setHeld("b", held("b", clock.t), 50, clock.t + TTL), true);
    assert.equal(store.setHeld("c", held("c", clock.t), 50, clock.t + TTL), true);
    assert.equal(store.getHeld("a"), undefined);
    assert.equal(store.getHeld("c")?.entry.value, "c");
    assert.equal(store.evictions, 1);
    assert.equal(store.setHeld("d", held("d", clock.t), 61, clock.t + TTL), false);
    assert.equal(store.getHeld("d"), undefined);
  });

  it("caps the number of entries with maxEntries", async () => {
    const store = memoryStore({ clock: manualClock(), maxEntries: 2 });
    await store.set("a", bytes(1), TTL);
    await store.set("b", bytes(1), TTL);
    await store.set("c", bytes(1), TTL);
    assert.equal(store.entries, 2);
    assert.equal(await store.get("a"), undefined);
    assert.equal(store.evictions, 1);
  });
});

describe("memory store: the evictions counter", () => {
  it("counts evictions only, not deletes, overwrites, expiries or clears", async () => {
    const clock = manualClock();
    const store = memoryStore({ clock, maxSize: 100, maxEntrySize: 50 });
    await store.set("a", bytes(10), TTL);
    await store.set("a", bytes(20), TTL); // overwrite
    await store.delete("a"); // delete
    await store.set("b", bytes(10), 10);
    clock.advance(10);
    assert.equal(await store.get("b"), undefined); // expiry
    await store.set("c", bytes(10), TTL);
    store.clear();
    assert.equal(store.evictions, 0);
    assert.equal(store.size, 0);
    for (let i = 0; i < 5; i++) await store.set(`k${i}`, bytes(50), TTL);
    assert.equal(store.evictions, 3);
  });

  it("reflects evictions of the in-process tier of a cache", async () => {
    const clock = manualClock();
    const store = memoryStore({ clock, maxSize: 4096, maxEntrySize: 1024 });
    const cache = createCache({ clock, store });
    for (let i = 0; i < 100; i++) await cache.set(`k${i}`, "x".repeat(200));
    assert.ok(store.size <= 4096);
    assert.ok(store.evictions > 0);
    assert.equal(store.entries + store.evictions, 100);
    assert.equal(await cache.get("k99"), "x".repeat(200));
    assert.equal(await cache.get("k0"), undefined);
  });
});

describe("memory store: invalid options name the option", () => {
  const cases: Array<[string, Record<string, unknown>, string]> = [
    ["maxSize zero", { maxSize: 0 }, "memoryStore.maxSize"],
    ["maxSize negative", { maxSize: -1 }, "memoryStore.maxSize"],
    ["maxSize fractional", { maxSize: 1.5 }, "memoryStore.maxSize"],
    ["maxSize a string", { maxSize: "64mb" }, "memoryStore.maxSize"],
    ["maxSize infinite", { maxSize: Number.POSITIVE_INFINITY }, "memoryStore.maxSize"],
    ["maxEntrySize zero", { maxEntrySize: 0 }, "memoryStore.maxEntrySize"],
    ["maxEntrySize over maxSize", { maxSize: 100, maxEntrySize: 101 }, "memoryStore.maxEntrySize"],
    ["maxEntries zero", { maxEntries: 0 }, "memoryStore.maxEntries"],
    ["maxEntries fractional", { maxEntries: 2.5 }, "memoryStore.maxEntries"],
  ];
  for (const [what, options, option] of cases) {
    it(what, () => {
      assertInvalid(() => memoryStore(options as never), option);
      assertInvalid(() => new MemoryStore(options as never), option);
    });
  }

  it("accepts maxEntrySize equal to maxSize", () => {
    const store = memoryStore({ maxSize: 100, maxEntrySize: 100 });
    assert.equal(store.maxEntrySize, 100);
    assert.ok(store instanceof MemoryStore);
  });
});
