import { execFile } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort, waitFor } from "./ports.js";
import { command, ServerProcess } from "./redis-process.js";

/** One `redis-server` of a local cluster. */
export interface ClusterNode {
  readonly port: number;
  /** `127.0.0.1:<port>`, as the cluster announces it. */
  readonly address: string;
  /** The cluster node id (40 hex characters). */
  readonly id: string;
  /** Kill it abruptly (SIGKILL), as a crash would. */
  kill(): Promise<void>;
  /** Start it again on the same ports, with its cluster config file (it rejoins the cluster). */
  start(): Promise<void>;
  /** Whether the process is running. */
  readonly running: boolean;
  /** Send one command to this node and return the reply. */
  command(...args: string[]): Promise<unknown>;
}

/** A local Redis Cluster on free loopback ports, for one test file. */
export interface RedisCluster {
  readonly nodes: readonly ClusterNode[];
  /** `redis+cluster://127.0.0.1:p1,127.0.0.1:p2,…` (the masters at creation). */
  readonly url: string;
  /** node-redis `rootNodes` (the masters at creation). */
  readonly rootNodes: Array<{ url: string }>;
  /** The nodes that are masters now, each with the slot ranges it serves. */
  masters(): Promise<Array<{ node: ClusterNode; slots: Array<[number, number]> }>>;
  /** The node serving `slot` now (its master). */
  ownerOf(slot: number): Promise<ClusterNode>;
  /** `CLUSTER KEYSLOT key`, as the server computes it. */
  keySlot(key: string): Promise<number>;
  /**
   * Move `slot` from its owner to `to` the way `redis-cli --cluster reshard` does:
   * `SETSLOT IMPORTING` on the target, `SETSLOT MIGRATING` on the source, `MIGRATE` of its
   * keys in batches (calling `between` after each batch, so that a test can act while the
   * slot is half moved), then `SETSLOT NODE` everywhere.
   */
  migrateSlot(slot: number, to: ClusterNode, between?: () => Promise<void>): Promise<void>;
  /** Wait until every running node reports `cluster_state:ok` and agrees on the slot owners. */
  waitHealthy(timeoutMs?: number): Promise<void>;
  /** Stop every node and remove the temporary directory. */
  stop(): Promise<void>;
}

export interface RedisClusterOptions {
  /** Number of masters. @default 3 */
  masters?: number;
  /** Replicas per master (needed for failover tests). @default 0 */
  replicas?: number;
  /** `cluster-node-timeout`, in ms: how soon a dead master is failed over. @default 1000 */
  nodeTimeout?: number;
}

const HOST = "127.0.0.1";

/**
 * Start a local Redis Cluster: `redis-server --cluster-enabled yes` on free ports (client and
 * cluster-bus ports both picked free), joined with `redis-cli --cluster create`, then wait for
 * `cluster_state:ok` on every node. Config files live in a temporary directory removed by
 * `stop()`. Fails with the reason when a server cannot start: tests never skip silently.
 */
export async function startRedisCluster(options: RedisClusterOptions = {}): Promise<RedisCluster> {
  const masterCount = options.masters ?? 3;
  const replicas = options.replicas ?? 0;
  const nodeTimeout = options.nodeTimeout ?? 1_000;
  const total = masterCount * (1 + replicas);
  const dir = mkdtempSync(join(tmpdir(), "cachet-cluster-"));
  const processes: ServerProcess[] = [];
  const stopAll = async () => {
    await Promise.all(processes.map((p) => p.exit("SIGKILL")));
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const used = new Set<number>();
    const pick = async () => {
      for (;;) {
        const port = await freePort();
        if (!used.has(port)) {
          used.add(port);
          return port;
        }
      }
    };
    for (let i = 0; i < total; i++) {
      const port = await pick();
      const busPort = await pick();
      const args = [
        "--port",
        String(port),
        "--cluster-port",
        String(busPort),
        "--bind",
        HOST,
        "--cluster-enabled",
        "yes",
        "--cluster-config-file",
        join(dir, `nodes-${port}.conf`),
        "--cluster-node-timeout",
        String(nodeTimeout),
        "--dir",
        dir,
        "--save",
        "",
        "--appendonly",
        "no",
        "--protected-mode",
        "no",
        // Replicas sync at once (no 5 s diskless delay) and may always be promoted.
        "--repl-diskless-sync-delay",
        "0",
        "--cluster-replica-validity-factor",
        "0",
      ];
      const proc = new ServerProcess("redis-server", args, port);
      processes.push(proc);
    }
    await Promise.all(processes.map((p) => p.start()));
    const addresses = processes.map((p) => `${HOST}:${p.port}`);
    await run(
      "redis-cli",
      [
        "--cluster",
        "create",
        ...addresses,
        "--cluster-replicas",
        String(replicas),
        "--cluster-yes",
      ],
      30_000,
    );
    const nodes: ClusterNode[] = [];
    for (const proc of processes) {
      const id = String(await command(proc.port, "CLUSTER", "MYID"));
      nodes.push({
        port: proc.port,
        address: `${HOST}:${proc.port}`,
        id,
        kill: () => proc.exit("SIGKILL"),
        start: () => proc.start(),
        get running() {
          return proc.running;
        },
        command: (...args: string[]) => command(proc.port, ...args),
      });
    }
    const cluster = makeCluster(nodes, stopAll, masterCount);
    await cluster.waitHealthy(20_000);
    process.once("exit", () => {
      for (const p of processes) p.killSync();
    });
    return cluster;
  } catch (error) {
    await stopAll();
    throw new Error(`could not start a Redis Cluster: ${String(error)}`, { cause: error });
  }
}

function makeCluster(
  nodes: ClusterNode[],
  stopAll: () => Promise<void>,
  masterCount: number,
): RedisCluster {
  const running = () => nodes.filter((n) => n.running);
  const byId = (id: string) => nodes.find((n) => n.id === id);
  const initialMasters = nodes.slice(0, masterCount);

  const slotsView = async () => {
    for (const node of running()) {
      try {
        return (await node.command("CLUSTER", "SLOTS")) as Array<
          [number, number, [string, number, string], ...unknown[]]
        >;
      } catch {
        // try the next node
      }
    }
    throw new Error("no cluster node answers CLUSTER SLOTS");
  };

  const cluster: RedisCluster = {
    nodes,
    url: `redis+cluster://${initialMasters.map((n) => n.address).join(",")}`,
    rootNodes: initialMasters.map((n) => ({ url: `redis://${n.address}` })),
    async masters() {
      const out = new Map<ClusterNode, Array<[number, number]>>();
      for (const [from, to, master] of await slotsView()) {
        const node = byId(String(master[2]));
        if (!node) continue;
        out.set(node, [...(out.get(node) ?? []), [Number(from), Number(to)]]);
      }
      return [...out].map(([node, slots]) => ({ node, slots }));
    },
    async ownerOf(slot) {
      for (const { node, slots } of await cluster.masters()) {
        if (slots.some(([from, to]) => slot >= from && slot <= to)) return node;
      }
      throw new Error(`no master serves slot ${slot}`);
    },
    async keySlot(key) {
      return Number(await running()[0]!.command("CLUSTER", "KEYSLOT", key));
    },
    async migrateSlot(slot, to, between) {
      const from = await cluster.ownerOf(slot);
      if (from === to) throw new Error(`slot ${slot} is already on ${to.address}`);
      await to.command("CLUSTER", "SETSLOT", String(slot), "IMPORTING", from.id);
      await from.command("CLUSTER", "SETSLOT", String(slot), "MIGRATING", to.id);
      await between?.();
      for (;;) {
        const keys = (await from.command(
          "CLUSTER",
          "GETKEYSINSLOT",
          String(slot),
          "10",
        )) as string[];
        if (keys.length === 0) break;
        await from.command(
          "MIGRATE",
          HOST,
          String(to.port),
          "",
          "0",
          "5000",
          "REPLACE",
          "KEYS",
          ...keys,
        );
        await between?.();
      }
      // The target first, then the source, then the others (as redis-cli does).
      await to.command("CLUSTER", "SETSLOT", String(slot), "NODE", to.id);
      await from.command("CLUSTER", "SETSLOT", String(slot), "NODE", to.id);
      for (const { node } of await cluster.masters()) {
        if (node !== to && node !== from) {
          await node.command("CLUSTER", "SETSLOT", String(slot), "NODE", to.id).catch(() => {});
        }
      }
    },
    async waitHealthy(timeoutMs = 20_000) {
      await waitFor(
        async () => {
          const views = new Set<string>();
          for (const node of running()) {
            const info = String(await node.command("CLUSTER", "INFO"));
            if (!info.includes("cluster_state:ok")) return false;
            // A replica counts once it is in sync: only then can it be promoted.
            const replication = String(await node.command("INFO", "replication"));
            if (
              replication.includes("role:slave") &&
              !replication.includes("master_link_status:up")
            )
              return false;
            const slots = (await node.command("CLUSTER", "SLOTS")) as Array<
              [number, number, [string, number, string]]
            >;
            // Every slot served by a live master (a killed one is replaced by its replica).
            if (slots.some(([, , master]) => !byId(String(master[2]))?.running)) return false;
            views.add(
              JSON.stringify(
                slots
                  .map(([from, to, master]) => [from, to, master[2]])
                  .sort((a, b) => +a[0]! - +b[0]!),
              ),
            );
          }
          return views.size === 1;
        },
        "every live cluster node to report cluster_state:ok and agree on live slot owners",
        timeoutMs,
        50,
      );
    },
    stop: stopAll,
  };
  return cluster;
}

function run(file: string, args: string[], timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(file, args, { timeout: timeoutMs }, (error, stdout, stderr) => {
      if (error)
        reject(new Error(`${file} ${args.join(" ")} failed: ${error.message}\n${stdout}${stderr}`));
      else resolve(stdout);
    });
  });
}
