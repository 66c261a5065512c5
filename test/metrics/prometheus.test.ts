import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import Fastify from "fastify";
import { Registry } from "prom-client";
import { cachetFastify } from "../../src/adapters/fastify.js";
import { createCache, InvalidOptionError } from "../../src/index.js";
import { prometheusMetrics } from "../../src/metrics/prometheus.js";
import { redisStore } from "../../src/stores/redis.js";
import { manualClock } from "../helpers/core.js";
import { waitFor } from "../helpers/ports.js";
import { type RedisServer, startRedis } from "../helpers/redis.js";

interface Series {
  readonly name: string;
  readonly labels: Record<string, string | number>;
  readonly value: number;
}

/** Every series of the registry, histogram buckets included, as prom-client reports them. */
async function series(register: Registry): Promise<Series[]> {
  const out: Series[] = [];
  for (const metric of await register.getMetricsAsJSON()) {
    for (const v of metric.values as Array<{
      metricName?: string;
      labels: Record<string, string | number>;
      value: number;
    }>) {
      out.push({ name: v.metricName ?? metric.name, labels: v.labels, value: v.value });
    }
  }
  return out;
}

/** The value of one series (0 when absent), matching `labels` exactly on the given keys. */
async function value(
  register: Registry,
  name: string,
  labels: Record<string, string> = {},
): Promise<number> {
  const found = (await series(register)).filter(
    (s) => s.name === name && Object.entries(labels).every(([k, v]) => String(s.labels[k]) === v),
  );
  return found.reduce((n, s) => n + s.value, 0);
}

describe("prometheus: values after scripted traffic on a real Redis", () => {
  let redis: RedisServer;
  before(async () => {
    redis = await startRedis();
  });
  after(async () => {
    await redis?.stop();
  });

  it("counts hits by tier, misses, stale, writes, deletes, invalidations, factory runs and store latency", async () => {
    const register = new Registry();
    const make = () =>
      createCache({
        store: redisStore({ url: redis.url, prefix: "metrics-scripted:" }),
        l1: true,
        ttl: 60_000,
        storeTimeout: 1000,
      });
    const a = make();
    const b = make();
    prometheusMetrics(a, { register });
    prometheusMetrics(b, { register });
    try {
      // a: a miss (one factory run, one write), then an L1 hit.
      assert.deepEqual(await a.getOrSet("post:1", () => ({ id: 1 })), { id: 1 });
      assert.deepEqual(await a.getOrSet("post:1", () => ({ id: 0 })), { id: 1 });
      // b: an L2 hit (a wrote it), then an L1 hit.
      assert.deepEqual(await b.getOrSet("post:1", () => ({ id: 0 })), { id: 1 });
      assert.deepEqual(await b.getOrSet("post:1", () => ({ id: 0 })), { id: 1 });
      // A namespace: two misses, one of them produced.
      const users = a.namespace("users");
      assert.equal(await users.getOrSet("u1", () => "alice"), "alice");
      assert.equal(await users.get("u2"), undefined);
      // A failing factory: a miss and a factory error.
      await assert.rejects(a.getOrSet("bad", () => Promise.reject(new Error("origin down"))));
      await a.delete("post:1");
      await a.invalidateTags(["posts", "feed"]);
      await users.clear();

      assert.equal(
        await value(register, "cachet_hits_total", { tier: "l1", namespace: "(root)" }),
        2,
      );
      assert.equal(
        await value(register, "cachet_hits_total", { tier: "l2", namespace: "(root)" }),
        1,
      );
      assert.equal(await value(register, "cachet_misses_total", { namespace: "(root)" }), 2);
      assert.equal(await value(register, "cachet_misses_total", { namespace: "users" }), 2);
      assert.equal(await value(register, "cachet_writes_total", { namespace: "(root)" }), 1);
      assert.equal(await value(register, "cachet_writes_total", { namespace: "users" }), 1);
      assert.equal(await value(register, "cachet_deletes_total", { namespace: "(root)" }), 1);
      assert.equal(await value(register, "cachet_invalidations_total", { kind: "tags" }), 2);
      assert.equal(
        await value(register, "cachet_invalidations_total", {
          kind: "namespace",
          namespace: "users",
        }),
        1,
      );
      assert.equal(
        await value(register, "cachet_factory_duration_seconds_count", { outcome: "ok" }),
        2,
      );
      assert.equal(
        await value(register, "cachet_factory_duration_seconds_count", { outcome: "error" }),
        1,
      );
      assert.equal(await value(register, "cachet_factory_errors_total", { kind: "error" }), 1);
      // Remote reads: b's one hit; misses for a's first read, u1, u2 and bad.
      assert.equal(
        await value(register, "cachet_store_duration_seconds_count", {
          store: "redis",
          operation: "get",
          outcome: "hit",
        }),
        1,
      );
      assert.equal(
        await value(register, "cachet_store_duration_seconds_count", {
          operation: "get",
          outcome: "miss",
        }),
        4,
      );
      assert.ok(
        (await value(register, "cachet_store_duration_seconds_sum", { operation: "get" })) > 0,
      );
      // Gauges, read at scrape time.
      const entries = (a.health().l1?.entries ?? 0) + (b.health().l1?.entries ?? 0);
      assert.ok(entries > 0);
      assert.equal(await value(register, "cachet_memory_entries"), entries);
      assert.ok((await value(register, "cachet_memory_bytes")) > 0);
      assert.equal(await value(register, "cachet_breaker_state", { store: "redis" }), 0);
      assert.equal(await value(register, "cachet_store_up", { store: "redis" }), 1);
      assert.equal(await value(register, "cachet_errors_total"), 0);

      // The exposition names the series an operator queries.
      const text = await register.metrics();
      assert.match(text, /^cachet_hits_total\{namespace="\(root\)",tier="l2"\} 1$/m);
      assert.match(text, /^# HELP cachet_store_duration_seconds /m);
    } finally {
      await a.close();
      await b.close();
    }
  });

  it("reports the outage: store down, breaker open, errors by code; and the recovery", async () => {
    const local = await startRedis();
    const register = new Registry();
    // The breaker runs on a clock the test moves: no probe happens unless it says so.
    const clock = manualClock(Date.now());
    const cache = createCache({
      store: redisStore({ url: local.url, prefix: "metrics-outage:", maxReconnectDelay: 100 }),
      clock,
      storeTimeout: 200,
      breakerThreshold: 3,
      breakerCooldown: 1000,
      bus: false,
    });
    prometheusMetrics(cache, { register });
    try {
      assert.equal(await cache.getOrSet("k", () => "v"), "v");
      await local.kill();
      for (let i = 0; i < 10; i++)
        assert.equal(await cache.getOrSet(`k${i}`, () => "origin"), "origin");
      assert.equal(await value(register, "cachet_store_up", { store: "redis" }), 0);
      assert.equal(await value(register, "cachet_store_outages_total", { store: "redis" }), 1);
      assert.equal(
        await value(register, "cachet_breaker_transitions_total", {
          store: "redis",
          state: "open",
        }),
        1,
      );
      // The failed calls until the breaker opened (reads and writes), none after.
      assert.equal(await value(register, "cachet_errors_total"), 3);
      assert.ok((await value(register, "cachet_errors_total", { operation: "get" })) >= 1);
      const codes = new Set(
        (await series(register))
          .filter((s) => s.name === "cachet_errors_total")
          .map((s) => String(s.labels.code)),
      );
      assert.ok(
        [...codes].every((c) => c.startsWith("E_STORE")),
        `codes: ${[...codes].join(", ")}`,
      );
      assert.equal(await value(register, "cachet_breaker_state", { store: "redis" }), 2);

      await local.start();
      await waitFor(
        async () => {
          clock.advance(1000);
          await cache.getOrSet("after", () => "v");
          return (await value(register, "cachet_store_up", { store: "redis" })) === 1;
        },
        "the store to be reported up again",
        10_000,
        50,
      );
      assert.equal(await value(register, "cachet_breaker_state", { store: "redis" }), 0);
      assert.equal(
        await value(register, "cachet_breaker_transitions_total", {
          store: "redis",
          state: "closed",
        }),
        1,
      );
      assert.equal(await value(register, "cachet_store_outages_total", { store: "redis" }), 1);
    } finally {
      await cache.close();
      await local.stop();
    }
  });
});

describe("prometheus: bounded labels", () => {
  it("10,000 distinct URLs leave the series count bounded: route patterns, never URLs", async () => {
    const register = new Registry();
    const cache = createCache();
    prometheusMetrics(cache, { register });
    const app = Fastify();
    await app.register(cachetFastify, { cache, logger: false });
    app.get("/posts/:id", { config: { cache: { ttl: 60_000 } } }, async (request) => ({
      id: (request.params as { id: string }).id,
    }));
    try {
      await app.ready();
      const before = (await series(register)).length;
      for (let i = 0; i < 10_000; i++) {
        const response = await app.inject({ url: `/posts/${i}?utm=${i % 97}&q=${i}` });
        assert.equal(response.statusCode, 200);
      }
      for (let i = 0; i < 100; i++) await app.inject({ url: `/posts/${i}?utm=${i % 97}&q=${i}` });
      const all = await series(register);
      assert.equal(
        await value(register, "cachet_http_requests_total", {
          route: "GET /posts/:id",
          outcome: "stored",
        }),
        10_000,
      );
      assert.equal(
        await value(register, "cachet_http_requests_total", {
          route: "GET /posts/:id",
          outcome: "hit",
        }),
        100,
      );
      assert.equal(await value(register, "cachet_misses_total", { namespace: "http" }), 10_000);
      assert.ok(all.length < before + 60, `${all.length} series (${before} before the traffic)`);
      const labelValues = new Set(all.flatMap((s) => Object.values(s.labels).map(String)));
      for (const v of labelValues) {
        assert.doesNotMatch(v, /\/posts\/\d|\?|utm=/, `a URL leaked into a label: ${v}`);
      }
      const routes = new Set(
        all.filter((s) => s.labels.route !== undefined).map((s) => String(s.labels.route)),
      );
      assert.deepEqual([...routes], ["GET /posts/:id"]);
    } finally {
      await app.close();
    }
  });

  it("caps namespace and route label values; the rest count as other", async () => {
    const register = new Registry();
    const cache = createCache();
    prometheusMetrics(cache, { register, maxNamespaces: 5 });
    for (let i = 0; i < 50; i++) await cache.namespace(`tenant-${i}`).get("k");
    const namespaces = new Set(
      (await series(register))
        .filter((s) => s.name === "cachet_misses_total")
        .map((s) => String(s.labels.namespace)),
    );
    assert.equal(namespaces.size, 6);
    assert.ok(namespaces.has("other"));
    assert.equal(await value(register, "cachet_misses_total", { namespace: "other" }), 45);
  });

  it("validates its options", () => {
    const cache = createCache();
    assert.throws(
      () => prometheusMetrics(cache, { register: new Registry(), prefix: "bad-prefix" }),
      InvalidOptionError,
    );
    assert.throws(
      () => prometheusMetrics(cache, { register: new Registry(), maxRoutes: 0 }),
      InvalidOptionError,
    );
    assert.throws(() => prometheusMetrics({} as never), InvalidOptionError);
  });

  it("stop() detaches the cache; a second cache on the same registry shares the metrics", async () => {
    const register = new Registry();
    const a = createCache();
    const b = createCache();
    const ma = prometheusMetrics(a, { register });
    prometheusMetrics(b, { register });
    await a.get("x");
    await b.get("x");
    assert.equal(await value(register, "cachet_misses_total"), 2);
    ma.stop();
    await a.get("y");
    await b.get("y");
    assert.equal(await value(register, "cachet_misses_total"), 3);
  });
});
