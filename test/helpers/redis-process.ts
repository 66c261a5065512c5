import { type ChildProcess, spawn } from "node:child_process";
import { createClient } from "redis";
import { waitFor } from "./ports.js";

const HOST = "127.0.0.1";

/** One command on a short-lived connection (helpers only; never in the code under test). */
export async function command(port: number, ...args: string[]): Promise<unknown> {
  const client = createClient({ socket: { host: HOST, port, reconnectStrategy: false } });
  client.on("error", () => {});
  await client.connect();
  try {
    return await client.sendCommand(args);
  } finally {
    client.destroy();
  }
}

/** A server process that can be killed and started again on the same port. */
export class ServerProcess {
  #child: ChildProcess | undefined;
  readonly port: number;
  readonly #file: string;
  readonly #args: string[];

  constructor(file: string, args: string[], port: number) {
    this.#file = file;
    this.#args = args;
    this.port = port;
  }

  get running(): boolean {
    const child = this.#child;
    return child !== undefined && child.exitCode === null && child.signalCode === null;
  }

  /** Nothing when it is running (a second process would fail to bind and orphan the first). */
  async start(): Promise<void> {
    if (this.running) return;
    let output = "";
    const proc = spawn(this.#file, this.#args, { stdio: ["ignore", "pipe", "pipe"] });
    this.#child = proc;
    proc.stdout?.on("data", (d) => {
      output += d;
    });
    proc.stderr?.on("data", (d) => {
      output += d;
    });
    const exited = new Promise<never>((_, reject) => {
      proc.once("error", (e) => reject(new Error(`${this.#file} failed to start: ${e.message}`)));
      proc.once("exit", (code) =>
        reject(
          new Error(
            `${this.#file} exited with ${code} on port ${this.port}: ${output.slice(-800)}`,
          ),
        ),
      );
    });
    exited.catch(() => {});
    await Promise.race([
      waitFor(() => ping(this.port), `${this.#file} on port ${this.port}`, 10_000),
      exited,
    ]);
  }

  exit(signal: NodeJS.Signals): Promise<void> {
    return new Promise<void>((resolve) => {
      const proc = this.#child;
      if (!proc || proc.exitCode !== null || proc.signalCode !== null) return resolve();
      proc.once("exit", () => resolve());
      proc.kill(signal);
    });
  }

  killSync(): void {
    this.#child?.kill("SIGKILL");
  }
}

/** Whether something answers PING with PONG on `port`. */
export async function ping(port: number): Promise<boolean> {
  try {
    return (await command(port, "PING")) === "PONG";
  } catch {
    return false;
  }
}
