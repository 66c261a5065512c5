import { setPriority } from "node:os";
import { command } from "./redis-process.js";

/**
 * Give the redis-server on `port` a higher CPU priority than the machine's other work, when
 * the test runs with the right to (root or CAP_SYS_NICE; otherwise nothing changes). For
 * tests that load this process on purpose: they are about what this process's own busyness
 * does to the cache, and on a shared machine other processes' builds and benchmarks can keep
 * redis-server off the CPU for longer than a 50 ms store timeout, a stall no client can tell
 * from a frozen server (docs/failure-modes.md, "Limits"). Returns whether it was raised.
 */
export async function prioritizeRedis(port: number): Promise<boolean> {
  const info = String(await command(port, "INFO", "server"));
  const pid = Number(/process_id:(\d+)/.exec(info)?.[1]);
  if (!Number.isInteger(pid)) return false;
  try {
    setPriority(pid, -10);
    return true;
  } catch {
    return false;
  }
}
