import assert from "node:assert/strict";
import diagnostics from "node:diagnostics_channel";
import { once } from "node:events";
import type { AddressInfo } from "node:net";
import { after, before, describe, it } from "node:test";
import express from "express";
import Fastify from "fastify";
import { cachetExpress } from "../src/adapters/express.js";
import { cachetFastify } from "../src/adapters/fastify.js";
import { engineOf } from "../src/engine/registry.js";
import type { Cache, CacheEventMap, CacheEventName } from "../src/index.js";
import {
  createCache,
  FactoryHardTimeoutError,
  InvalidOptionError,
  MemoryStore,
  memoryStore,
  namespaceOf,
} from "../src/index.js";
import { redisStore } from "../src/stores/redis.js";
import { flush, isSettled, MapStore, manualClock } from "./helpers/core.js";
import { waitFor } from "./helpers/ports.js";
import { type RedisServer, startRedis } from "./helpers/redis.js";

/** Every event name, the new ones included. */
const ALL: readonly CacheEventName[] = [
  "hit",
  "miss",
  "stale",
  "set",
  "delete",
  "invalidate",
  "factory-error",
  "factory",
  "store",
  "error",
  "lease",
  "bus",
  "breaker",
  "store-health",
  "evict",
  "oversize",
  "http",
];

interface Recorder {
  readonly log: Array<{ name: CacheEventName; payload: unknown }>;
  of<E extends CacheEventName>(name: E): Array<CacheEventMap[E]>;
  count(name: CacheEventName): number;
  reset(): void;
}

function record(cache: Cache, names: readonly CacheEventName[] = ALL): Recorder {
  const log: Array<{ name: CacheEventName; payload: unknown }> = [];
  for (const name of names)
    cache.on(name, ((payload: unknown) => log.push({ name, payload })) as never);
  return {
    log,
    of: <E extends CacheEventName>(name: E) =>
      log.filter((e) => e.name === name).map((e) => e.payload as CacheEventMap[E]),
    count: (name) => log.filter((e) => e.name === name).length,
    reset: () => {
      log.length = 0;
    },
  };
}

function remote(options: Record<string, unknown> = {}, clock = manualClock()) {
  const store = new MapStore(clock);
  const cache = createCache({ store, clock, l1: true, ...options });
  return { cache, store, clock };
}

describe("events: one per outcome", () => {
  it("a miss: one miss, one factory run, one write, and timed store calls", async () => {
    const { cache } = remote();
    const events = record(cache);
    assert.equal(await cache.getOrSet("k", () => "v", { ttl: 1000 }), "v");
    assert.equal(events.count("miss"), 1);
    assert.equal(events.count("set"), 1);
    assert.equal(events.count("hit"), 0);
    const [factory] = events.of("factory");
    assert.equal(events.count("factory"), 1);
    assert.equal(factory?.key, "k");
    assert.equal(factory?.outcome, "ok");
    assert.equal(factory?.background, false);
    assert.ok(typeof factory?.duration === "number" && factory.duration >= 0);
    // One read that missed, one write; each timed.
    assert.deepEqual(
      events.of("store").map((e) => [e.store, e.operation, e.key, e.outcome]),
      [
        ["fake-remote", "get", "k", "miss"],
        ["fake-remote", "set", "k", "ok"],
      ],
    );
    assert.ok(events.of("store").every((e) => e.duration >= 0));
  });

  it("a hit: one event naming its tier, l2 then l1", async () => {
    const clock = manualClock();
    const store = new MapStore(clock);
    const writer = createCache({ store, clock });
    await writer.set("k", { n: 1 });
    const reader = createCache({ store, clock, l1: true });
    const events = record(reader);
    await reader.getOrSet("k", () => ({ n: 2 }));
    assert.deepEqual(
      events.log.filter((e) => e.name !== "store"),
      [{ name: "hit", payload: { key: "k", tier: "l2" } }],
    );
    // The entry, then the states of its tags (the namespace's), in one call.
    assert.deepEqual(
      events.of("store").map((e) => [e.operation, e.outcome]),
      [
        ["get", "hit"],
        ["getMany", "ok"],
      ],
    );
    events.reset();
    await reader.getOrSet("k", () => ({ n: 2 }));
    assert.deepEqual(events.log, [{ name: "hit", payload: { key: "k", tier: "l1" } }]);
  });

  it("stale: one event with its reason per stale answer, one background factory run", async () => {
    const clock = manualClock();
    const cache = createCache({ clock });
    await cache.getOrSet("k", () => 1, { ttl: 1000, staleWhileRevalidate: 5000 });
    clock.advance(1500);
    const events = record(cache);
    assert.equal(await cache.getOrSet("k", () => 2, { ttl: 1000, staleWhileRevalidate: 5000 }), 1);
    await flush();
    assert.deepEqual(events.of("stale"), [{ key: "k", tier: "l1", reason: "revalidating" }]);
    assert.deepEqual(
      events.of("factory").map((e) => [e.outcome, e.background]),
      [["ok", true]],
    );
    assert.equal(events.count("miss"), 0);
    assert.equal(events.count("set"), 1);
  });

  it("stale-if-error: one stale event (reason error) and no miss; a successful refresh is one miss", async () => {
    const clock = manualClock();
    const cache = createCache({ clock });
    const options = { ttl: 1000, staleIfError: 60_000, graceBackoff: 0 };
    await cache.getOrSet("k", () => 1, options);
    clock.advance(1500);
    const events = record(cache);
    const failing = () => Promise.reject(new Error("origin down"));
    assert.equal(await cache.getOrSet("k", failing, options), 1);
    assert.deepEqual(events.of("stale"), [{ key: "k", tier: "l1", reason: "error" }]);
    assert.equal(events.count("miss"), 0, "a stale answer is not also a miss");
    events.reset();
    assert.equal(await cache.getOrSet("k", () => 2, options), 2);
    assert.equal(events.count("miss"), 1);
    assert.equal(events.count("stale"), 0);
  });

  it("factory errors: one factory-error, and the factory event tells a hard timeout from an error", async (t) => {
    t.mock.timers.enable({ apis: ["setTimeout", "Date"], now: 1_000_000 });
    const cache = createCache();
    const events = record(cache);
    const boom = new Error("boom");
    await assert.rejects(
      cache.getOrSet("a", () => Promise.reject(boom)),
      boom,
    );
    const pending = cache.getOrSet("b", () => new Promise<string>(() => {}), { hardTimeout: 100 });
    await flush();
    t.mock.timers.tick(100);
    await assert.rejects(pending, FactoryHardTimeoutError);
    assert.equal(await isSettled(pending), true);
    assert.deepEqual(
      events.of("factory-error").map((e) => [e.key, (e.error as { code?: string }).code]),
      [
        ["a", undefined],
        ["b", "E_FACTORY_HARD_TIMEOUT"],
      ],
    );
    assert.deepEqual(
      events.of("factory").map((e) => [e.key, e.outcome]),
      [
        ["a", "error"],
        ["b", "hard-timeout"],
      ],
    );
    assert.equal(events.of("factory")[1]?.error instanceof FactoryHardTimeoutError, true);
  });

  it("store errors: one error per failed call; the outage once down and once up", async () => {
    const { cache, store, clock } = remote({ breakerThreshold: 100, breakerCooldown: 1000 });
    const events = record(cache);
    store.failWith = new Error("ECONNREFUSED");
    for (let i = 0; i < 10; i++) {
      await cache.get(`k${i}`);
      clock.advance(10);
    }
    assert.equal(events.of("error").length, 10);
    assert.ok(events.of("error").every((e) => e.operation === "get"));
    assert.deepEqual(
      events.of("store-health").map((e) => [e.store, e.state]),
      [["fake-remote", "down"]],
    );
    assert.equal(cache.health().status, "degraded");
    store.failWith = undefined;
    // A success within the cooldown of the last failure is not a recovery yet.
    await cache.get("x");
    assert.equal(events.of("store-health").length, 1);
    clock.advance(1000);
    await cache.get("x");
    await cache.get("y");
    const health = events.of("store-health");
    assert.deepEqual(
      health.map((e) => [e.state, e.failures]),
      [
        ["down", undefined],
        ["up", 10],
      ],
    );
    assert.equal(health[1]?.downFor, 1000 + 10 * 10);
    assert.equal(cache.health().status, "ok");
  });

  it("breaker: one event per transition", async () => {
    const { cache, store, clock } = remote({ breakerThreshold: 2, breakerCooldown: 500 });
    const events = record(cache);
    store.failWith = new Error("down");
    for (let i = 0; i < 6; i++) await cache.get("k");
    clock.advance(500);
    store.failWith = undefined;
    await cache.get("k");
    await cache.get("k");
    assert.deepEqual(
      events.of("breaker").map((e) => e.state),
      ["open", "half-open", "closed"],
    );
  });

  it("eviction: one evict event per entry the memory tier drops, with the tier", async () => {
    const l1 = memoryStore({ maxSize: 1000, maxEntrySize: 400 });
    const cache = createCache({ store: l1, freeze: false });
    const events = record(cache, ["evict"]);
    for (let i = 0; i < 10; i++) await cache.set(`k${i}`, "x".repeat(100));
    const evicted = events.of("evict");
    assert.equal(evicted.length, l1.evictions);
    assert.ok(evicted.length >= 5, `${evicted.length} evictions`);
    assert.ok(evicted.every((e) => e.tier === "l1" && e.size > 100));
    assert.deepEqual(
      evicted.map((e) => e.key),
      Array.from({ length: evicted.length }, (_, i) => `k${i}`),
      "least recently used first",
    );
    // Deletes and replacements are not evictions.
    events.reset();
    await cache.delete("k9");
    await cache.set("k8", "y");
    assert.equal(events.count("evict"), 0);
  });

  it("oversize: one event when the memory tier refuses a value, which is still returned", async () => {
    const cache = createCache({ store: new MemoryStore({ maxSize: 4096, maxEntrySize: 100 }) });
    const events = record(cache, ["oversize", "set"]);
    const big = "x".repeat(500);
    assert.equal(await cache.getOrSet("big", () => big), big);
    assert.deepEqual(
      events.of("oversize").map((e) => [e.key, e.source, e.limit, (e.size ?? 0) > 500]),
      [["big", "l1", 100, true]],
    );
    assert.equal(events.count("set"), 1);
    assert.equal(await cache.has("big"), false);
  });

  it("invalidate: the kind says tags, namespace or paths", async () => {
    const cache = createCache();
    const events = record(cache, ["invalidate"]);
    await cache.invalidateTags(["posts"], { soft: true });
    await cache.namespace("users").clear();
    await engineOf(cache).tiers.invalidate(["@path:/posts"], false, "paths");
    assert.deepEqual(events.of("invalidate"), [
      { tags: ["posts"], soft: true, kind: "tags" },
      { tags: ["@ns:users"], soft: false, kind: "namespace" },
      { tags: ["@path:/posts"], soft: false, kind: "paths" },
    ]);
  });

  it("namespaceOf reads the namespace from an event key", () => {
    assert.equal(namespaceOf("k"), "");
    assert.equal(namespaceOf("@users:42"), "users");
    assert.equal(namespaceOf("@users/admins:a:b"), "users/admins");
  });

  it("off costs nothing: timing runs only for listeners of the timed events", async () => {
    /** Clock reads made by `run`. */
    const clockReads = async (run: () => Promise<void>): Promise<number> => {
      const original = performance.now;
      let reads = 0;
      performance.now = () => {
        reads++;
        return original.call(performance);
      };
      try {
        await run();
      } finally {
        performance.now = original;
      }
      return reads;
    };
    const traffic = (cache: Cache) => async () => {
      await cache.getOrSet("k", () => "v");
      await cache.getOrSet("k", () => "v");
      await cache.get("other");
    };
    // In process: a miss, a factory run and a hit read no clock at all.
    assert.equal(await clockReads(traffic(createCache({ clock: manualClock() }))), 0);
    // On a remote store: listening to an untimed event costs no clock read either…
    const quiet = await clockReads(traffic(remote().cache));
    const unrelated = remote().cache;
    unrelated.on("delete", () => {});
    assert.equal(await clockReads(traffic(unrelated)), quiet);
    // …while a listener of store calls gets them timed (two reads per call).
    const observed = remote().cache;
    const calls: number[] = [];
    observed.on("store", (e) => calls.push(e.duration));
    assert.equal(await clockReads(traffic(observed)), quiet + 2 * calls.length);
    assert.ok(calls.length >= 3);
  });

  it("every event is also published on its diagnostics channel", async () => {
    const { cache } = remote();
    const seen: Array<[string, unknown]> = [];
    const names = ["miss", "factory", "store", "set"] as const;
    const listeners = names.map((name) => {
      const listener = (message: unknown) => seen.push([name, message]);
      diagnostics.subscribe(`cachet:${name}`, listener);
      return () => diagnostics.unsubscribe(`cachet:${name}`, listener);
    });
    try {
      await cache.getOrSet("dc", () => 1);
    } finally {
      for (const off of listeners) off();
    }
    assert.deepEqual(
      seen.map(([name]) => name),
      ["store", "miss", "factory", "store", "set"],
    );
  });
});

describe("events: fleet-wide lease, on a real Redis", () => {
  let redis: RedisServer;
  before(async () => {
    redis = await startRedis();
  });
  after(async () => {
    await redis?.stop();
  });

  it("acquired once by the runner; waiting and landed once by the waiter, with the wait", async () => {
    const make = () =>
      createCache({
        store: redisStore({ url: redis.url, prefix: "events-lease:" }),
        lease: { ttl: 5000, wait: 5000 },
        storeTimeout: 1000,
        bus: false,
      });
    const a = make();
    const b = make();
    try {
      const ea = record(a, ["lease", "factory"]);
      const eb = record(b, ["lease", "factory"]);
      let release!: () => void;
      const gate = new Promise<void>((resolve) => {
        release = resolve;
      });
      const first = a.getOrSet("k", async () => {
        await gate;
        return "from a";
      });
      // Let a take the lease before b asks, and b start waiting before a finishes (polled
      // with a deadline: a loaded machine can take many turns of the loop to answer).
      await waitFor(() => ea.count("lease") > 0, "a to take the lease");
      const second = b.getOrSet("k", () => "from b");
      await waitFor(() => eb.count("lease") > 0, "b to wait for the lease");
      release();
      assert.equal(await first, "from a");
      assert.equal(await second, "from a");
      assert.deepEqual(
        ea.of("lease").map((e) => e.outcome),
        ["acquired"],
      );
      assert.deepEqual(
        eb.of("lease").map((e) => e.outcome),
        ["waiting", "landed"],
      );
      assert.equal(eb.of("lease")[0]?.waited, undefined);
      assert.ok((eb.of("lease")[1]?.waited ?? -1) >= 0);
      assert.equal(ea.count("factory"), 1);
      assert.equal(eb.count("factory"), 0);
    } finally {
      await a.close();
      await b.close();
    }
  });
});

describe("events: one http event per request, naming the route pattern", () => {
  it("an Express route is named by its name option (the same on Hono), never by a URL", async () => {
    const cache = createCache();
    const events = record(cache, ["http"]);
    const cached = cachetExpress({ cache });
    const app = express();
    app.get("/users/:id", cached({ name: "GET /users/:id", ttl: 60_000 }), (req, res) => {
      res.json({ id: req.params.id });
    });
    app.get("/anonymous", cached(), (_req, res) => {
      res.json({});
    });
    // Over a real socket: no injection library in the way of Express.
    const server = app.listen(0, "127.0.0.1");
    await once(server, "listening");
    const { port } = server.address() as AddressInfo;
    try {
      for (const url of ["/users/1", "/users/1", "/users/2", "/anonymous"]) {
        const res = await fetch(`http://127.0.0.1:${port}${url}`);
        await res.arrayBuffer();
        assert.equal(res.status, 200);
      }
    } finally {
      server.closeAllConnections();
      server.close();
    }
    assert.deepEqual(
      events.of("http").map((e) => [e.route, e.outcome]),
      [
        ["GET /users/:id", "stored"],
        ["GET /users/:id", "hit"],
        ["GET /users/:id", "stored"],
        ["express route #2", "stored"],
      ],
    );
    assert.throws(
      () => cached({ name: "GET /x\n" }),
      (error: unknown) => error instanceof InvalidOptionError && /cache\.name/.test(error.option),
    );
  });

  it("hit, stored, collapsed, not-storable, bypass and oversize on Fastify", async () => {
    const cache = createCache();
    const events = record(cache, ["http", "oversize"]);
    const app = Fastify();
    await app.register(cachetFastify, { cache, maxEntrySize: 1000, logger: false });
    let calls = 0;
    app.get("/posts/:id", { config: { cache: { ttl: 60_000 } } }, async (request, reply) => {
      calls++;
      const { id } = request.params as { id: string };
      if (id === "private") reply.header("cache-control", "private");
      if (id === "big") return "x".repeat(2000);
      if (id === "slow") await new Promise((r) => setTimeout(r, 50));
      return { id };
    });
    try {
      await app.inject({ url: "/posts/1" });
      await app.inject({ url: "/posts/1" });
      await app.inject({ url: "/posts/1", headers: { authorization: "Bearer x" } });
      await app.inject({ url: "/posts/private" });
      await app.inject({ url: "/posts/big" });
      await Promise.all([app.inject({ url: "/posts/slow" }), app.inject({ url: "/posts/slow" })]);
      const seen = events.of("http");
      assert.equal(seen.length, 7, JSON.stringify(seen));
      assert.ok(seen.every((e) => e.route === "GET /posts/:id" && e.method === "GET"));
      assert.deepEqual(
        seen.map((e) => (e.reason ? `${e.outcome}:${e.reason}` : e.outcome)),
        [
          "stored",
          "hit",
          "bypass:personal-request",
          "not-storable:private",
          "not-storable:too-large",
          "stored",
          "collapsed",
        ],
      );
      assert.deepEqual(
        events.of("oversize").map((e) => [e.source, e.size, e.limit]),
        [["http", 2000, 1000]],
      );
      assert.equal(calls, 5, "the collapsed request ran no handler");
    } finally {
      await app.close();
    }
  });
});
