/**
 * The demo end to end over real sockets: `node demo/dist/server.js` as a child process, the
 * fake upstream on a real port, and (for the Redis half) a real redis-server.
 */
import assert from "node:assert/strict";
import { after, before, beforeEach, describe, it } from "node:test";
import type { Child } from "../../demo/child.js";
import { type FakeUpstream, startFakeUpstream } from "../../demo/fake-upstream.js";
import { freePort, waitFor } from "../helpers/ports.js";
import { type RedisServer, startRedis } from "../helpers/redis.js";
import { logRecords, runServiceToExit, startService } from "./helpers.js";

const HIT = /^cachet; hit; ttl=\d+$/;
const MISS_STORED = "cachet; fwd=uri-miss; stored";
/**
 * A request that arrives while the response of an earlier miss is still being stored is
 * answered from that same upstream response (RFC 9211 §2.6 "collapsed"), not from the store.
 */
const COLLAPSED = "cachet; fwd=uri-miss; stored; collapsed";

async function get(url: string, headers: Record<string, string> = {}) {
  // Bounded, so that a stuck response fails its test instead of hanging the run.
  const response = await fetch(url, { headers, signal: AbortSignal.timeout(15_000) });
  const body = Buffer.from(await response.arrayBuffer());
  return { status: response.status, headers: response.headers, body };
}

/**
 * GET `url` until the answer comes from the store (a hit), for at most 5 s. Answers before that
 * may only be collapsed onto the miss that is still being stored; the caller checks that none
 * of them reached the upstream.
 */
async function untilHit(url: string, headers: Record<string, string> = {}) {
  const deadline = Date.now() + 5_000;
  for (;;) {
    const response = await get(url, headers);
    const status = response.headers.get("cache-status") ?? "";
    if (HIT.test(status)) return response;
    assert.equal(status, COLLAPSED, "before the hit, only responses shared with the miss");
    if (Date.now() > deadline) throw new Error(`no hit for ${url} within 5 s`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

for (const store of ["memory", "redis", "tiered"] as const) {
  describe(`demo service over real sockets (CACHE_STORE=${store})`, { timeout: 120_000 }, () => {
    let fake: FakeUpstream;
    let redis: RedisServer | undefined;
    let service: Child;

    before(async () => {
      fake = await startFakeUpstream({ latencyMs: 20 });
      if (store !== "memory") redis = await startRedis();
      service = await startService({
        UPSTREAM_URL: fake.url,
        CACHE_STORE: store,
        CACHE_TTL: "60",
        // Generous: the fake upstream shares this process with 500 concurrent clients below.
        UPSTREAM_TIMEOUT: "10",
        // These tests count upstream calls; on a loaded machine a Redis reply can take longer
        // than the default 50 ms, which would turn a hit into a miss (test/resilience/ tests
        // the timeout itself).
        CACHE_STORE_TIMEOUT: "1s",
        REDIS_URL: redis?.url,
      });
    });
    after(async () => {
      const code = await service?.stop();
      await fake?.close();
      await redis?.stop();
      assert.equal(code, 0, "the service exits cleanly on SIGTERM");
    });
    beforeEach(() => {
      fake.reset();
      fake.setLatency(20);
    });

    it("starts within 3 s and reports its store on /health", async () => {
      assert.ok(service.startMs < 3_000, `ready after ${service.startMs.toFixed(0)} ms`);
      const listening = logRecords(service).find((r) => typeof r.url === "string");
      assert.equal(listening?.store, store);
      const health = await get(`${service.url}/health`);
      assert.equal(health.status, 200);
      const body = JSON.parse(health.body.toString()) as {
        status: string;
        cache: Record<string, unknown>;
      };
      assert.equal(body.status, "ok");
      assert.equal(body.cache.store, store);
      assert.equal(body.cache.state, "ok");
      if (store !== "memory") {
        assert.equal(body.cache.connection, "ready");
        assert.equal(body.cache.breaker, "closed");
        assert.equal(body.cache.redis, "up");
        assert.equal(body.cache.lease, true);
      }
      if (store === "tiered") assert.deepEqual(body.cache.bus, { state: "up", resets: 0 });
    });

    it("a cached body equals the upstream body, with Cache-Status, Age and ETag", async () => {
      const upstream = await get(`${fake.url}/posts`);
      fake.reset();

      const miss = await get(`${service.url}/posts`);
      assert.equal(miss.status, 200);
      assert.equal(miss.headers.get("cache-status"), MISS_STORED);
      assert.ok(miss.body.equals(upstream.body), "the miss passes the upstream bytes through");

      const hit = await untilHit(`${service.url}/posts`);
      assert.equal(hit.status, 200);
      assert.match(hit.headers.get("age") ?? "", /^\d+$/);
      assert.match(hit.headers.get("etag") ?? "", /^(W\/)?"[^"]+"$/);
      assert.match(hit.headers.get("content-type") ?? "", /^application\/json/);
      assert.ok(hit.body.equals(upstream.body), "the hit serves the upstream bytes");
      assert.equal(fake.calls(), 1);

      const notModified = await get(`${service.url}/posts`, {
        "if-none-match": hit.headers.get("etag")!,
      });
      assert.equal(notModified.status, 304);
      assert.equal(notModified.body.length, 0);
      assert.equal(fake.calls(), 1);
    });

    it("1,000 sequential requests cost one upstream call", async () => {
      const url = `${service.url}/posts?userId=1`;
      const first = await get(url);
      assert.equal(first.status, 200);
      const statuses: string[] = [];
      for (let i = 1; i < 1_000; i++) {
        const response = await get(url);
        assert.equal(response.status, 200);
        assert.ok(response.body.equals(first.body), `request ${i + 1}: same body`);
        statuses.push(response.headers.get("cache-status") ?? "");
      }
      assert.equal(fake.calls(), 1);
      const other = statuses.filter((status) => !HIT.test(status) && status !== COLLAPSED);
      assert.deepEqual(
        other,
        [],
        "every request after the first is a hit or shares the first's response",
      );
      assert.match(statuses.at(-1)!, HIT);
    });

    it("500 concurrent cold requests cost one upstream call", async () => {
      fake.setLatency(200); // long enough that every request arrives while the first is in flight
      const url = `${service.url}/posts?userId=2`;
      const responses = await Promise.all(Array.from({ length: 500 }, () => get(url)));
      const statuses = responses.map((r) => `${r.status} ${r.body.toString().slice(0, 80)}`);
      assert.deepEqual(
        statuses.filter((status) => !status.startsWith("200 ")),
        [],
        "every response is a 200",
      );
      assert.ok(responses.every((r) => r.body.equals(responses[0]!.body)));
      assert.equal(JSON.parse(responses[0]!.body.toString()).length, 10);
      assert.equal(fake.calls(), 1);
    });

    it("an upstream failure is a 502 and is not cached; after recovery the upstream answers", async () => {
      const url = `${service.url}/posts/5`;
      fake.setMode("fail");
      for (let i = 0; i < 2; i++) {
        const failed = await get(url);
        assert.equal(failed.status, 502);
        assert.match(JSON.parse(failed.body.toString()).error, /^upstream answered 500/);
        assert.notEqual(failed.headers.get("cache-status"), MISS_STORED);
      }
      assert.equal(fake.calls(), 2, "each failed request reached the upstream");

      fake.setMode("ok");
      const recovered = await get(url);
      assert.equal(recovered.status, 200);
      assert.equal(recovered.headers.get("cache-status"), MISS_STORED);
      assert.equal(JSON.parse(recovered.body.toString()).id, 5);
      assert.equal(fake.calls(), 3, "the request after recovery went to the upstream");

      await untilHit(url);
      assert.equal(fake.calls(), 3);
    });

    it("a timed-out upstream is a 504 and is not cached", async () => {
      // A service of its own, with a short UPSTREAM_TIMEOUT, on the same store.
      const impatient = await startService({
        UPSTREAM_URL: fake.url,
        CACHE_STORE: store,
        REDIS_URL: redis?.url,
        UPSTREAM_TIMEOUT: "0.5",
      });
      try {
        const url = `${impatient.url}/posts/6`;
        fake.setMode("hang");
        const timedOut = await get(url);
        assert.equal(timedOut.status, 504);
        assert.match(JSON.parse(timedOut.body.toString()).error, /did not answer within 500 ms/);

        fake.setMode("ok");
        const recovered = await get(url);
        assert.equal(recovered.status, 200);
        assert.equal(recovered.headers.get("cache-status"), MISS_STORED);
        assert.equal(fake.calls(), 2);
      } finally {
        assert.equal(await impatient.stop(), 0);
      }
    });

    it("an upstream 404 is a 404 and is not cached", async () => {
      const missing = `${service.url}/posts/404`;
      for (let i = 0; i < 2; i++) {
        const response = await get(missing);
        assert.equal(response.status, 404);
        assert.equal(response.headers.get("cache-control"), "no-store");
      }
      assert.equal(fake.calls(), 2);
    });
  });
}

describe("demo service start-up and failure handling", { timeout: 60_000 }, () => {
  let fake: FakeUpstream;
  before(async () => {
    fake = await startFakeUpstream({ latencyMs: 0 });
  });
  after(() => fake.close());

  for (const [variable, value] of [
    ["CACHE_TTL", "forever"],
    ["CACHE_TTL", "-5"],
    ["REDIS_URL", "localhost:6379"],
    ["REDIS_URL", "http://127.0.0.1:6379"],
  ] as const) {
    it(`a malformed ${variable} (${value}) stops start-up with a message naming it`, async () => {
      const result = await runServiceToExit({ UPSTREAM_URL: fake.url, [variable]: value });
      assert.notEqual(result.code, 0);
      assert.equal(result.stdout, "", "nothing is logged as if it had started");
      assert.match(result.stderr, new RegExp(`^cachet demo: invalid configuration: ${variable}: `));
      assert.ok(result.stderr.includes(JSON.stringify(value)), result.stderr);
      assert.doesNotMatch(result.stderr, /\n\s+at /, "no stack trace");
      assert.equal(result.stderr.trim().split("\n").length, 1, result.stderr);
    });
  }

  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    it(`${signal} closes gracefully: an in-flight request completes, then exit 0`, async () => {
      const service = await startService({ UPSTREAM_URL: fake.url, CACHE_STORE: "memory" });
      fake.setLatency(300);
      try {
        const inFlight = get(`${service.url}/posts/9`);
        await waitFor(() => fake.calls() > 0, "the request to reach the upstream");
        service.process.kill(signal);
        const response = await inFlight;
        assert.equal(response.status, 200);
        assert.equal(JSON.parse(response.body.toString()).id, 9);
        assert.equal(await service.exited(), 0);
        assert.ok(logRecords(service).some((r) => String(r.msg).startsWith(`${signal}: closing`)));
      } finally {
        fake.setLatency(0);
        fake.reset();
        await service.stop();
      }
    });
  }

  for (const store of ["redis", "tiered"] as const) {
    it(`an unreachable Redis is reported but does not stop the service (CACHE_STORE=${store})`, async () => {
      const port = await freePort(); // nothing listens there
      const service = await startService({
        UPSTREAM_URL: fake.url,
        REDIS_URL: `redis://127.0.0.1:${port}`,
        CACHE_STORE: store,
      });
      try {
        fake.reset();
        await waitFor(
          () =>
            logRecords(service).some((r) =>
              /^cachet: redis store unavailable \(/.test(String(r.msg)),
            ),
          "a log line reporting the unreachable Redis",
        );
        for (let i = 0; i < 3; i++) {
          const response = await get(`${service.url}/posts/1`);
          assert.equal(response.status, 200);
          assert.equal(JSON.parse(response.body.toString()).id, 1);
        }
        if (store === "redis") {
          assert.equal(fake.calls(), 3, "without a store, every request goes to the upstream");
        } else {
          assert.equal(fake.calls(), 1, "the in-process tier still caches");
        }
        const health = await get(`${service.url}/health`);
        assert.equal(health.status, 200);
        const cache = JSON.parse(health.body.toString()).cache;
        assert.equal(cache.store, store);
        assert.equal(cache.state, "degraded");
        assert.notEqual(cache.connection, "ready");
        assert.notEqual(cache.redis, "up");
        if (store === "tiered") assert.equal(cache.bus.state, "down");
      } finally {
        assert.equal(await service.stop(), 0);
      }
    });
  }

  it("Redis going away and coming back: requests keep succeeding, caching resumes", async () => {
    const redis = await startRedis();
    let service: Child | undefined;
    try {
      // Redis only: with an in-process tier in front, hits would not show that Redis is back
      // (test/resilience/ covers the tiered store).
      service = await startService({
        UPSTREAM_URL: fake.url,
        REDIS_URL: redis.url,
        CACHE_STORE: "redis",
      });
      fake.reset();
      const url = `${service.url}/posts/2`;
      assert.equal((await get(url)).status, 200);
      await untilHit(url);
      assert.equal(fake.calls(), 1);

      await redis.kill();
      for (let i = 0; i < 5; i++) assert.equal((await get(url)).status, 200);

      await redis.start(); // empty: the server keeps no data across restarts here
      await waitFor(
        async () => HIT.test((await get(url)).headers.get("cache-status") ?? ""),
        "caching to resume after Redis restarts",
        15_000,
        100,
      );
      const health = JSON.parse((await get(`${service.url}/health`)).body.toString());
      assert.equal(health.cache.connection, "ready");
    } finally {
      // Stop Redis even when the service failed to start: its process would hold the run open.
      try {
        if (service) assert.equal(await service.stop(), 0);
      } finally {
        await redis.stop();
      }
    }
  });
});
