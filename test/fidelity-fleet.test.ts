// Property test (issue 13, item 1): whatever process A stores, process B reads back equal in
// type and content (isDeepStrictEqual and every prototype), through a Redis-only and a tiered
// cache on one real Redis; A also checks a memory-only round trip. Both processes regenerate
// the fast-check values from one seed, so a failure names the seed to replay.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { type RedisServer, startRedis } from "./helpers/redis.js";

const run = promisify(execFile);
const child = fileURLToPath(new URL("./fixtures/fidelity-child.ts", import.meta.url));
const COUNT = 200;

async function runChild(mode: "write" | "read", url: string, seed: number) {
  const { stdout } = await run(
    process.execPath,
    ["--import", "tsx", child, mode, url, String(seed), String(COUNT)],
    { timeout: 60_000, maxBuffer: 16 * 1024 * 1024 },
  );
  return JSON.parse(stdout) as { count: number; mismatches: string[] };
}

describe("one value semantics across processes and tiers (fast-check)", () => {
  let redis: RedisServer;
  before(async () => {
    redis = await startRedis();
  });
  after(() => redis.stop());

  it(`${COUNT} generated values: B reads what A stored, in memory, Redis-only and tiered`, async () => {
    const seed = Number(process.env.FIDELITY_SEED ?? Date.now() % 2 ** 31);
    const written = await runChild("write", redis.url, seed);
    assert.equal(written.count, COUNT);
    assert.deepEqual(written.mismatches, [], `seed ${seed} (FIDELITY_SEED=${seed} to replay)`);
    const read = await runChild("read", redis.url, seed);
    assert.equal(read.count, COUNT);
    assert.deepEqual(read.mismatches, [], `seed ${seed} (FIDELITY_SEED=${seed} to replay)`);
  });
});
