/**
 * Child processes for the comparison (and the end-to-end tests): start a Node script, wait for
 * the line that says it is listening, and make sure it is gone when we are.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { createInterface } from "node:readline";

export interface ChildOptions {
  /** The script to run with this Node binary. */
  readonly script: string;
  /** Extra environment variables (on top of this process's). */
  readonly env?: Readonly<Record<string, string | undefined>>;
  /** Reads one output line; returns the URL when the line says the child is ready. */
  readonly ready: (line: string) => string | undefined;
  /** Longest wait for readiness, in ms. @default 10000 */
  readonly timeoutMs?: number;
  /** A name for messages. */
  readonly name: string;
}

export interface Child {
  readonly name: string;
  readonly url: string;
  readonly process: ChildProcess;
  /** Milliseconds from spawn to the ready line. */
  readonly startMs: number;
  /** Every output line so far (stdout and stderr, interleaved). */
  output(): string[];
  /** Resolves with the exit code (or signal) once the child has exited by itself. */
  exited(): Promise<number | NodeJS.Signals | null>;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves with the exit code (or signal) once gone. */
  stop(graceMs?: number): Promise<number | NodeJS.Signals | null>;
}

const live = new Set<ChildProcess>();
let hooked = false;

/** Kill every child still running (synchronously, so that it works in an `exit` handler). */
export function killAll(): void {
  for (const child of live) child.kill("SIGKILL");
  live.clear();
}

function hookExit(): void {
  if (hooked) return;
  hooked = true;
  process.once("exit", killAll);
}

/** Start `script` and resolve once `ready` recognises a line; rejects (and kills it) otherwise. */
export function startChild(options: ChildOptions): Promise<Child> {
  hookExit();
  const started = performance.now();
  const proc = spawn(process.execPath, [options.script], {
    env: { ...process.env, ...options.env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  live.add(proc);
  const lines: string[] = [];
  const exited = new Promise<number | NodeJS.Signals | null>((resolve) => {
    proc.once("exit", (code, signal) => {
      live.delete(proc);
      resolve(code ?? signal);
    });
  });

  const stop = async (graceMs = 5_000) => {
    if (proc.exitCode === null && proc.signalCode === null) {
      proc.kill("SIGTERM");
      const timer = setTimeout(() => proc.kill("SIGKILL"), graceMs);
      const out = await exited;
      clearTimeout(timer);
      return out;
    }
    return exited;
  };

  return new Promise<Child>((resolve, reject) => {
    let done = false;
    const timeoutMs = options.timeoutMs ?? 10_000;
    const fail = (why: string) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      proc.kill("SIGKILL");
      const tail = lines.slice(-20).join("\n");
      reject(new Error(`${options.name}: ${why}${tail ? `\n--- its output ---\n${tail}` : ""}`));
    };
    const timer = setTimeout(() => fail(`not ready after ${timeoutMs} ms`), timeoutMs);
    const onLine = (line: string) => {
      lines.push(line);
      if (done) return;
      const url = options.ready(line);
      if (url === undefined) return;
      done = true;
      clearTimeout(timer);
      resolve({
        name: options.name,
        url,
        process: proc,
        startMs: performance.now() - started,
        output: () => [...lines],
        exited: () => exited,
        stop,
      });
    };
    createInterface({ input: proc.stdout }).on("line", onLine);
    createInterface({ input: proc.stderr }).on("line", onLine);
    proc.once("error", (error) => fail(`could not start: ${error.message}`));
    void exited.then((code) => fail(`exited (${code}) before it was ready`));
  });
}

/** `ready` for `demo/server.js`: its JSON "listening" line carries `url` and `store`. */
export function serverReady(line: string): string | undefined {
  if (!line.startsWith("{")) return undefined;
  try {
    const record = JSON.parse(line) as { url?: unknown; store?: unknown };
    return typeof record.url === "string" && typeof record.store === "string"
      ? record.url
      : undefined;
  } catch {
    return undefined;
  }
}

/** `ready` for `demo/fake-upstream.js`. */
export function fakeUpstreamReady(line: string): string | undefined {
  return /^fake upstream listening on (\S+)/.exec(line)?.[1];
}
