import { type ChildProcessWithoutNullStreams, spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

/** A fleet instance in its own process (test/fixtures/cluster-fleet-child.ts). */
export class ChildInstance {
  readonly #proc: ChildProcessWithoutNullStreams;
  readonly #replies: Array<(line: string) => void> = [];
  readonly #output: string[] = [];

  /** `lease`: the child's `lease` option (default `{ wait: "10s" }`). */
  constructor(url: string, lease?: object) {
    const script = fileURLToPath(new URL("../fixtures/cluster-fleet-child.ts", import.meta.url));
    this.#proc = spawn(
      process.execPath,
      ["--import", "tsx", script, url, ...(lease ? [JSON.stringify(lease)] : [])],
      {
        stdio: ["pipe", "pipe", "pipe"],
      },
    );
    createInterface({ input: this.#proc.stdout }).on("line", (line) => {
      this.#output.push(line);
      this.#replies.shift()?.(line);
    });
    this.#proc.stderr.on("data", (d) => this.#output.push(String(d)));
  }

  /** Send one command; resolves with its answer (fails after `ms`, with the child's output). */
  send<T = Record<string, unknown>>(command: object, ms = 20_000): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(new Error(`no answer to ${JSON.stringify(command)}: ${this.#output.join("\n")}`));
      }, ms);
      this.#replies.push((line) => {
        clearTimeout(timer);
        const answer = JSON.parse(line) as T & { error?: string };
        if (answer.error) reject(new Error(answer.error));
        else resolve(answer);
      });
      this.#proc.stdin.write(`${JSON.stringify(command)}\n`);
    });
  }

  get pid(): number | undefined {
    return this.#proc.pid;
  }

  kill(): void {
    this.#proc.kill("SIGKILL");
  }
}
