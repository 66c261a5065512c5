import { type ChildProcess, spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { request } from "node:http";
import { createRequire } from "node:module";
import { DynamoDBClient } from "@aws-sdk/client-dynamodb";
import { freePort, waitFor } from "./ports.js";

// The SDK warns once per process that its 2027 releases will need Node 22; not our concern here.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= "true";

/** A local DynamoDB-compatible server (dynalite, in memory) on a free port, for one test file. */
export interface DynaliteServer {
  readonly port: number;
  /** `http://127.0.0.1:<port>`, as the SDK's `endpoint` and `DYNAMODB_ENDPOINT` take it. */
  readonly endpoint: string;
  /** SDK client configuration for this server (any credentials; dynalite does not check them). */
  readonly clientConfig: {
    endpoint: string;
    region: string;
    credentials: { accessKeyId: string; secretAccessKey: string };
  };
  /** A new SDK client for this server; the caller destroys it. */
  client(): DynamoDBClient;
  /** Stop it for good (SIGTERM, waits for exit). Its data is gone. */
  stop(): Promise<void>;
  /** Kill it abruptly (SIGKILL); `start()` brings it back, empty, on the same port. */
  kill(): Promise<void>;
  /** Start it again on the same port after `kill()`/`stop()`. */
  start(): Promise<void>;
  /** Freeze it (SIGSTOP): connections stay open, nothing answers. */
  pause(): void;
  /** Thaw it (SIGCONT). */
  resume(): void;
}

/**
 * Start dynalite (from node_modules) as a child process on a free loopback port, in memory,
 * with tables active at once. Fails with the reason when it cannot start: tests never skip
 * silently.
 */
export async function startDynalite(): Promise<DynaliteServer> {
  const cli = createRequire(import.meta.url).resolve("dynalite/cli.js");
  let lastError: unknown;
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = await freePort();
    try {
      return await launch(cli, port);
    } catch (error) {
      lastError = error;
    }
  }
  throw new Error(`could not start dynalite: ${String(lastError)}`);
}

async function launch(cli: string, port: number): Promise<DynaliteServer> {
  let child: ChildProcess | undefined;
  const args = [
    cli,
    "--port",
    String(port),
    "--host",
    "127.0.0.1",
    "--createTableMs",
    "0",
    "--deleteTableMs",
    "0",
    "--updateTableMs",
    "0",
  ];
  const endpoint = `http://127.0.0.1:${port}`;

  const start = async () => {
    let output = "";
    const proc = spawn(process.execPath, args, { stdio: ["ignore", "pipe", "pipe"] });
    child = proc;
    proc.stdout?.on("data", (d) => {
      output += d;
    });
    proc.stderr?.on("data", (d) => {
      output += d;
    });
    const exited = new Promise<never>((_, reject) => {
      proc.once("error", (e) => reject(new Error(`dynalite failed to start: ${e.message}`)));
      proc.once("exit", (code) =>
        reject(new Error(`dynalite exited with ${code} on port ${port}: ${output.slice(-500)}`)),
      );
    });
    exited.catch(() => {});
    await Promise.race([waitFor(() => answers(port), `dynalite on port ${port}`, 15_000), exited]);
  };

  const exit = (signal: NodeJS.Signals) =>
    new Promise<void>((resolve) => {
      const proc = child;
      if (!proc || proc.exitCode !== null || proc.signalCode !== null) return resolve();
      proc.once("exit", () => resolve());
      if (signal !== "SIGKILL") proc.kill("SIGCONT");
      proc.kill(signal);
    });

  await start();
  process.once("exit", () => {
    child?.kill("SIGKILL");
  });
  const clientConfig = {
    endpoint,
    region: "us-east-1",
    credentials: { accessKeyId: "cachet-test", secretAccessKey: "cachet-test" },
  };
  return {
    port,
    endpoint,
    clientConfig,
    client: () => new DynamoDBClient(clientConfig),
    stop: () => exit("SIGTERM"),
    kill: () => exit("SIGKILL"),
    start,
    pause: () => {
      if (child) stopAndWait(child);
    },
    resume: () => {
      child?.kill("SIGCONT");
    },
  };
}

/** Whether a DynamoDB API answers on `port` (any HTTP reply to a ListTables call). */
function answers(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const req = request(
      {
        host: "127.0.0.1",
        port,
        method: "POST",
        path: "/",
        headers: {
          "content-type": "application/x-amz-json-1.0",
          "x-amz-target": "DynamoDB_20120810.ListTables",
        },
        timeout: 500,
      },
      (res) => {
        res.resume();
        resolve(typeof res.statusCode === "number");
      },
    );
    req.on("timeout", () => req.destroy());
    req.on("error", () => resolve(false));
    req.end("{}");
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
