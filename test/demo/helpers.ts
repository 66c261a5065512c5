import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { type Child, serverReady, startChild } from "../../demo/child.js";

/** The compiled service, as `npm start` runs it (the test command builds first). */
export const SERVER_SCRIPT = fileURLToPath(new URL("../../demo/dist/server.js", import.meta.url));

/** Variables of the demo that a test must not inherit from the shell running it. */
const DEMO_VARIABLES = [
  "PORT",
  "HOST",
  "UPSTREAM_URL",
  "UPSTREAM_TIMEOUT",
  "REDIS_URL",
  "REDIS_CLUSTER_NODES",
  "MEMCACHED_URL",
  "DYNAMODB_TABLE",
  "DYNAMODB_ENDPOINT",
  "CACHE_STORE",
  "CACHE_TTL",
  "CACHE_STALE_WHILE_REVALIDATE",
  "CACHE_STALE_IF_ERROR",
  "CACHE_LEASE",
  "CACHE_L1_MAX_TTL",
  "CACHE_STORE_TIMEOUT",
  "CACHE_MAX_ENTRY_SIZE",
  "ADMIN_TOKEN",
  "LOG_LEVEL",
] as const;

function demoEnv(env: Record<string, string | undefined>): Record<string, string | undefined> {
  const out: Record<string, string | undefined> = {};
  for (const name of DEMO_VARIABLES) out[name] = undefined;
  return { ...out, PORT: "0", HOST: "127.0.0.1", LOG_LEVEL: "info", ...env };
}

/** Start `node demo/dist/server.js` with `env` on a free port; resolves once it listens. */
export function startService(env: Record<string, string | undefined>): Promise<Child> {
  return startChild({
    name: "demo service",
    script: SERVER_SCRIPT,
    env: demoEnv(env),
    ready: serverReady,
    timeoutMs: 15_000,
  });
}

/** Run the service expecting it to exit by itself; resolves with its exit code and output. */
export function runServiceToExit(
  env: Record<string, string | undefined>,
  timeoutMs = 10_000,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, [SERVER_SCRIPT], {
      env: { ...process.env, ...demoEnv(env) },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    proc.stdout.on("data", (d) => {
      stdout += d;
    });
    proc.stderr.on("data", (d) => {
      stderr += d;
    });
    const timer = setTimeout(() => {
      proc.kill("SIGKILL");
      reject(new Error(`the service was still running after ${timeoutMs} ms:\n${stdout}${stderr}`));
    }, timeoutMs);
    proc.once("error", reject);
    proc.once("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** The JSON log records a service printed so far. */
export function logRecords(child: Child): Array<Record<string, unknown>> {
  const out: Array<Record<string, unknown>> = [];
  for (const line of child.output()) {
    if (!line.startsWith("{")) continue;
    try {
      out.push(JSON.parse(line) as Record<string, unknown>);
    } catch {
      // not a log record
    }
  }
  return out;
}
