import { type ChildProcess, spawn } from "node:child_process";
import { connect } from "node:net";
import { freePort, waitFor } from "./ports.js";

/** A real `redis-server` on a free loopback port, for one test file. */
export interface RedisServer {
  readonly port: number;
  readonly url: string;
  /** Stop it for good (SIGTERM, waits for exit). */
  stop(): Promise<void>;
  /** Kill it abruptly (SIGKILL), as a crash would; `start()` brings it back on the same port. */
  kill(): Promise<void>;
  /** Start it again on the same port after `kill()`/`stop()`; nothing when it is running. */
  start(): Promise<void>;
  /** Freeze it (SIGSTOP): connections stay open, nothing answers. */
  pause(): void;
  /** Thaw it (SIGCONT). */
  resume(): void;
}

/**
 * Start `redis-server` on a free port with no persistence. Fails with the reason when the
 * binary is missing or the server does not come up: tests never skip silently.
 */
export async function startRedis(extraArgs: string[] = []): Promise<RedisServer> {
  let lastError: unknown;
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = await freePort();
    try {
      return await launch(port, extraArgs);
    } catch (error) {
      lastError = error;
    }
  }
  throw new Error(`could not start redis-server: ${String(lastError)}`);
}

async function launch(port: number, extraArgs: string[]): Promise<RedisServer> {
  let child: ChildProcess | undefined;
  const args = [
    "--port",
    String(port),
    "--bind",
    "127.0.0.1",
    "--save",
    "",
    "--appendonly",
    "no",
    "--protected-mode",
    "no",
    ...extraArgs,
  ];

  const start = async () => {
    // Already running: a second server would fail to bind while the first one answered the
    // readiness ping, and the first would be orphaned (its handle keeps the test file alive).
    if (child && child.exitCode === null && child.signalCode === null) return;
    let output = "";
    const proc = spawn("redis-server", args, { stdio: ["ignore", "pipe", "pipe"] });
    child = proc;
    proc.stdout?.on("data", (d) => {
      output += d;
    });
    proc.stderr?.on("data", (d) => {
      output += d;
    });
    const exited = new Promise<never>((_, reject) => {
      proc.once("error", (e) => reject(new Error(`redis-server failed to start: ${e.message}`)));
      proc.once("exit", (code) =>
        reject(
          new Error(`redis-server exited with ${code} on port ${port}: ${output.slice(-500)}`),
        ),
      );
    });
    exited.catch(() => {});
    await Promise.race([waitFor(() => ping(port), `redis-server on port ${port}`, 10_000), exited]);
  };

  const exit = (signal: NodeJS.Signals) =>
    new Promise<void>((resolve) => {
      const proc = child;
      if (!proc || proc.exitCode !== null || proc.signalCode !== null) return resolve();
      proc.once("exit", () => resolve());
      proc.kill(signal);
    });

  await start();
  const server: RedisServer = {
    port,
    url: `redis://127.0.0.1:${port}`,
    stop: () => exit("SIGTERM"),
    kill: () => exit("SIGKILL"),
    start,
    pause: () => {
      child?.kill("SIGSTOP");
    },
    resume: () => {
      child?.kill("SIGCONT");
    },
  };
  process.once("exit", () => {
    child?.kill("SIGKILL");
  });
  return server;
}

/** Whether a Redis answers PING on `port`. */
function ping(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, "127.0.0.1");
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(500, () => done(false));
    socket.once("error", () => done(false));
    socket.once("connect", () => socket.write("PING\r\n"));
    socket.once("data", (d) => done(d.toString().startsWith("+PONG")));
  });
}
