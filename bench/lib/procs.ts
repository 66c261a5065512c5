/** Child processes of the bench: targets and the fake upstream, each on its own free port. */

import { type ChildProcess, spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import type { UsageReply } from "../targets/child.js";
import type { TargetConfig } from "../targets/common.js";
import { pinTarget } from "./cpu.js";

export const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const CHILD = fileURLToPath(new URL("../targets/child.ts", import.meta.url));
const UPSTREAM = fileURLToPath(new URL("./upstream-child.ts", import.meta.url));

const live = new Set<ChildProcess>();
process.once("exit", () => {
  for (const child of live) child.kill("SIGKILL");
});

interface Ready {
  readonly type: "ready";
  readonly port?: number;
  readonly url?: string;
}

/** Start `script` under node + tsx with an IPC channel; resolve on its `ready` message. */
async function startNode(
  script: string,
  env: Record<string, string>,
  nodeArgs: readonly string[],
  what: string,
  timeoutMs = 30_000,
): Promise<{ proc: ChildProcess; ready: Ready; output: () => string }> {
  const proc = spawn(process.execPath, [...nodeArgs, "--import", "tsx", script], {
    cwd: ROOT,
    env: { ...process.env, NODE_ENV: "production", ...env },
    stdio: ["ignore", "pipe", "pipe", "ipc"],
  });
  live.add(proc);
  proc.once("exit", () => live.delete(proc));
  let output = "";
  const keep = (d: Buffer) => {
    output = (output + d.toString()).slice(-4000);
  };
  proc.stdout?.on("data", keep);
  proc.stderr?.on("data", keep);
  const ready = await new Promise<Ready>((resolve, reject) => {
    const timer = setTimeout(() => {
      proc.kill("SIGKILL");
      reject(new Error(`${what}: not ready after ${timeoutMs} ms\n${output}`));
    }, timeoutMs);
    proc.once("exit", (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`${what} exited (${code ?? signal}) before it was ready\n${output}`));
    });
    proc.on("message", (m: Ready) => {
      if (m?.type === "ready") {
        clearTimeout(timer);
        resolve(m);
      }
    });
  });
  proc.removeAllListeners("exit");
  proc.once("exit", () => live.delete(proc));
  return { proc, ready, output: () => output };
}

function stopProcess(proc: ChildProcess, signal: NodeJS.Signals, timeoutMs = 5000): Promise<void> {
  return new Promise((resolve) => {
    if (proc.exitCode !== null || proc.signalCode !== null) return resolve();
    const timer = setTimeout(() => proc.kill("SIGKILL"), timeoutMs);
    proc.once("exit", () => {
      clearTimeout(timer);
      resolve();
    });
    proc.kill(signal);
  });
}

/** A running target process. */
export interface TargetProcess {
  readonly name: string;
  readonly pid: number;
  readonly port: number;
  readonly url: string;
  /** CPU time (µs, all threads), memory, and the target's own counters, asked over IPC. */
  usage(): Promise<UsageReply>;
  /** Start recording a CPU profile of the target's main thread. */
  profileStart(): Promise<void>;
  /** Stop recording and write the `.cpuprofile` to `file`. */
  profileStop(file: string): Promise<void>;
  /** SIGTERM and wait (graceful close). */
  stop(): Promise<void>;
  /** Whether it is still running. */
  alive(): boolean;
  output(): string;
}

let usageId = 0;

/** Send `message` and wait for a reply of type `replyType`. */
function ask(
  proc: ChildProcess,
  message: object,
  replyType: string,
  timeoutMs = 30_000,
): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      proc.off("message", onMessage);
      reject(new Error(`no ${replyType} reply within ${timeoutMs} ms`));
    }, timeoutMs);
    const onMessage = (m: { type?: string }) => {
      if (m?.type === replyType) {
        clearTimeout(timer);
        proc.off("message", onMessage);
        resolve();
      }
    };
    proc.on("message", onMessage);
    proc.send(message);
  });
}

export async function startTarget(
  config: TargetConfig,
  nodeArgs: readonly string[] = [],
): Promise<TargetProcess> {
  const { proc, ready, output } = await startNode(
    CHILD,
    { BENCH_CONFIG: JSON.stringify(config) },
    nodeArgs,
    `target ${config.name}`,
  );
  const port = ready.port!;
  pinTarget(proc.pid!);
  return {
    name: config.name,
    pid: proc.pid!,
    port,
    url: `http://127.0.0.1:${port}`,
    usage: () =>
      new Promise<UsageReply>((resolve, reject) => {
        const id = ++usageId;
        const timer = setTimeout(() => {
          proc.off("message", onMessage);
          reject(new Error(`target ${config.name}: no usage reply`));
        }, 10_000);
        const onMessage = (m: UsageReply) => {
          if (m?.type === "usage" && m.id === id) {
            clearTimeout(timer);
            proc.off("message", onMessage);
            resolve(m);
          }
        };
        proc.on("message", onMessage);
        proc.send({ type: "usage", id });
      }),
    profileStart: () => ask(proc, { type: "profile-start" }, "profile-started"),
    profileStop: (file) => ask(proc, { type: "profile-stop", file }, "profile-stopped"),
    stop: () => stopProcess(proc, "SIGTERM"),
    alive: () => proc.exitCode === null && proc.signalCode === null,
    output,
  };
}

/** The fake upstream in its own process. */
export interface UpstreamProcess {
  readonly url: string;
  /** Its API-call counter (control endpoints excluded). */
  calls(): Promise<number>;
  stop(): Promise<void>;
}

export async function startUpstream(latencyMs: number): Promise<UpstreamProcess> {
  const { proc, ready } = await startNode(
    UPSTREAM,
    { BENCH_UPSTREAM_LATENCY: String(latencyMs) },
    [],
    "fake upstream",
  );
  const url = ready.url!;
  return {
    url,
    async calls() {
      const response = await fetch(`${url}/__stats`);
      return ((await response.json()) as { calls: number }).calls;
    },
    stop: () => stopProcess(proc, "SIGTERM"),
  };
}
