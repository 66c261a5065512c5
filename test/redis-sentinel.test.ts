import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { after, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { createSentinel } from "redis";
import { type Cache, createCache } from "../src/index.js";
import { redisStore } from "../src/stores/redis.js";
import { type StoreEndpoint, storeContract } from "../src/testing/store-contract.js";
import { waitFor } from "./helpers/ports.js";
import { type RedisSentinelSetup, startRedisSentinel } from "./helpers/redis-sentinel.js";

/**
 * The Redis store behind Redis Sentinel (a master, a replica, three sentinels): the store
 * contract through every way of configuring it, and a failover of the master under load.
 */

const CAPABILITIES = [
  "getMany",
  "setMany",
  "deleteMany",
  "setIfAbsent",
  "deleteIfEquals",
  "extendIfEquals",
  "extendManyIfEquals",
  "takeLease",
  "publish",
  "subscribe",
  "disconnect",
] as const;

let started: Promise<RedisSentinelSetup> | undefined;
const sentinel = () => {
  started ??= startRedisSentinel({ replicas: 1, sentinels: 3 });
  return started;
};
after(async () => {
  if (started) await (await started).stop();
});

const run = randomUUID().slice(0, 8);

/** The store pointed at `endpoint` as its only sentinel, for the server-down tests. */
const sentinelAt = ({ host, port }: StoreEndpoint) =>
  redisStore({
    sentinel: { name: "cachet-master", sentinelRootNodes: [{ host, port }] },
    connectTimeout: 500,
    commandTimeout: 500,
  });

storeContract(
  "redis sentinel (sentinel option)",
  async () => {
    const { name, sentinelRootNodes } = await sentinel();
    return { store: redisStore({ sentinel: { name, sentinelRootNodes } }) };
  },
  { capabilities: CAPABILITIES, storeAt: sentinelAt, downTimeout: 2_000 },
);

storeContract(
  "redis sentinel (redis+sentinel:// URL, empty prefix)",
  async () => {
    const { url } = await sentinel();
    return { store: redisStore({ url, prefix: "" }) };
  },
  { capabilities: CAPABILITIES },
);

storeContract(
  "redis sentinel (a caller's node-redis createSentinel() client)",
  async () => {
    const { name, sentinelRootNodes } = await sentinel();
    const client = createSentinel({ name, sentinelRootNodes });
    client.on("error", () => {});
    return { store: redisStore({ client }), teardown: () => client.close() };
  },
  { capabilities: CAPABILITIES },
);

/** Connect a cache's store and start its bus (both happen on first use), and wait for both. */
async function warmUp(cache: Cache): Promise<void> {
  await cache.get(`warm-up:${run}`);
  await waitFor(
    () => {
      const health = cache.health();
      return health.l2?.connection === "ready" && health.bus?.state === "up";
    },
    "the cache to be connected, its bus up",
    10_000,
  );
}

/** Run test/fixtures/redis-store-exit.ts on `url`: it uses a store, disconnects, and must exit by itself. */
function runExitFixture(url: string, ms: number): Promise<{ code: number | null; output: string }> {
  const fixture = fileURLToPath(new URL("./fixtures/redis-store-exit.ts", import.meta.url));
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["--import", "tsx", fixture, url], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    let output = "";
    child.stdout.on("data", (d) => {
      output += d;
    });
    child.stderr.on("data", (d) => {
      output += d;
    });
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`the process did not exit within ${ms} ms after disconnect(): ${output}`));
    }, ms);
    child.on("exit", (code) => {
      clearTimeout(timer);
      resolve({ code, output });
    });
  });
}

describe("redis sentinel: clients", () => {
  it("reports its topology, and leaves a caller's Sentinel client open on disconnect()", async () => {
    const { name, sentinelRootNodes, url } = await sentinel();
    const own = redisStore({ url });
    assert.equal(own.topology, "sentinel");
    await own.disconnect();
    const client = createSentinel({ name, sentinelRootNodes });
    client.on("error", () => {});
    const store = redisStore({ client });
    assert.equal(store.topology, "sentinel");
    try {
      await store.set(`t:${run}:caller`, Buffer.from("v"), 60_000);
      assert.equal(store.status, "ready");
      await store.disconnect();
      assert.equal(store.status, "closed");
      assert.ok(client.isReady, "the caller's client was closed");
      assert.equal(String(await client.get(`cachet:t:${run}:caller`)), "v");
    } finally {
      await client.close();
    }
  });
});

describe("redis sentinel: nothing left running", () => {
  it("a process that used a sentinel store exits by itself after disconnect()", async () => {
    const { url } = await sentinel();
    const { code, output } = await runExitFixture(url, 10_000);
    assert.equal(code, 0, output);
    assert.deepEqual(JSON.parse(output.trim().split("\n").pop()!), {
      outcome: "round-trip",
      status: "ready",
      after: "closed",
    });
  });
});

describe("redis sentinel: the master fails over", () => {
  it("requests keep answering while the master is down; after the failover the cache is used again and the bus carries on", async () => {
    const s = await sentinel();
    const make = () =>
      createCache({
        store: redisStore({ url: s.url }),
        l1: true,
        lease: true,
        l1MaxTtl: 60_000,
      });
    const a = make();
    const b = make();
    const caches: Cache[] = [a, b];
    try {
      // Long-lived instances: connected (the first connection takes longer than the guard's
      // 50 ms, so a new instance's very first calls fail open), buses up.
      await Promise.all(caches.map(warmUp));
      const keys = Array.from({ length: 8 }, (_, i) => `fo:${run}:k${i}`);
      for (const key of keys) await a.getOrSet(key, () => `${key}=before`);
      const master = await s.master();
      await master.kill();
      const killedAt = Date.now();
      let answered = 0;
      let slowest = 0;
      const failures: unknown[] = [];
      let stop = false;
      const load = (async () => {
        for (let round = 0; !stop; round++) {
          await Promise.all(
            keys.map(async (key, i) => {
              const started = performance.now();
              try {
                const value = await caches[(round + i) % 2]!.getOrSet(
                  `${key}:r${round}`,
                  () => `${key}:r${round}=fresh`,
                );
                assert.equal(value, `${key}:r${round}=fresh`);
                answered++;
              } catch (error) {
                failures.push(error);
              }
              slowest = Math.max(slowest, performance.now() - started);
            }),
          );
          await new Promise((resolve) => setTimeout(resolve, 20));
        }
      })();
      let failedOverAfter = 0;
      let recoveredAfter = 0;
      try {
        await s.waitForFailover(master, 20_000);
        failedOverAfter = Date.now() - killedAt;
        let attempt = 0;
        await waitFor(
          async () => {
            const key = `fo:${run}:after:${attempt++}`;
            await a.getOrSet(key, () => "written by a");
            const seen = await b.getOrSet(key, () => "b had to compute it");
            recoveredAfter = Date.now() - killedAt;
            return seen === "written by a";
          },
          "the new master to serve the cache",
          20_000,
          100,
        );
      } finally {
        stop = true;
        await load;
      }
      assert.deepEqual(failures, [], "requests failed during the failover");
      assert.ok(answered >= keys.length * 10, `answered ${answered}`);
      assert.ok(slowest < 1_000, `a request took ${Math.round(slowest)} ms`);
      const key = `fo:${run}:bus`;
      // b reads a's value (and keeps it in its in-process tier)…
      await waitFor(
        async () => {
          await a.set(key, "v1");
          return (await b.get(key)) === "v1";
        },
        "b to read a's value from Redis",
        10_000,
        100,
      );
      // …and only the bus can tell it about the next write.
      await waitFor(
        async () => {
          await a.set(key, "v2");
          return (await b.get(key)) === "v2";
        },
        "b to see a's write through the bus after the failover",
        10_000,
        100,
      );
      console.log(
        `sentinel failover: promoted after ${failedOverAfter} ms, cache used again after ${recoveredAfter} ms, ${answered} requests answered, slowest ${Math.round(slowest)} ms`,
      );
    } finally {
      await Promise.all(caches.map((x) => x.close()));
    }
  });
});
