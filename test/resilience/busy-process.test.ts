/**
 * A busy process is not a Redis outage: a real redis-server on a free port, the default 50 ms
 * store timeout, and this process made busy on purpose (CPU work that blocks the event loop,
 * many concurrent large writes). Nothing may time out, the breaker may not open, and every
 * entry must reach Redis; while a Redis that really stops answering (SIGSTOP) or dies
 * (SIGKILL) is still caught within the store timeout.
 */
import assert from "node:assert/strict";
import { monitorEventLoopDelay } from "node:perf_hooks";
import { after, afterEach, before, describe, it } from "node:test";
import { gzipSync } from "node:zlib";
import { MAX_WINDOWS } from "../../src/guard.js";
import { type Cache, createCache } from "../../src/index.js";
import { redisStore } from "../../src/stores/redis.js";
import { waitFor } from "../helpers/ports.js";
import { prioritizeRedis } from "../helpers/priority.js";
import { type RedisServer, startRedis } from "../helpers/redis.js";
import { command } from "../helpers/redis-process.js";

const STORE_TIMEOUT = 50;
/** How long the background load blocks the event loop at each turn. */
const BLOCK_MS = 40;

let redis: RedisServer;
const open: Cache[] = [];

before(async () => {
  redis = await startRedis();
  await prioritizeRedis(redis.port);
});
after(async () => {
  await Promise.all(open.splice(0).map((c) => c.close()));
  redis.resume();
  await redis.stop();
});
afterEach(async () => {
  await Promise.all(open.splice(0).map((c) => c.close()));
  redis.resume();
  await command(redis.port, "FLUSHALL");
});

/** Block the event loop for `ms` (CPU work in this process, as encoding and compressing is). */
function spin(ms: number): void {
  const end = performance.now() + ms;
  while (performance.now() < end) {
    // busy
  }
}

/**
 * Let the client write (node-redis writes in a `setImmediate`), and go on in the same check
 * phase: no poll phase in between, so the reply cannot have been read yet.
 */
async function afterWrite(): Promise<void> {
  await new Promise<void>((resolve) => setImmediate(resolve));
}

/** Two turns of the loop. */
async function nextTurn(): Promise<void> {
  for (let i = 0; i < 2; i++) await new Promise<void>((resolve) => setImmediate(resolve));
}

/** Block the loop for `BLOCK_MS` at every turn until stopped; the loop delay it caused. */
function busyLoop() {
  const delay = monitorEventLoopDelay({ resolution: 5 });
  delay.enable();
  let running = true;
  const turn = () => {
    if (!running) return;
    spin(BLOCK_MS);
    setImmediate(turn);
  };
  setImmediate(turn);
  return {
    stop() {
      running = false;
      delay.disable();
      return { maxMs: delay.max / 1e6, p50Ms: delay.percentile(50) / 1e6 };
    },
  };
}

/** A cache like the demo's tiered one, its errors and breaker changes recorded. */
async function tiered(options: { breakerThreshold?: number } = {}) {
  const cache = createCache({
    store: redisStore({ url: redis.url }),
    l1: true,
    storeTimeout: STORE_TIMEOUT,
    ...options,
  });
  open.push(cache);
  const errors: Array<{ operation: string; message: string; at: number }> = [];
  const breaker: string[] = [];
  cache.on("error", ({ operation, error }) =>
    errors.push({
      operation,
      message: error instanceof Error ? error.message : String(error),
      at: performance.now(),
    }),
  );
  cache.on("breaker", ({ state }) => breaker.push(state));
  await waitFor(
    async () => {
      await cache.get("warm-up");
      return cache.health().l2?.connection === "ready";
    },
    "the cache to be connected",
    10_000,
  );
  return { cache, errors, breaker };
}

/** A body like the demo's `/posts` (27 KB of JSON). */
function postsBody(n: number): string {
  const posts = Array.from({ length: 100 }, (_, i) => ({
    userId: 1 + Math.floor(i / 10),
    id: i + 1,
    title: `post ${i} of fill ${n} lorem ipsum dolor sit amet`,
    body: `consectetur adipiscing elit sed do eiusmod tempor incididunt ut labore et dolore ${n}\n`.repeat(
      2,
    ),
  }));
  return JSON.stringify(posts, null, 2);
}

/** Fill `keys` distinct keys from `clients` concurrent callers; each fill does CPU work. */
async function fill(cache: Cache, keys: number, clients: number, prefix: string) {
  let next = 0;
  const worker = async () => {
    while (next < keys) {
      const n = next++;
      await cache.getOrSet(
        `${prefix}:${n}`,
        async () => {
          await new Promise((resolve) => setTimeout(resolve, 5)); // the origin
          const body = postsBody(n);
          gzipSync(body); // compressing, as the HTTP cache does for large bodies
          return { body };
        },
        { ttl: "10m", lease: true },
      );
    }
  };
  await Promise.all(Array.from({ length: clients }, worker));
}

async function storedKeys(pattern: string): Promise<number> {
  let cursor = "0";
  let count = 0;
  do {
    const [next, keys] = (await command(
      redis.port,
      "SCAN",
      cursor,
      "MATCH",
      pattern,
      "COUNT",
      "1000",
    )) as [string, string[]];
    cursor = next;
    count += keys.length;
  } while (cursor !== "0");
  return count;
}

describe("a busy process is not a Redis outage (real Redis, 50 ms store timeout)", {
  timeout: 120_000,
}, () => {
  it("a reply that arrived while the loop was blocked past the timeout is an answer", async () => {
    const { cache, errors, breaker } = await tiered({ breakerThreshold: 1 });
    for (let i = 0; i < 5; i++) {
      const read = cache.get<string>(`absent:${i}`);
      await afterWrite(); // the GET is on the wire; Redis answers within a millisecond
      spin(3 * STORE_TIMEOUT); // and this process does not look for 150 ms
      assert.equal(await read, undefined);
    }
    assert.deepEqual(errors, [], "no call was taken for a failure");
    assert.deepEqual(breaker, []);
  });

  it("the Redis store's own commandTimeout does not fire on a reply waiting unread", async () => {
    const store = redisStore({ url: redis.url, commandTimeout: 100 });
    try {
      // Connected first: on a loaded machine, connecting alone can take longer than 100 ms.
      await waitFor(
        () =>
          store.set("direct", Buffer.from("v"), 60_000).then(
            () => true,
            () => false,
          ),
        "the store to connect and write",
        10_000,
      );
      const read = store.get("direct");
      await afterWrite();
      spin(250);
      assert.deepEqual(await read, Buffer.from("v"));
    } finally {
      await store.disconnect();
    }
  });

  it("50 concurrent fillers write 1,000 entries of 27 KB on a blocked loop: no timeout, the breaker closed, every entry in Redis", async (t) => {
    const { cache, errors, breaker } = await tiered();
    const load = busyLoop();
    const began = performance.now();
    try {
      await fill(cache, 1_000, 50, "burst");
    } finally {
      const delay = load.stop();
      t.diagnostic(
        `1,000 fills in ${(performance.now() - began).toFixed(0)} ms; loop delay p50 ${delay.p50Ms.toFixed(0)} ms, max ${delay.maxMs.toFixed(0)} ms; ${errors.length} errors`,
      );
      assert.ok(delay.maxMs >= BLOCK_MS, `the loop was blocked (max delay ${delay.maxMs} ms)`);
    }
    assert.deepEqual(
      errors.slice(0, 5).map((e) => `${e.operation}: ${e.message}`),
      [],
      `${errors.length} store calls failed`,
    );
    assert.deepEqual(breaker, [], "the breaker never left closed");
    assert.equal(cache.storeState, "closed");
    assert.equal(await storedKeys("cachet:burst:*"), 1_000, "every entry reached Redis");
  });

  it("under the same load, a frozen Redis (SIGSTOP) is caught within two windows of silence, and every read answers", async () => {
    const { cache, errors } = await tiered();
    await fill(cache, 50, 10, "before");
    const load = busyLoop();
    const outcomes: number[] = [];
    let pausedAt = 0;
    try {
      await nextTurn();
      await nextTurn();
      redis.pause();
      pausedAt = performance.now();
      await Promise.all(
        Array.from({ length: 10 }, async (_, i) => {
          const began = performance.now();
          await cache.get(`frozen:${i}`);
          outcomes.push(performance.now() - began);
        }),
      );
    } finally {
      load.stop();
      redis.resume();
    }
    const since = errors.filter((e) => e.at >= pausedAt);
    assert.ok(since.length > 0, "the freeze was noticed");
    // What the guard allowed the silent store: one window, and one more because its timers
    // fired late on this blocked loop; never the 1 s it gives a store still answering.
    for (const { message } of since) {
      const waited = /timed out after (\d+) ms/.exec(message);
      if (!waited) {
        assert.match(message, /not answering/);
        continue;
      }
      assert.ok(Number(waited[1]) <= 2 * STORE_TIMEOUT, message);
    }
    // And what a read waited in all: those windows plus the turns of this loop (each blocked
    // for BLOCK_MS, longer on a loaded machine) before the call went out, between the windows
    // and before the verdict; well under the 1 s (MAX_WINDOWS) a store still answering gets.
    const bound = 0.7 * MAX_WINDOWS * STORE_TIMEOUT;
    const slowest = Math.max(...outcomes);
    assert.equal(outcomes.length, 10);
    assert.ok(slowest <= bound, `a read waited ${slowest.toFixed(0)} ms > ${bound} ms`);
  });

  it("a killed Redis is caught at once, under the same load", async () => {
    const { cache, errors } = await tiered();
    const load = busyLoop();
    let killedAt = 0;
    const waits: number[] = [];
    try {
      await fill(cache, 100, 10, "warm");
      killedAt = performance.now();
      await redis.kill();
      for (let i = 0; i < 5; i++) {
        const began = performance.now();
        await cache.get(`dead:${i}`);
        waits.push(performance.now() - began);
      }
    } finally {
      load.stop();
      await redis.start();
    }
    const first = errors.find((e) => e.at >= killedAt);
    assert.ok(first, "the outage was noticed");
    assert.ok(
      Math.max(...waits) < STORE_TIMEOUT + 2 * BLOCK_MS,
      `reads waited ${waits.map((w) => w.toFixed(0)).join(", ")} ms`,
    );
  });
});
