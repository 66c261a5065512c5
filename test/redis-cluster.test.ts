import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { after, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { Cluster as IoRedisCluster } from "ioredis";
import { createCluster } from "redis";
import { type Cache, createCache } from "../src/index.js";
import { keySlot, RedisStore, redisStore } from "../src/stores/redis.js";
import { type StoreEndpoint, storeContract } from "../src/testing/store-contract.js";
import { waitFor } from "./helpers/ports.js";
import { type RedisCluster, startRedisCluster } from "./helpers/redis-cluster.js";

/**
 * The Redis store on a real 3-master Redis Cluster (each master with a replica, for the
 * failover test at the end of the file): the store contract through every way of configuring
 * it (node-redis cluster options, a redis+cluster:// URL, a caller's node-redis cluster client,
 * a caller's ioredis Cluster), slot safety, a slot migrated under load and a master failover.
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

// One cluster for the file, started on first use; every test that needs it fails (never
// skips) when it cannot start.
let started: Promise<RedisCluster> | undefined;
const cluster = () => {
  started ??= startRedisCluster({ masters: 3, replicas: 1 });
  return started;
};
after(async () => {
  if (started) await (await started).stop();
});

const run = randomUUID().slice(0, 8);

/** The store pointed at `endpoint` for the contract's server-down tests (short timeouts). */
const clusterAt = ({ host, port }: StoreEndpoint) =>
  redisStore({
    cluster: { rootNodes: [{ socket: { host, port } }] },
    connectTimeout: 500,
    commandTimeout: 500,
  });

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

describe("keySlot", () => {
  it("agrees with CLUSTER KEYSLOT, hash tags, empty tags and UTF-8 included", async () => {
    const c = await cluster();
    const keys = [
      "",
      "foo",
      "cachet:user:1",
      "cachet:__cachet:tag:posts",
      "{user1000}.following",
      "foo{}{bar}",
      "foo{{bar}}zap",
      "foo{bar}{zap}",
      "{}",
      "a{",
      "}{a}",
      "ключ {тег} ключ",
      "🔑{🔑}",
      "tab\tand\nnewline",
      "x".repeat(600),
    ];
    for (const key of keys) {
      assert.equal(keySlot(key), await c.keySlot(key), `slot of ${JSON.stringify(key)}`);
    }
  });
});

storeContract(
  "redis cluster (cluster option)",
  async () => {
    const { rootNodes } = await cluster();
    return { store: redisStore({ cluster: { rootNodes } }) };
  },
  { capabilities: CAPABILITIES, storeAt: clusterAt, downTimeout: 2_000 },
);

storeContract(
  "redis cluster (redis+cluster:// URL, empty prefix, RESP3)",
  async () => {
    const { url } = await cluster();
    return { store: redisStore({ url, prefix: "", clientOptions: { RESP: 3 } }) };
  },
  { capabilities: CAPABILITIES },
);

storeContract(
  "redis cluster (a caller's node-redis createCluster() client)",
  async () => {
    const { rootNodes } = await cluster();
    const client = createCluster({ rootNodes });
    client.on("error", () => {});
    return { store: redisStore({ client }), teardown: () => client.close() };
  },
  { capabilities: CAPABILITIES },
);

storeContract(
  "redis cluster (a caller's ioredis Cluster)",
  async () => {
    const { nodes } = await cluster();
    const client = new IoRedisCluster(
      nodes.slice(0, 3).map((n) => ({ host: "127.0.0.1", port: n.port })),
    );
    client.on("error", () => {});
    return {
      store: redisStore({ client }),
      teardown: async () => {
        await client.quit();
      },
    };
  },
  { capabilities: CAPABILITIES },
);

describe("redis cluster: clients and slots", () => {
  it("reports its topology, and leaves a caller's cluster client open on disconnect()", async () => {
    const { rootNodes, url } = await cluster();
    const own = redisStore({ url });
    assert.equal(own.topology, "cluster");
    await own.disconnect();
    const client = createCluster({ rootNodes });
    client.on("error", () => {});
    const store = redisStore({ client });
    assert.ok(store instanceof RedisStore);
    assert.equal(store.topology, "cluster");
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

  it("getMany reads keys spread over every master in one call, one MGET per slot, aligned with its keys", async () => {
    const c = await cluster();
    const store = redisStore({ cluster: { rootNodes: c.rootNodes } });
    try {
      // Pairs of keys sharing a hash tag: 20 slots of two keys each, over all three masters.
      const keys = Array.from({ length: 40 }, (_, i) => `{spread:${run}:${i >> 1}}:${i & 1}`);
      const owners = new Set<number>();
      for (const key of keys) owners.add((await c.ownerOf(keySlot(`cachet:${key}`))).port);
      assert.equal(owners.size, 3, "the keys should land on all three masters");
      await Promise.all(
        keys.map((key, i) => (i % 4 === 3 ? null : store.set(key, Buffer.from(key), 60_000))),
      );
      const got = await store.getMany([...keys, keys[0]!]);
      assert.equal(got.length, keys.length + 1);
      keys.forEach((key, i) => {
        if (i % 4 === 3) assert.equal(got[i], undefined, `${key} was never set`);
        else assert.equal(Buffer.from(got[i]!).toString(), key);
      });
      assert.equal(Buffer.from(got[keys.length]!).toString(), keys[0]);
      for (const { node } of await c.masters()) {
        const commandstats = String(await node.command("INFO", "commandstats"));
        assert.match(commandstats, /cmdstat_mget:calls=[1-9]/, `${node.address} served no MGET`);
      }
    } finally {
      await store.disconnect();
    }
  });

  it("the bus subscriber lives on one node and hears what is published through any other", async () => {
    const c = await cluster();
    const publisher = redisStore({ cluster: { rootNodes: c.rootNodes } });
    const subscribers = [0, 1, 2].map(() => redisStore({ cluster: { rootNodes: c.rootNodes } }));
    const heard = subscribers.map(() => [] as string[]);
    try {
      const channel = `bus:${run}`;
      await Promise.all(
        subscribers.map((s, i) =>
          s.subscribe(
            channel,
            (message) => heard[i]!.push(message.toString()),
            () => {},
          ),
        ),
      );
      for (let i = 0; i < 10; i++) await publisher.publish(channel, Buffer.from(`m${i}`));
      await waitFor(
        () => heard.every((h) => h.length === 10),
        "every subscriber to hear 10 messages",
        5_000,
      );
      for (const h of heard)
        assert.deepEqual(
          h,
          Array.from({ length: 10 }, (_, i) => `m${i}`),
        );
    } finally {
      await Promise.all([publisher, ...subscribers].map((s) => s.disconnect()));
    }
  });
});

describe("redis cluster: nothing left running", () => {
  it("a process that used a cluster store exits by itself after disconnect()", async () => {
    const { url } = await cluster();
    const { code, output } = await runExitFixture(url, 10_000);
    assert.equal(code, 0, output);
    assert.deepEqual(JSON.parse(output.trim().split("\n").pop()!), {
      outcome: "round-trip",
      status: "ready",
      after: "closed",
    });
  });
});

describe("redis cluster: a slot migrated under load", () => {
  it("MOVED and ASK are followed: no failed command while the slot moves, every value intact after", async () => {
    const c = await cluster();
    // Every key of this test carries the hash tag {mig…}: entries, their tag states and
    // leases all live in the one slot that moves.
    const tag = `mig${run}`;
    const slot = keySlot(tag);
    const source = await c.ownerOf(slot);
    const target = (await c.masters()).find((m) => m.node !== source)!.node;
    const errors: unknown[] = [];
    const make = () => {
      const store = redisStore({ cluster: { rootNodes: c.rootNodes }, commandTimeout: 5_000 });
      // A generous guard timeout: this test counts real failures, not slow answers on a busy
      // machine (a failure would be a miss, never a failed request, either way).
      const cache = createCache({ store, l1: false, lease: true, storeTimeout: 3_000 });
      cache.on("error", (e) => errors.push(e.error));
      return { store, cache };
    };
    const a = make();
    const b = make();
    const keys = Array.from({ length: 60 }, (_, i) => `{${tag}}:item:${i}`);
    for (const key of keys)
      await a.cache.set(key, { key, v: 1 }, { ttl: 60_000, tags: [`{${tag}}:t`] });

    let ops = 0;
    let stop = false;
    const failures: unknown[] = [];
    const worker = async (w: number) => {
      for (let i = 0; !stop; i++) {
        const key = keys[(w * 7 + i) % keys.length]!;
        try {
          switch (i % 5) {
            case 0: {
              const value = await b.cache.getOrSet<{ key: string }>(key, () => ({ key }), {
                tags: [`{${tag}}:t`],
              });
              assert.equal(value.key, key);
              break;
            }
            case 1:
              await a.store.set(`{${tag}}:raw:${w}:${i % 20}`, Buffer.from(key), 60_000);
              break;
            case 2: {
              const many = await a.store.getMany([key, keys[(i + 1) % keys.length]!, `${key}:x`]);
              assert.equal(many.length, 3);
              break;
            }
            case 3: {
              const lease = `{${tag}}:lease:${w}`;
              const token = Buffer.from(`${w}:${i}`);
              if (await a.store.setIfAbsent(lease, token, 10_000))
                assert.equal(await a.store.deleteIfEquals(lease, token), true);
              break;
            }
            default:
              await a.cache.getOrSet(`{${tag}}:fresh:${w}:${i}`, () => i, { ttl: 60_000 });
          }
          ops++;
        } catch (error) {
          failures.push(error);
        }
      }
    };
    const workers = Array.from({ length: 6 }, (_, w) => worker(w));
    try {
      let lastOps = 0;
      const progress = () =>
        waitFor(
          () => ops >= lastOps + 20,
          "the load to make progress while the slot is half moved",
          10_000,
          5,
        ).then(() => {
          lastOps = ops;
        });
      await progress();
      await c.migrateSlot(slot, target, progress);
      await progress();
    } finally {
      stop = true;
      await Promise.all(workers);
    }
    try {
      assert.equal((await c.ownerOf(slot)).port, target.port, "the slot moved");
      assert.deepEqual(failures, [], "a command through the store failed during the migration");
      assert.deepEqual(errors, [], "the cache saw store errors during the migration");
      assert.ok(ops > 100, `only ${ops} operations ran`);
      for (const key of keys) {
        const value = await a.cache.get<{ key: string; v: number }>(key);
        assert.deepEqual(value, { key, v: 1 }, `${key} after the migration`);
      }
      assert.equal(errors.length, 0);
    } finally {
      await Promise.all([a.cache.close(), b.cache.close()]);
    }
  });
});

describe("redis cluster: slot safety of everything above", () => {
  it("no node ever saw a CROSSSLOT error, nor KEYS, SCAN, FLUSHALL or FLUSHDB", async () => {
    const c = await cluster();
    for (const node of c.nodes) {
      const errorstats = String(await node.command("INFO", "errorstats"));
      assert.doesNotMatch(errorstats, /errorstat_CROSSSLOT/, `${node.address}: ${errorstats}`);
      const commandstats = String(await node.command("INFO", "commandstats"));
      assert.doesNotMatch(commandstats, /cmdstat_(keys|scan|flushall|flushdb):/, node.address);
    }
  });
});

describe("redis cluster: a master fails over", () => {
  it("requests keep answering while a master is down; after the failover its slots are cached again and the bus carries on", async () => {
    const c = await cluster();
    const tag = `fo${run}`;
    const victim = await c.ownerOf(keySlot(tag));
    const make = () =>
      createCache({
        store: redisStore({ cluster: { rootNodes: c.rootNodes } }),
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
      const keys = Array.from({ length: 12 }, (_, i) =>
        i % 2 === 0 ? `{${tag}}:k${i}` : `other:${run}:k${i}`,
      );
      for (const key of keys) await a.getOrSet(key, () => `${key}=before`);

      await victim.kill();
      const killedAt = Date.now();
      // Requests keep answering while the master is down and during the failover: a miss goes
      // to the origin, a failed write is dropped; none fails, none waits on the dead node.
      let answered = 0;
      let slowest = 0;
      const failures: unknown[] = [];
      const requestRound = async (round: number) => {
        await Promise.all(
          keys.map(async (key, i) => {
            const cache = caches[(round + i) % 2]!;
            const started = performance.now();
            try {
              const value = await cache.getOrSet(
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
      };
      let stop = false;
      const load = (async () => {
        for (let round = 0; !stop; round++) {
          await requestRound(round);
          await new Promise((resolve) => setTimeout(resolve, 20));
        }
      })();
      let failedOverAfter = 0;
      let recoveredAfter = 0;
      try {
        await c.waitHealthy(20_000);
        failedOverAfter = Date.now() - killedAt;
        // The cache is used again for the victim's slots once the store has learnt the new
        // layout: a value written by one instance is read from Redis by the other (its own
        // in-process tier never saw the key).
        let attempt = 0;
        await waitFor(
          async () => {
            const key = `{${tag}}:after:${attempt++}`;
            await a.getOrSet(key, () => "written by a");
            const seen = await b.getOrSet(key, () => "b had to compute it");
            recoveredAfter = Date.now() - killedAt;
            return seen === "written by a";
          },
          "the promoted replica to serve the cache",
          20_000,
          100,
        );
      } finally {
        stop = true;
        await load;
      }
      assert.deepEqual(failures, [], "requests failed during the failover");
      assert.ok(answered >= keys.length * 10, `answered ${answered}`);
      // storeTimeout (50 ms) bounds every store call; the factory is immediate.
      assert.ok(slowest < 1_000, `a request took ${Math.round(slowest)} ms`);
      // The bus still carries invalidations between the instances (its subscriber was
      // perhaps on the dead node: it moved to another one).
      const key = `{${tag}}:bus`;
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
      // Keep the timings in the test output: they document the behaviour.
      console.log(
        `failover: promoted after ${failedOverAfter} ms, cache used again after ${recoveredAfter} ms, ${answered} requests answered, slowest ${Math.round(slowest)} ms`,
      );
    } finally {
      await Promise.all(caches.map((x) => x.close()));
    }
  });
});
