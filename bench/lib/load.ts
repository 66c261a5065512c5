/**
 * Load generators: wrk when installed (it runs in its own process, in C, and leaves the CPU to
 * the target), autocannon otherwise. Both report the same figures.
 */

import { spawn, spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { loadCommand } from "./cpu.js";

export interface LoadResult {
  /** Completed requests. */
  readonly requests: number;
  readonly seconds: number;
  readonly rps: number;
  /** Latency percentiles, milliseconds. */
  readonly p50: number;
  readonly p90: number;
  readonly p99: number;
  readonly max: number;
  /** Non-2xx/3xx responses. */
  readonly non2xx: number;
  /** Connection errors and timeouts. */
  readonly errors: number;
  readonly bytes: number;
}

export interface LoadOptions {
  readonly url: string;
  readonly connections: number;
  readonly seconds: number;
  readonly timeoutSeconds?: number;
  /**
   * wrk only: a Lua script of the bench's that chooses each request (it must also define wrk's
   * `done`, e.g. by loading `wrk-report.lua`), and the arguments given to its `init`.
   */
  readonly script?: { readonly file: string; readonly args: readonly string[] };
}

export type LoadGenerator = (options: LoadOptions) => Promise<LoadResult>;

const LUA = fileURLToPath(new URL("../wrk-report.lua", import.meta.url));

export function wrkInstalled(): boolean {
  return spawnSync("wrk", ["--version"], { stdio: "ignore" }).error === undefined;
}

export function wrkVersion(): string {
  const out = spawnSync("wrk", ["--version"], { encoding: "utf8" });
  const text = `${out.stdout ?? ""}${out.stderr ?? ""}`;
  return `wrk ${/wrk (?:\S*?\/)?(\d[\w.]*)/.exec(text)?.[1] ?? ""}`.trim();
}

interface WrkJson {
  requests: number;
  duration_us: number;
  bytes: number;
  errors: { connect: number; read: number; write: number; status: number; timeout: number };
  latency_us: { mean: number; p50: number; p90: number; p99: number; max: number };
}

/** wrk, one thread (the machine's other core is the target's), `connections` connections. */
export const wrk: LoadGenerator = (options) =>
  new Promise((resolve, reject) => {
    const args = [
      "-t1",
      `-c${options.connections}`,
      `-d${options.seconds}s`,
      `--timeout`,
      `${options.timeoutSeconds ?? 5}s`,
      "-s",
      options.script?.file ?? LUA,
      options.url,
      ...(options.script ? ["--", ...options.script.args] : []),
    ];
    const [command, commandArgs] = loadCommand("wrk", args);
    const proc = spawn(command, commandArgs, { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    proc.stdout.on("data", (d) => {
      out += d;
    });
    proc.stderr.on("data", (d) => {
      out += d;
    });
    proc.once("error", reject);
    proc.once("exit", (code) => {
      const line = out.split("\n").find((l) => l.startsWith("BENCH_JSON "));
      if (code !== 0 || !line) {
        reject(new Error(`wrk ${args.join(" ")} failed (${code}):\n${out.slice(-1000)}`));
        return;
      }
      const j = JSON.parse(line.slice("BENCH_JSON ".length)) as WrkJson;
      const seconds = j.duration_us / 1e6;
      resolve({
        requests: j.requests,
        seconds,
        rps: j.requests / seconds,
        p50: j.latency_us.p50 / 1000,
        p90: j.latency_us.p90 / 1000,
        p99: j.latency_us.p99 / 1000,
        max: j.latency_us.max / 1000,
        non2xx: j.errors.status,
        errors: j.errors.connect + j.errors.read + j.errors.write + j.errors.timeout,
        bytes: j.bytes,
      });
    });
  });

/** autocannon, in the harness's process (only when wrk is missing). */
export const autocannon: LoadGenerator = async (options) => {
  if (options.script) throw new Error("a scripted load (working set) needs wrk");
  const { default: run } = await import("autocannon");
  const result = await run({
    url: options.url,
    connections: options.connections,
    duration: options.seconds,
    timeout: options.timeoutSeconds ?? 5,
  });
  return {
    requests: result.requests.total,
    seconds: result.duration,
    rps: result.requests.total / result.duration,
    p50: result.latency.p50,
    p90: result.latency.p90,
    p99: result.latency.p99,
    max: result.latency.max,
    non2xx: result.non2xx,
    errors: result.errors + result.timeouts,
    bytes: result.throughput.total,
  };
};
