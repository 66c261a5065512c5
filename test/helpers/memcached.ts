import { type ChildProcess, spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { connect } from "node:net";
import { freePort, waitFor } from "./ports.js";

/** A real `memcached` on a free loopback port, for one test file. */
export interface MemcachedServer {
  readonly port: number;
  /** `127.0.0.1:<port>`, as `memcachedStore({ servers })` and `MEMCACHED_URL` take it. */
  readonly servers: string;
  /** Stop it for good (SIGTERM, waits for exit). */
  stop(): Promise<void>;
  /** Kill it abruptly (SIGKILL), as a crash would; `start()` brings it back (empty) on the same port. */
  kill(): Promise<void>;
  /** Start it again on the same port after `kill()`/`stop()`. */
  start(): Promise<void>;
  /** Freeze it (SIGSTOP): connections stay open, nothing answers. */
  pause(): void;
  /** Thaw it (SIGCONT). */
  resume(): void;
  /** Send one text-protocol command and resolve with the reply (up to `END`/a status line). */
  command(line: string): Promise<string>;
}

/** Options of {@link startMemcached}. */
export interface MemcachedServerOptions {
  /** `-I`: the largest item, e.g. `"1m"` (Memcached's default) or `"8m"`. */
  maxItemSize?: string;
  /** `-m`: memory for items, in megabytes. @default 64 */
  memoryMb?: number;
}

/**
 * Start `memcached` on a free loopback port (`-l 127.0.0.1`, no UDP). Fails with the reason
 * when the binary is missing or the server does not come up: tests never skip silently.
 */
export async function startMemcached(
  options: MemcachedServerOptions = {},
): Promise<MemcachedServer> {
  let lastError: unknown;
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = await freePort();
    try {
      return await launch(port, options);
    } catch (error) {
      lastError = error;
      if (String(error).includes("ENOENT")) break;
    }
  }
  throw new Error(
    `could not start memcached (install it, e.g. apt-get install memcached): ${String(lastError)}`,
  );
}

async function launch(port: number, options: MemcachedServerOptions): Promise<MemcachedServer> {
  let child: ChildProcess | undefined;
  const args = [
    "-p",
    String(port),
    "-l",
    "127.0.0.1",
    "-U",
    "0",
    "-m",
    String(options.memoryMb ?? 64),
    ...(options.maxItemSize ? ["-I", options.maxItemSize] : []),
    // memcached refuses to run as root unless told which user to be.
    ...(process.getuid?.() === 0 ? ["-u", "root"] : []),
  ];

  const start = async () => {
    let output = "";
    const proc = spawn("memcached", args, { stdio: ["ignore", "pipe", "pipe"] });
    child = proc;
    proc.stdout?.on("data", (d) => {
      output += d;
    });
    proc.stderr?.on("data", (d) => {
      output += d;
    });
    const exited = new Promise<never>((_, reject) => {
      proc.once("error", (e) => reject(new Error(`memcached failed to start: ${e.message}`)));
      proc.once("exit", (code) =>
        reject(new Error(`memcached exited with ${code} on port ${port}: ${output.slice(-500)}`)),
      );
    });
    exited.catch(() => {});
    await Promise.race([
      waitFor(
        async () => (await command(port, "version")).startsWith("VERSION"),
        `memcached on port ${port}`,
        10_000,
      ),
      exited,
    ]);
  };

  const exit = (signal: NodeJS.Signals) =>
    new Promise<void>((resolve) => {
      const proc = child;
      if (!proc || proc.exitCode !== null || proc.signalCode !== null) return resolve();
      proc.once("exit", () => resolve());
      // A stopped process acts only on SIGKILL: wake it for SIGTERM (not for SIGKILL, so that
      // a paused server dies without answering what it holds).
      if (signal !== "SIGKILL") proc.kill("SIGCONT");
      proc.kill(signal);
    });

  await start();
  process.once("exit", () => {
    child?.kill("SIGKILL");
  });
  return {
    port,
    servers: `127.0.0.1:${port}`,
    stop: () => exit("SIGTERM"),
    kill: () => exit("SIGKILL"),
    start,
    pause: () => {
      if (child) stopAndWait(child);
    },
    resume: () => {
      child?.kill("SIGCONT");
    },
    command: (line) => command(port, line),
  };
}

/** One text-protocol command on a fresh connection; the reply up to its last line. */
function command(port: number, line: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, "127.0.0.1");
    let reply = "";
    const done = (error?: Error) => {
      socket.destroy();
      if (error) reject(error);
      else resolve(reply);
    };
    socket.setTimeout(2_000, () => done(new Error(`no reply to ${JSON.stringify(line)}`)));
    socket.once("error", done);
    socket.once("connect", () => socket.write(`${line}\r\n`));
    socket.on("data", (d) => {
      reply += d.toString("latin1");
      if (reply.startsWith("VALUE")) {
        if (reply.endsWith("END\r\n")) done(); // get: values, then END
      } else if (reply.startsWith("VA ")) {
        const size = Number(/^VA (\d+)/.exec(reply)?.[1]); // mg with v: a line, then the value
        const headerEnd = reply.indexOf("\r\n") + 2;
        if (headerEnd > 1 && reply.length >= headerEnd + size + 2) done();
      } else if (reply.includes("\r\n")) {
        done(); // a one-line reply (STORED, END, HD …, an error)
      }
    });
  });
}

/**
 * SIGSTOP `child` and return once the kernel reports it stopped, so that nothing sent after
 * `pause()` can still be answered (a signal is delivered asynchronously).
 */
function stopAndWait(child: ChildProcess): void {
  child.kill("SIGSTOP");
  const deadline = Date.now() + 2_000;
  while (Date.now() < deadline) {
    try {
      // /proc/<pid>/stat: "pid (comm) state …"; T is stopped.
      const stat = readFileSync(`/proc/${child.pid}/stat`, "utf8");
      if (stat.slice(stat.lastIndexOf(")") + 2).startsWith("T")) return;
    } catch {
      return; // no /proc (not Linux): the signal is all we can do
    }
  }
  throw new Error(`process ${child.pid} did not stop within 2 s of SIGSTOP`);
}
