/**
 * Helpers for the multi-process tests (test/resilience/, test/tiers/): demo instances as child
 * processes, timed HTTP requests, and `redis-cli` against the test's own redis-server.
 */
import { execFile } from "node:child_process";
import type { Child } from "../../demo/child.js";
import { startService } from "../demo/helpers.js";

/** The admin token the multi-process tests give the demo. */
export const ADMIN_TOKEN = "fleet-test-admin-token-0123456789abcdef";

/** Start `count` demo instances with the same `env`, in parallel. */
export async function startInstances(
  count: number,
  env: Record<string, string | undefined>,
): Promise<Child[]> {
  const started = await Promise.allSettled(Array.from({ length: count }, () => startService(env)));
  const children = started.flatMap((s) => (s.status === "fulfilled" ? [s.value] : []));
  const failed = started.find((s) => s.status === "rejected");
  if (failed) {
    await stopAll(children);
    throw (failed as PromiseRejectedResult).reason;
  }
  return children;
}

/** Stop every instance (SIGTERM, then SIGKILL); resolves with their exit codes. */
export function stopAll(children: readonly (Child | undefined)[]) {
  return Promise.all(children.map((child) => child?.stop()));
}

/** One answered request, with when it was sent and how long it took (ms, performance clock). */
export interface Timed {
  readonly status: number;
  readonly headers: Headers;
  readonly body: Buffer;
  readonly sentAt: number;
  readonly ms: number;
}

/** A request bounded by `timeoutMs`, so that a stuck response fails its test instead of hanging. */
export async function timed(
  url: string,
  init: RequestInit = {},
  timeoutMs = 15_000,
): Promise<Timed> {
  const sentAt = performance.now();
  const response = await fetch(url, { ...init, signal: AbortSignal.timeout(timeoutMs) });
  const body = Buffer.from(await response.arrayBuffer());
  return {
    status: response.status,
    headers: response.headers,
    body,
    sentAt,
    ms: performance.now() - sentAt,
  };
}

/** `Cache-Status` of a response, or `""`. */
export function cacheStatus(response: { headers: Headers }): string {
  return response.headers.get("cache-status") ?? "";
}

/** Whether a response was answered from a stored entry (fresh). */
export function isHit(response: { headers: Headers }): boolean {
  return /^cachet; hit; ttl=-?\d+$/.test(cacheStatus(response));
}

/** The `title` of a post in a JSON body. */
export function titleOf(response: { body: Buffer }): string {
  return (JSON.parse(response.body.toString()) as { title: string }).title;
}

/**
 * `POST /cache/invalidate` on `service`, with the admin token unless `authorization` is given
 * (`null`: no Authorization header at all).
 */
export function invalidate(
  service: Child,
  body: unknown,
  authorization: string | null = `Bearer ${ADMIN_TOKEN}`,
): Promise<Timed> {
  return timed(`${service.url}/cache/invalidate`, {
    method: "POST",
    headers: {
      "content-type": "application/json",
      ...(authorization === null ? {} : { authorization }),
    },
    body: JSON.stringify(body),
  });
}

/** The `cache` part of `/health`. */
export async function cacheHealth(service: Child): Promise<{
  store: string;
  state: string;
  redis?: string;
  breaker?: string;
  connection?: string;
  lease?: boolean;
  bus?: { state: string; resets: number; lastReset?: string };
}> {
  const response = await timed(`${service.url}/health`);
  if (response.status !== 200) throw new Error(`/health answered ${response.status}`);
  return JSON.parse(response.body.toString()).cache;
}

/** GET `url` until it is a hit (at most `timeoutMs`); returns that response. */
export async function untilHit(url: string, timeoutMs = 5_000): Promise<Timed> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const response = await timed(url);
    if (response.status !== 200) throw new Error(`${url} answered ${response.status}`);
    if (isHit(response)) return response;
    if (performance.now() > deadline) throw new Error(`no hit for ${url} within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** Run `redis-cli -p <port> ...args` and resolve with its output (trimmed). */
export function redisCli(port: number, ...args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(
      "redis-cli",
      ["-p", String(port), ...args],
      { timeout: 10_000, maxBuffer: 64 * 1024 * 1024 },
      (error, stdout, stderr) => {
        if (error) reject(new Error(`redis-cli ${args.join(" ")}: ${error.message} ${stderr}`));
        else resolve(stdout.trim());
      },
    );
  });
}

/** Calls per command since the server started (`INFO commandstats`), lower-case names. */
export async function commandStats(port: number): Promise<Map<string, number>> {
  const info = await redisCli(port, "INFO", "commandstats");
  const out = new Map<string, number>();
  for (const line of info.split("\n")) {
    const match = /^cmdstat_([^:]+):calls=(\d+)/.exec(line.trim());
    if (match) out.set(match[1]!.toLowerCase(), Number(match[2]));
  }
  return out;
}

/** `after - before` per command, keeping only commands that were called. */
export function statsDelta(
  before: Map<string, number>,
  after: Map<string, number>,
): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [name, calls] of after) {
    const delta = calls - (before.get(name) ?? 0);
    if (delta > 0) out[name] = delta;
  }
  return out;
}

/** Commands that walk or wipe the keyspace: a cache must never need them to invalidate. */
export const KEYSPACE_COMMANDS = ["keys", "scan", "flushall", "flushdb", "randomkey"] as const;
