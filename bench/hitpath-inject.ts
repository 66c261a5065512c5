/**
 * Issue 15, items 2 and 4, measured without the socket: CPU per hit of each target through
 * Fastify's `inject()`, all targets in this one process, in alternating batches, so that the
 * machine's other work moves them all alike. What it isolates is what a hit costs on top of
 * Fastify answering from an `onRequest` hook with the headers a hit carries (`limit-headers`):
 * the kernel's `writev` of the body, which dominates every target's profile under wrk, is not in
 * it. `cachet-redis` includes the Redis client's work (the reply read, parsed and decoded).
 *
 *   node --import tsx bench/hitpath-inject.ts [--keys 1000] [--rounds 15] [--batch 2000]
 *     [--accept br]
 *
 * Imports cachet from src/ (the code of the working tree).
 */
import { parseArgs } from "node:util";
import Fastify, { type FastifyInstance } from "fastify";
import { createClient } from "redis";
import { cachetFastify } from "../src/adapters/fastify.js";
import { createCache } from "../src/cache.js";
import { redisStore } from "../src/stores/redis.js";
import { startRedis } from "../test/helpers/redis.js";
import { median, shuffle } from "./lib/stats.js";
import { hitHeaders } from "./targets/basic.js";

const { values } = parseArgs({
  options: {
    keys: { type: "string", default: "1000" },
    rounds: { type: "string", default: "15" },
    batch: { type: "string", default: "2000" },
    accept: { type: "string" },
  },
});
const KEYS = Number(values.keys);
const ROUNDS = Number(values.rounds);
const BATCH = Number(values.batch);
const JSON_TYPE = "application/json; charset=utf-8";

/** A 24 KB JSON body like the bench's posts. */
const BODY = Buffer.from(
  JSON.stringify(
    Array.from({ length: 100 }, (_, i) => ({
      userId: Math.floor(i / 10) + 1,
      id: i + 1,
      title: `post ${i} title words `.repeat(3),
      body: `post ${i} body text, some words to make it long enough `.repeat(3),
    })),
  ),
);

async function limitHeaders(): Promise<FastifyInstance> {
  const headers = hitHeaders(BODY);
  const app = Fastify({ logger: false });
  app.get(
    "/posts",
    {
      onRequest(_request, reply, _done) {
        reply.code(200);
        reply.headers(headers());
        reply.send(BODY);
      },
    },
    (_request, reply) => {
      reply.code(500).send();
    },
  );
  await app.ready();
  return app;
}

async function cachet(redisUrl: string | undefined, l1: boolean, prefix: string) {
  const cache = redisUrl
    ? createCache({
        store: redisStore({ url: redisUrl, prefix }),
        l1,
        ttl: 600_000,
        l1MaxTtl: 600_000,
        storeTimeout: 2_000,
      })
    : createCache({ ttl: 600_000 });
  const app = Fastify({ logger: false });
  await app.register(cachetFastify, { cache });
  app.get("/posts", { config: { cache: true } }, async (_request, reply) => {
    reply.header("content-type", JSON_TYPE);
    return BODY;
  });
  await app.ready();
  return app;
}

const url = (i: number) => (KEYS === 1 ? "/posts?round=1" : `/posts?k=${(i % KEYS) + 1}`);
const headers = values.accept ? { "accept-encoding": values.accept } : {};

async function main(): Promise<void> {
  const redis = await startRedis();
  const apps = new Map<string, FastifyInstance>([
    ["limit-headers", await limitHeaders()],
    ["cachet-memory", await cachet(undefined, false, "")],
    ["cachet-tiered", await cachet(redis.url, true, "t:")],
    ["cachet-redis", await cachet(redis.url, false, "r:")],
  ]);
  try {
    for (const [name, app] of apps) {
      for (let i = 0; i < KEYS; i++) {
        const res = await app.inject({ url: url(i), headers });
        if (res.statusCode !== 200) throw new Error(`${name}: ${res.statusCode}`);
      }
      await new Promise((r) => setTimeout(r, 1000)); // compression lands
      for (let i = 0; i < KEYS; i++) await app.inject({ url: url(i), headers });
      const hit = await app.inject({ url: url(0), headers });
      if (name !== "limit-headers" && !/hit/.test(String(hit.headers["cache-status"]))) {
        throw new Error(`${name}: not a hit: ${hit.headers["cache-status"]}`);
      }
    }
    const cpu = new Map<string, number[]>([...apps.keys()].map((n) => [n, []]));
    let n = 0;
    // One unrecorded round for the JIT.
    for (let round = -1; round < ROUNDS; round++) {
      for (const name of shuffle([...apps.keys()], round + 7)) {
        const app = apps.get(name)!;
        const c0 = process.cpuUsage();
        for (let i = 0; i < BATCH; i++) await app.inject({ url: url(n++), headers });
        const c1 = process.cpuUsage(c0);
        if (round >= 0) cpu.get(name)!.push((c1.user + c1.system) / BATCH);
      }
    }
    const ref = cpu.get("limit-headers")!;
    console.log(
      `keys ${KEYS}, ${ROUNDS} rounds × ${BATCH} requests per target, accept-encoding: ${values.accept ?? "(none)"}`,
    );
    console.log("");
    console.log(
      "| target | CPU µs per request (median, min–max) | ÷ limit-headers, same round (median, min–max) |",
    );
    console.log("| --- | ---: | ---: |");
    for (const [name, xs] of cpu) {
      const ratios = xs.map((x, i) => x / ref[i]!);
      console.log(
        `| ${name} | ${median(xs).toFixed(1)} (${Math.min(...xs).toFixed(1)}–${Math.max(...xs).toFixed(1)}) | ${median(ratios).toFixed(3)} (${Math.min(...ratios).toFixed(2)}–${Math.max(...ratios).toFixed(2)}) |`,
      );
    }
    // What one Redis-only hit reads from Redis: commands and bytes (INFO commandstats / stats).
    const client = createClient({ url: redis.url });
    await client.connect();
    const counters = async () => {
      const stats = String(await client.sendCommand(["INFO", "commandstats"]));
      const calls = [...stats.matchAll(/^cmdstat_(\w+):calls=(\d+)/gm)]
        .filter((m) => m[1] !== "info")
        .reduce((a, m) => a + Number(m[2]), 0);
      const info = String(await client.sendCommand(["INFO", "stats"]));
      return { calls, out: Number(/^total_net_output_bytes:(\d+)/m.exec(info)?.[1]) };
    };
    const app = apps.get("cachet-redis")!;
    const a = await counters();
    for (let i = 0; i < BATCH; i++) await app.inject({ url: url(n++), headers });
    const b = await counters();
    const entry = Number(await client.sendCommand(["STRLEN", `r:@http:localhost:80${url(0)}`]));
    const head = `r:@http:localhost:80${url(0)}`;
    const keys: string[] = [];
    let stored = 0;
    for (const k of [head, `${head} ~br`, `${head} ~gzip`]) {
      const length = Number(await client.sendCommand(["STRLEN", k]));
      if (length > 0) keys.push(k);
      stored += length;
    }
    console.log("");
    console.log(
      `cachet-redis: ${((b.calls - a.calls - 1) / BATCH).toFixed(2)} commands and ${Math.round((b.out - a.out) / BATCH)} bytes from Redis per hit; the response's entry ${entry} B, ${keys.length} key(s) ${stored} B in all`,
    );
    await client.quit();
  } finally {
    for (const app of apps.values()) await app.close();
    await redis.stop();
  }
}

main().then(
  () => process.exit(0),
  (error) => {
    console.error(error);
    process.exit(1);
  },
);
