/**
 * CPU pinning. On a 2-core machine the scheduler moves the target and the load generator
 * between the cores, and two processes running the same code then differ by up to 20% in
 * throughput (the A/A figure shows it). Pinning every target to core 0 and the load generator
 * to core 1 (with `taskset`, when it exists and there are at least two cores) makes runs of
 * the same code agree; Redis, memcached and the fake upstream stay unpinned.
 */
import { spawnSync } from "node:child_process";
import { availableParallelism } from "node:os";

let enabled: boolean | undefined;

/** Whether pinning is on: `taskset` exists, two cores or more, and `--no-pin` was not given. */
export function pinningAvailable(): boolean {
  enabled ??=
    availableParallelism() >= 2 &&
    spawnSync("taskset", ["-p", String(process.pid)], { stdio: "ignore" }).status === 0;
  return enabled;
}

/** Turn pinning off (`--no-pin`). */
export function disablePinning(): void {
  enabled = false;
}

/** Pin every thread of `pid` to core 0 (the targets' core). No-op without pinning. */
export function pinTarget(pid: number): void {
  if (!pinningAvailable()) return;
  spawnSync("taskset", ["-a", "-p", "-c", "0", String(pid)], { stdio: "ignore" });
}

/** The command line for the load generator: on core 1 when pinning. */
export function loadCommand(bin: string, args: readonly string[]): [string, string[]] {
  return pinningAvailable() ? ["taskset", ["-c", "1", bin, ...args]] : [bin, [...args]];
}

/** For the report. */
export function pinningDescription(): string {
  return pinningAvailable()
    ? "targets pinned to core 0, the load generator to core 1 (taskset)"
    : "none (taskset missing, one core, or --no-pin)";
}
