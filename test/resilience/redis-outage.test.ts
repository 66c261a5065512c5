/**
 * Redis down and Redis paused, for real: a redis-server killed (SIGKILL) or frozen (SIGSTOP)
 * under a running demo service (`node demo/dist/server.js`, tiered store: memory in front of
 * Redis). The cache must never fail a request because of Redis, must never make a request wait
 * on a dead Redis longer than its store timeout, and must recover by itself.
 */
import assert from "node:assert/strict";
import { after, afterEach, before, describe, it } from "node:test";
import type { Child } from "../../demo/child.js";
import { type FakeUpstream, startFakeUpstream } from "../../demo/fake-upstream.js";
import { startService } from "../demo/helpers.js";
import { cacheHealth, redisCli, stopAll, timed, untilHit } from "../helpers/fleet.js";
import { waitFor } from "../helpers/ports.js";
import { prioritizeRedis } from "../helpers/priority.js";
import { type RedisServer, startRedis } from "../helpers/redis.js";

/**
 * The store timeout of the paused-Redis test (`CACHE_STORE_TIMEOUT`; 50 ms by default): long
 * enough that waiting on Redis once or twice is told apart on a loaded machine.
 */
const STORE_TIMEOUT_MS = 400;

interface Outcome {
  readonly url: string;
  readonly sentAt: number;
  readonly ms: number;
  readonly status: number | undefined;
  readonly error?: string;
}

/**
 * A bounded load: `workers` clients, each sending one request after the other, until stopped.
 * Every outcome is kept, failures included.
 */
function load(base: string, workers: number, path: (n: number) => string) {
  const outcomes: Outcome[] = [];
  let running = true;
  let n = 0;
  const worker = async () => {
    while (running) {
      const url = `${base}${path(n++)}`;
      const sentAt = performance.now();
      try {
        const response = await timed(url, {}, 10_000);
        outcomes.push({ url, sentAt, ms: response.ms, status: response.status });
      } catch (error) {
        outcomes.push({
          url,
          sentAt,
          ms: performance.now() - sentAt,
          status: undefined,
          error: (error as Error).message,
        });
      }
    }
  };
  const done = Promise.all(Array.from({ length: workers }, worker));
  return {
    outcomes,
    since: (t: number) => outcomes.filter((o) => o.sentAt >= t),
    async stop() {
      running = false;
      await done;
    },
  };
}

function failures(outcomes: readonly Outcome[]): string[] {
  return outcomes
    .filter((o) => o.status !== 200)
    .map((o) => `${o.url}: ${o.status ?? o.error}`)
    .slice(0, 10);
}

/** Cached HTTP responses in Redis right now (the test's own scan, not the service's). */
/** The stored responses' keys (not their compressed bodies, entries of their own: variantKey). */
async function storedResponses(redis: RedisServer): Promise<string[]> {
  const out = await redisCli(redis.port, "--scan", "--pattern", "cachet:@http:*");
  return out === "" ? [] : out.split("\n").filter((key) => !/ ~(br|gzip)$/.test(key));
}

describe("Redis fails under a running demo (tiered store)", { timeout: 60_000 }, () => {
  let fake: FakeUpstream;
  let redis: RedisServer | undefined;
  let service: Child | undefined;

  before(async () => {
    fake = await startFakeUpstream({ latencyMs: 5 });
  });
  after(() => fake?.close());
  afterEach(async () => {
    try {
      await stopAll([service]);
    } finally {
      redis?.resume();
      await redis?.stop();
      service = undefined;
      redis = undefined;
    }
  });

  it("killed during a bounded load: zero failed responses; restarted on the same port, writes reach it again within seconds, no restart of the service", async () => {
    redis = await startRedis();
    service = await startService({
      UPSTREAM_URL: fake.url,
      REDIS_URL: redis.url,
      CACHE_TTL: "60",
    });
    const pid = service.process.pid;
    fake.reset();
    fake.setLatency(5);
    // Three requests in four are posts (hits after the first round), one in four a list never
    // asked before (a miss: the upstream answers and the cache writes to Redis).
    const traffic = load(service.url, 8, (n) =>
      n % 4 === 0 ? `/posts?userId=${10_000 + n}` : `/posts/${1 + (n % 100)}`,
    );
    try {
      await waitFor(
        async () => traffic.outcomes.length >= 200 && (await storedResponses(redis!)).length > 0,
        "the load to run and its responses to reach Redis",
      );

      await redis.kill();
      const killedAt = performance.now();
      await waitFor(
        async () =>
          traffic.since(killedAt).length >= 400 && (await cacheHealth(service!)).redis !== "up",
        "400 requests and /health reporting Redis down",
        15_000,
      );
      const down = await cacheHealth(service);
      assert.equal(down.state, "degraded");
      assert.ok(down.redis === "down" || down.redis === "breaker-open", JSON.stringify(down));
      assert.equal(down.bus?.state, "down", "the bus knows its subscription is gone");

      await redis.start(); // same port, empty
      const restartedAt = performance.now();
      await waitFor(
        async () => (await storedResponses(redis!)).length > 0,
        "the service's writes to reach the restarted Redis",
        15_000,
        50,
      );
      const recoveredMs = performance.now() - restartedAt;
      // The store reconnects with a backoff capped at 2 s; the breaker probes every second.
      assert.ok(
        recoveredMs < 5_000,
        `writes reached Redis ${recoveredMs.toFixed(0)} ms after restart`,
      );

      await waitFor(
        async () => {
          const health = await cacheHealth(service!);
          return health.state === "ok" && health.bus?.state === "up";
        },
        "/health to report Redis and the bus up again",
        10_000,
      );
      const up = await cacheHealth(service);
      assert.equal(up.redis, "up");
      assert.ok((up.bus?.resets ?? 0) >= 1, "the resubscription dropped the in-process tier");
    } finally {
      await traffic.stop();
    }
    const outcomes = traffic.outcomes;
    assert.deepEqual(failures(outcomes), [], "every request answered 200");
    assert.ok(outcomes.length >= 600, `${outcomes.length} requests`);
    assert.equal(service.process.pid, pid);
    assert.equal(service.process.exitCode, null, "the service never restarted");
  });

  it("paused (SIGSTOP): every request answers within the store timeout plus the origin's time; resumed, caching resumes", async (t) => {
    const ORIGIN_MS = 100;
    redis = await startRedis();
    service = await startService({
      UPSTREAM_URL: fake.url,
      REDIS_URL: redis.url,
      CACHE_TTL: "60",
      CACHE_STORE_TIMEOUT: `${STORE_TIMEOUT_MS}ms`,
    });
    fake.reset();
    fake.setLatency(ORIGIN_MS);
    await untilHit(`${service.url}/posts/1`);

    redis.pause();
    const pausedAt = performance.now();
    // Misses (new lists: the origin must answer) and hits (a post held in process), from
    // concurrent clients, for a little over a second of pause.
    const traffic = load(service.url, 4, (n) =>
      n % 2 === 0 ? `/posts?userId=${20_000 + n}` : "/posts/1",
    );
    try {
      await waitFor(
        () => traffic.outcomes.length >= 40 && performance.now() - pausedAt >= 1_200,
        "requests while Redis is paused",
        15_000,
      );
      const health = await timed(`${service.url}/health`);
      assert.equal(health.status, 200, "/health answers while Redis is frozen");
    } finally {
      await traffic.stop();
      redis.resume();
    }
    const outcomes = traffic.outcomes;
    assert.deepEqual(failures(outcomes), [], "every request answered 200");
    const slowest = Math.max(...outcomes.map((o) => o.ms));
    const worst = [...outcomes].sort((a, b) => b.ms - a.ms).slice(0, 5);
    // The bound the failure model promises (a request waits on Redis once, at most the store
    // timeout, then on the origin), plus room for the machine running four clients, the fake
    // upstream and the service on two cores; less than a second wait on Redis would take.
    const bound = STORE_TIMEOUT_MS + ORIGIN_MS + 200;
    assert.ok(
      slowest <= bound,
      `slowest ${slowest.toFixed(0)} ms > ${bound} ms: ${worst.map((o) => `${o.url} ${o.ms.toFixed(0)}`).join(", ")}`,
    );
    t.diagnostic(
      `paused: ${outcomes.length} requests, slowest ${slowest.toFixed(0)} ms; ${worst.map((o) => `${o.url.replace(service!.url, "")} ${o.ms.toFixed(0)}`).join(", ")}`,
    );

    // Thawed: new responses reach Redis again (each time a list never asked before, since a
    // list asked once is then held in process).
    let next = 30_000;
    await waitFor(
      async () => {
        const userId = next++;
        await timed(`${service!.url}/posts?userId=${userId}`);
        const key = `cachet:@http:/posts?userId=${userId}`;
        return (await redisCli(redis!.port, "EXISTS", key)) === "1";
      },
      "caching to resume after Redis is thawed",
      10_000,
      100,
    );
  });
});

/** The sum of a Prometheus counter's series whose line matches `pattern`, from `/metrics`. */
async function counter(service: Child, pattern: RegExp): Promise<number> {
  const text = (await timed(`${service.url}/metrics`)).body.toString();
  let total = 0;
  for (const line of text.split("\n")) {
    if (pattern.test(line)) total += Number(line.slice(line.lastIndexOf(" ") + 1));
  }
  return total;
}

describe("a burst of fills is not a Redis outage (demo, tiered store)", {
  timeout: 120_000,
}, () => {
  let fake: FakeUpstream | undefined;
  let redis: RedisServer | undefined;
  let service: Child | undefined;
  after(async () => {
    try {
      await stopAll([service]);
    } finally {
      await fake?.close();
      await redis?.stop();
    }
  });

  it("50 keep-alive clients fill 1,000 lists of 27 KB (origin at 100 ms, 50 ms store timeout): no store timeout, the breaker never opens, every response in Redis", async (t) => {
    fake = await startFakeUpstream({ latencyMs: 100 });
    redis = await startRedis();
    // This test is about the demo's own burst; see prioritizeRedis.
    await prioritizeRedis(redis.port);
    // The demo's defaults: CACHE_STORE_TIMEOUT 50 ms, the breaker after 5 failures, the lease on.
    service = await startService({ UPSTREAM_URL: fake.url, REDIS_URL: redis.url });
    const KEYS = 1_000;
    let next = 0;
    const statuses = new Map<number, number>();
    const began = performance.now();
    await Promise.all(
      Array.from({ length: 50 }, async () => {
        while (next < KEYS) {
          const response = await timed(`${service!.url}/posts?_k=${next++}`, {}, 30_000);
          statuses.set(response.status, (statuses.get(response.status) ?? 0) + 1);
        }
      }),
    );
    const wallMs = performance.now() - began;
    assert.deepEqual([...statuses], [[200, KEYS]], "every request answered 200");
    const errors = await counter(service, /^cachet_errors_total\{/);
    const opened = await counter(service, /^cachet_breaker_transitions_total\{.*state="open"/);
    const stored = (await storedResponses(redis)).filter((key) => key.includes("_k=")).length;
    t.diagnostic(
      `${KEYS} fills in ${wallMs.toFixed(0)} ms: ${errors} store errors, breaker opened ${opened} times, ${stored} responses in Redis`,
    );
    const logged = service
      .output()
      .filter((line) => /store unavailable|circuit open|timed out/.test(line));
    assert.deepEqual(logged, [], "no outage logged");
    assert.equal(errors, 0, "no store call failed");
    assert.equal(opened, 0, "the breaker never opened");
    assert.equal(stored, KEYS, "every response reached Redis");
  });
});
