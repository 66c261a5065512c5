import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort, waitFor } from "./ports.js";
import { command, ServerProcess } from "./redis-process.js";

const HOST = "127.0.0.1";

/** A Redis data node of a Sentinel setup. */
export interface SentinelDataNode {
  readonly port: number;
  readonly address: string;
  kill(): Promise<void>;
  start(): Promise<void>;
  readonly running: boolean;
  command(...args: string[]): Promise<unknown>;
}

/** A local Sentinel setup: a master, its replicas and the sentinels watching them. */
export interface RedisSentinelSetup {
  /** The monitored master's name. */
  readonly name: string;
  /** Data nodes: `[0]` is the master at start, the others its replicas. */
  readonly nodes: readonly SentinelDataNode[];
  /** The sentinels' addresses, as node-redis `sentinelRootNodes`. */
  readonly sentinelRootNodes: Array<{ host: string; port: number }>;
  /** `redis+sentinel://127.0.0.1:s1,127.0.0.1:s2,…/<name>`. */
  readonly url: string;
  /** The data node the sentinels consider the master now. */
  master(): Promise<SentinelDataNode>;
  /**
   * Wait until every sentinel names a running master other than `previous`, that master
   * accepts writes, and (when any are running) a replica is in sync with it again.
   */
  waitForFailover(previous: SentinelDataNode, timeoutMs?: number): Promise<SentinelDataNode>;
  stop(): Promise<void>;
}

export interface RedisSentinelOptions {
  /** Replicas of the master. @default 1 */
  replicas?: number;
  /** Sentinels (the quorum is a majority of them). @default 3 */
  sentinels?: number;
  /** `down-after-milliseconds`: how soon a dead master is noticed. @default 1000 */
  downAfter?: number;
}

/**
 * Start a master, its replicas and sentinels on free loopback ports, and wait until every
 * sentinel knows the master, the replicas and the other sentinels (so that a failover can be
 * agreed on). Config files live in a temporary directory removed by `stop()`. Fails with the
 * reason when a server cannot start.
 */
export async function startRedisSentinel(
  options: RedisSentinelOptions = {},
): Promise<RedisSentinelSetup> {
  const replicaCount = options.replicas ?? 1;
  const sentinelCount = options.sentinels ?? 3;
  const downAfter = options.downAfter ?? 1_000;
  const quorum = Math.floor(sentinelCount / 2) + 1;
  const name = "cachet-master";
  const dir = mkdtempSync(join(tmpdir(), "cachet-sentinel-"));
  const processes: ServerProcess[] = [];
  const stop = async () => {
    await Promise.all(processes.map((p) => p.exit("SIGKILL")));
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const ports = new Set<number>();
    const pick = async () => {
      for (;;) {
        const port = await freePort();
        if (!ports.has(port)) {
          ports.add(port);
          return port;
        }
      }
    };
    const dataProcesses: ServerProcess[] = [];
    const masterPort = await pick();
    for (let i = 0; i <= replicaCount; i++) {
      const port = i === 0 ? masterPort : await pick();
      // Each data node has a config file, so that a restarted node keeps what sentinels
      // rewrote into it (a demoted master comes back as a replica).
      const conf = join(dir, `redis-${port}.conf`);
      writeFileSync(
        conf,
        [
          `port ${port}`,
          `bind ${HOST}`,
          `dir ${dir}`,
          `save ""`,
          "appendonly no",
          "protected-mode no",
          "repl-diskless-sync-delay 0",
          ...(i === 0 ? [] : [`replicaof ${HOST} ${masterPort}`]),
          "",
        ].join("\n"),
      );
      const proc = new ServerProcess("redis-server", [conf], port);
      processes.push(proc);
      dataProcesses.push(proc);
    }
    await Promise.all(dataProcesses.map((p) => p.start()));
    const sentinelPorts: number[] = [];
    for (let i = 0; i < sentinelCount; i++) {
      const port = await pick();
      sentinelPorts.push(port);
      const conf = join(dir, `sentinel-${port}.conf`);
      writeFileSync(
        conf,
        [
          `port ${port}`,
          `bind ${HOST}`,
          `dir ${dir}`,
          "protected-mode no",
          `sentinel monitor ${name} ${HOST} ${masterPort} ${quorum}`,
          `sentinel down-after-milliseconds ${name} ${downAfter}`,
          `sentinel failover-timeout ${name} 10000`,
          `sentinel parallel-syncs ${name} 1`,
          "",
        ].join("\n"),
      );
      const proc = new ServerProcess("redis-server", [conf, "--sentinel"], port);
      processes.push(proc);
    }
    await Promise.all(processes.slice(dataProcesses.length).map((p) => p.start()));

    const nodes: SentinelDataNode[] = dataProcesses.map((proc) => ({
      port: proc.port,
      address: `${HOST}:${proc.port}`,
      kill: () => proc.exit("SIGKILL"),
      start: () => proc.start(),
      get running() {
        return proc.running;
      },
      command: (...args: string[]) => command(proc.port, ...args),
    }));

    // Sentinels discover replicas (INFO on the master) and each other (hello messages on the
    // master) within a few seconds; a failover needs both.
    await waitFor(
      async () => {
        for (const port of sentinelPorts) {
          const replicas = (await command(port, "SENTINEL", "REPLICAS", name)) as unknown[];
          const sentinels = (await command(port, "SENTINEL", "SENTINELS", name)) as unknown[];
          if (replicas.length < replicaCount || sentinels.length < sentinelCount - 1) return false;
        }
        for (const node of nodes.slice(1)) {
          const info = String(await node.command("INFO", "replication"));
          if (!info.includes("master_link_status:up")) return false;
        }
        return true;
      },
      "the sentinels to discover the replicas and each other",
      20_000,
      50,
    );

    const masterAddress = async (): Promise<string> => {
      for (const port of sentinelPorts) {
        try {
          const [host, p] = (await command(port, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", name)) as [
            string,
            string,
          ];
          return `${host}:${p}`;
        } catch {
          // next sentinel
        }
      }
      throw new Error("no sentinel answers");
    };
    const setup: RedisSentinelSetup = {
      name,
      nodes,
      sentinelRootNodes: sentinelPorts.map((port) => ({ host: HOST, port })),
      url: `redis+sentinel://${sentinelPorts.map((p) => `${HOST}:${p}`).join(",")}/${name}`,
      async master() {
        const address = await masterAddress();
        const node = nodes.find((n) => n.address === address);
        if (!node) throw new Error(`the sentinels name an unknown master ${address}`);
        return node;
      },
      async waitForFailover(previous, timeoutMs = 20_000) {
        let found: SentinelDataNode | undefined;
        await waitFor(
          async () => {
            const seen = new Set<string>();
            for (const port of sentinelPorts) {
              const [host, p] = (await command(
                port,
                "SENTINEL",
                "GET-MASTER-ADDR-BY-NAME",
                name,
              )) as [string, string];
              seen.add(`${host}:${p}`);
            }
            if (seen.size !== 1) return false;
            const node = nodes.find((n) => seen.has(n.address));
            if (!node || node === previous || !node.running) return false;
            const info = String(await node.command("INFO", "replication"));
            if (!info.includes("role:master")) return false;
            found = node;
            return true;
          },
          `a sentinel failover away from ${previous.address}`,
          timeoutMs,
          50,
        );
        return found!;
      },
      stop,
    };
    process.once("exit", () => {
      for (const p of processes) p.killSync();
    });
    return setup;
  } catch (error) {
    await stop();
    throw new Error(`could not start Redis Sentinel: ${String(error)}`, { cause: error });
  }
}
