/**
 * The bus between two processes, at the level of the function cache: instance A (this test
 * process) and instance B (test/tiers/fixtures/cache-peer.ts, a child process), both tiered
 * on one real Redis. B holds values in process; once A's write or delete has returned, B never
 * serves the old value past the bus delay.
 */
import assert from "node:assert/strict";
import { type ChildProcess, fork } from "node:child_process";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { type Cache, createCache } from "../../src/index.js";
import { redisStore } from "../../src/stores/redis.js";
import { waitFor } from "../helpers/ports.js";
import { type RedisServer, startRedis } from "../helpers/redis.js";

/** How long an instance may go on serving a value another one replaced. */
const BUS_DELAY_MS = 100;

const PEER = fileURLToPath(new URL("./fixtures/cache-peer.ts", import.meta.url));

interface Peer {
  /** B's values for `keys` (`null` when it has none), and the tier each came from. */
  get(keys: readonly string[]): Promise<{ values: unknown[]; tiers: Array<string | null> }>;
  close(): Promise<void>;
}

function startPeer(redisUrl: string): Promise<Peer> {
  const child: ChildProcess = fork(PEER, [], {
    execArgv: ["--import", "tsx"],
    env: { ...process.env, REDIS_URL: redisUrl },
    stdio: ["ignore", "inherit", "inherit", "ipc"],
  });
  let next = 0;
  const pending = new Map<number, (reply: Record<string, unknown>) => void>();
  let gone: Error | undefined;
  child.once("exit", (code, signal) => {
    gone = new Error(`the peer exited (${code ?? signal})`);
    for (const settle of pending.values()) settle({ error: gone.message });
    pending.clear();
  });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("the peer did not start in 15 s")), 15_000);
    child.once("exit", () => reject(gone));
    child.on("message", (message: Record<string, unknown>) => {
      if (message.ready) {
        clearTimeout(timer);
        resolve({
          get: async (keys) => {
            const { values, tiers } = await call({ op: "get", keys });
            return { values: values as unknown[], tiers: tiers as Array<string | null> };
          },
          close: async () => {
            if (child.exitCode !== null) return;
            const exited = new Promise((r) => child.once("exit", r));
            await call({ op: "close" }).catch(() => {});
            await exited;
          },
        });
        return;
      }
      pending.get(message.id as number)?.(message);
      pending.delete(message.id as number);
    });
  });
  function call(request: Record<string, unknown>): Promise<Record<string, unknown>> {
    const id = next++;
    return new Promise((resolve, reject) => {
      if (gone) return reject(gone);
      // Bounded, so that a stuck peer fails the test with a reason instead of hanging it.
      const timer = setTimeout(() => {
        pending.delete(id);
        reject(new Error(`the peer did not answer ${JSON.stringify(request)} within 10 s`));
      }, 10_000);
      pending.set(id, (reply) => {
        clearTimeout(timer);
        if (reply.error) reject(new Error(String(reply.error)));
        else resolve(reply);
      });
      child.send({ id, ...request });
    });
  }
}

/**
 * Read `keys` on B one round after the other, from `since` until three rounds have been sent
 * `BUS_DELAY_MS` or more after it (however slow a loaded machine makes each round); returns
 * each round's values with when it was sent.
 */
async function readAfter(peer: Peer, keys: readonly string[], since: number) {
  const rounds: Array<{ at: number; values: unknown[] }> = [];
  while (rounds.filter((r) => r.at >= since + BUS_DELAY_MS).length < 3) {
    const at = performance.now();
    rounds.push({ at, values: (await peer.get(keys)).values });
  }
  return rounds;
}

/** Read `key` on B until it comes from B's memory tier, with `value`. */
async function heldInProcess(peer: Peer, key: string, value: unknown): Promise<void> {
  await waitFor(async () => {
    const { values, tiers } = await peer.get([key]);
    assert.deepEqual(values, [value]);
    return tiers[0] === "l1";
  }, `B to hold ${key} in process`);
}

describe("the bus between two processes (function cache, tiered)", { timeout: 60_000 }, () => {
  let redis: RedisServer;
  let a: Cache;
  let b: Peer;

  before(async () => {
    redis = await startRedis();
    // A write that times out is not announced: a loaded machine must not make one time out.
    a = createCache({
      store: redisStore({ url: redis.url }),
      l1: true,
      ttl: 60_000,
      storeTimeout: "1s",
    });
    await a.get("a:warm-up");
    b = await startPeer(redis.url);
  });
  after(async () => {
    await b?.close();
    await a?.close();
    await redis?.stop();
  });

  it("a key updated on A is never served stale by B past the bus delay", async () => {
    const key = "user:1";
    await a.set(key, { version: 0 });
    assert.deepEqual((await b.get([key])).values, [{ version: 0 }]);
    for (let version = 1; version <= 8; version++) {
      // B holds the current value in process (once A's own announcement of it has reached B,
      // which drops the copy it may have read before).
      await heldInProcess(b, key, { version: version - 1 });
      await a.set(key, { version });
      const written = performance.now();
      const rounds = await readAfter(b, [key], written);
      const late = rounds.filter((r) => r.at >= written + BUS_DELAY_MS);
      for (const round of late) assert.deepEqual(round.values, [{ version }], `version ${version}`);
      const firstNew = rounds.findIndex(
        (r) => (r.values[0] as { version: number }).version === version,
      );
      assert.ok(
        rounds
          .slice(firstNew)
          .every((r) => (r.values[0] as { version: number }).version === version),
        "never the old value after the new one",
      );
    }
  });

  it("a key deleted on A is gone from B within the bus delay", async () => {
    const key = "user:2";
    await a.set(key, "here");
    await heldInProcess(b, key, "here");
    await a.delete(key);
    const deleted = performance.now();
    const rounds = await readAfter(b, [key], deleted);
    for (const round of rounds.filter((r) => r.at >= deleted + BUS_DELAY_MS)) {
      assert.deepEqual(round.values, [null]);
    }
  });

  it("200 keys rewritten on A at once: B sees every new value within the bus delay", async () => {
    const keys = Array.from({ length: 200 }, (_, i) => `item:${i}`);
    await Promise.all(keys.map((key) => a.set(key, { round: 1 })));
    await waitFor(
      async () => (await b.get(keys)).tiers.every((t) => t === "l1"),
      "B to hold every key in process",
    );
    await Promise.all(keys.map((key) => a.set(key, { round: 2 })));
    const written = performance.now();
    const rounds = await readAfter(b, keys, written);
    const late = rounds.filter((r) => r.at >= written + BUS_DELAY_MS);
    for (const round of late) {
      const old = round.values.filter((v) => (v as { round: number }).round !== 2);
      assert.equal(old.length, 0, `${old.length} keys still old`);
    }
  });
});
