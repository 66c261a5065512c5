/**
 * The store servers of a run, each on free loopback ports: one redis-server (always), a local
 * 3-master Redis Cluster and one memcached (only when a selected target uses them). They are
 * the test suite's own helpers (`test/helpers/`), as the bench's Redis always was: the same
 * flags, the same readiness checks, the same failure messages. `stop()` stops them all and
 * removes the cluster's temporary directory; it is safe to call more than once.
 */
import type { MemcachedServer } from "../../test/helpers/memcached.js";
import { startMemcached } from "../../test/helpers/memcached.js";
import type { RedisServer } from "../../test/helpers/redis.js";
import { startRedis } from "../../test/helpers/redis.js";
import type { ClusterNode, RedisCluster } from "../../test/helpers/redis-cluster.js";
import { startRedisCluster } from "../../test/helpers/redis-cluster.js";
import type { Storage } from "../targets/registry.js";
import { memcachedCpuSeconds, redisCpuSeconds } from "./store-cpu.js";

/** A store server taken down under load and brought back, empty, on the same port(s). */
export interface Outage {
  /** What is killed, for the report. */
  readonly what: string;
  /** SIGKILL, as a crash would. */
  kill(): Promise<void>;
  /** Start it again (empty: no persistence). */
  restart(): Promise<void>;
  /** After the measured window: wait until the server is fully usable again (not measured). */
  settle(): Promise<void>;
}

export interface StoreServers {
  readonly redis: RedisServer;
  readonly cluster: RedisCluster | undefined;
  readonly memcached: MemcachedServer | undefined;
  /**
   * Seconds of CPU used so far by the server(s) that hold a `storage` target's entries: Redis,
   * every node of the cluster summed (all three are masters), or memcached. Targets with no
   * store read Redis (it stays near zero for them; the report shows no figure).
   */
  cpuSeconds(storage: Storage): Promise<number>;
  /**
   * The outage of a `storage` target's store. For the cluster: the master serving the slot of
   * the target's entry for `GET /posts` (found by the key's suffix among the keys under
   * `prefix`), so that, as with the one Redis, the key the load reads goes away.
   */
  outage(storage: Storage, prefix: string): Promise<Outage>;
  stop(): Promise<void>;
}

export async function startStores(
  need: { readonly cluster: boolean; readonly memcached: boolean },
  log: (line: string) => void,
): Promise<StoreServers> {
  let redis: RedisServer | undefined;
  let cluster: RedisCluster | undefined;
  let memcached: MemcachedServer | undefined;
  let stopped: Promise<void> | undefined;
  const stop = () => {
    stopped ??= Promise.allSettled([
      redis?.stop(),
      cluster?.stop(), // SIGKILLs its nodes and removes its temporary directory
      memcached?.stop(),
    ]).then(() => {});
    return stopped;
  };
  try {
    redis = await startRedis();
    log(`redis-server on port ${redis.port}`);
    if (need.cluster) {
      const t0 = performance.now();
      cluster = await startRedisCluster({ masters: 3 });
      log(
        `Redis Cluster (3 masters, no replicas) on ports ${cluster.nodes.map((n) => n.port).join(", ")}, ready in ${Math.round(performance.now() - t0)} ms`,
      );
    }
    if (need.memcached) {
      memcached = await startMemcached();
      log(`memcached on port ${memcached.port}`);
    }
  } catch (error) {
    await stop();
    throw error;
  }
  const r = redis;
  const c = cluster;
  const m = memcached;

  const needCluster = () => {
    if (!c) throw new Error("the Redis Cluster was not started");
    return c;
  };
  const needMemcached = () => {
    if (!m) throw new Error("memcached was not started");
    return m;
  };

  return {
    redis: r,
    cluster: c,
    memcached: m,
    async cpuSeconds(storage) {
      if (storage === "cluster") {
        const nodes = needCluster().nodes.filter((n) => n.running);
        const each = await Promise.all(nodes.map((n) => redisCpuSeconds(n.port)));
        return each.reduce((a, b) => a + b, 0);
      }
      if (storage === "memcached") return memcachedCpuSeconds(needMemcached().port);
      return redisCpuSeconds(r.port);
    },
    async outage(storage, prefix) {
      if (storage === "cluster") {
        const cl = needCluster();
        const node = await entryOwner(cl, prefix);
        return {
          what: "the master holding the entry (1 of 3)",
          kill: () => node.kill(),
          restart: () => node.start(),
          settle: () => cl.waitHealthy(20_000),
        };
      }
      if (storage === "memcached") {
        const mc = needMemcached();
        return {
          what: "memcached",
          kill: () => mc.kill(),
          restart: () => mc.start(),
          settle: async () => {},
        };
      }
      return {
        what: "redis-server",
        kill: () => r.kill(),
        restart: () => r.start(),
        settle: async () => {},
      };
    },
    stop,
  };
}

/** The master holding the one key under `prefix` that ends in `/posts` (the warm entry). */
async function entryOwner(cluster: RedisCluster, prefix: string): Promise<ClusterNode> {
  const pattern = `${prefix.replace(/[*?[\]\\]/g, "\\$&")}*/posts`;
  // The warm-up request may have been a miss whose write lands just after its response:
  // look again for a few seconds before giving up.
  const deadline = Date.now() + 5_000;
  for (;;) {
    const owners: ClusterNode[] = [];
    for (const { node } of await cluster.masters()) {
      // KEYS is fine here: the bench's own cluster holds a few dozen keys.
      const keys = (await node.command("KEYS", pattern)) as string[];
      // A fleet lease on the same key (`__cachet:lease:<key>`) may linger until its TTL.
      if (keys.some((k) => !k.includes("__cachet:lease:"))) owners.push(node);
    }
    if (owners.length === 1) return owners[0]!;
    if (Date.now() > deadline) {
      throw new Error(
        `expected the entry of GET /posts (${pattern}) on exactly one master, found it on ${owners.length}`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
