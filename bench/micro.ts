/**
 * Micro-benchmarks (tinybench), run by bench/run.ts in their own process: a memory hit through
 * cachet's `getOrSet`/`get`/`wrap` next to a bare lru-cache `get` and the peers' memory hits;
 * `wrap` key building; entry encode/decode. Prints one JSON line (`MICRO_JSON …`).
 *
 * Fast operations are timed in batches of {@link BATCH} calls per sample, so that the timer's
 * own cost (tens of ns) does not swamp them; the figures are per call. Async APIs are awaited,
 * as their callers do.
 *
 * Usage: node --import tsx bench/micro.ts <upstream-url> [timeMs]
 */
import { createCache as createAcd } from "async-cache-dedupe";
import { BentoCache, bentostore } from "bentocache";
import { memoryDriver } from "bentocache/drivers/memory";
import { createCache as createCacheManager } from "cache-manager";
import type { Entry } from "cachet";
import {
  argsKey,
  createCache,
  decodeEntry,
  encodeEntry,
  jsonSerializer,
  rawSerializer,
} from "cachet";
import { LRUCache } from "lru-cache";
import { Bench } from "tinybench";

export interface MicroResult {
  readonly name: string;
  readonly group: string;
  /** Calls per second (mean over samples). */
  readonly opsPerSec: number;
  /** Nanoseconds per call (mean). */
  readonly nsPerOp: number;
  /** Relative margin of error of the mean, %. */
  readonly rme: number;
  readonly samples: number;
  readonly batch: number;
}

const BATCH = 1000;

async function main(): Promise<void> {
  const upstreamUrl = process.argv[2];
  const time = Number(process.argv[3] ?? "500");
  if (!upstreamUrl) throw new Error("usage: micro.ts <upstream-url> [timeMs]");
  // The posts, as a handler would hold them (parsed), and as the framework would send them.
  const text = await (await fetch(`${upstreamUrl}/posts`)).text();
  const posts = JSON.parse(text) as object;
  const bytes = Buffer.from(JSON.stringify(posts), "utf8");
  const factory = () => JSON.parse(text) as unknown;
  const key = "posts";

  const lru = new LRUCache<string, object>({ max: 1000 });
  lru.set(key, posts);

  const cachet = createCache({ ttl: 60_000 });
  await cachet.getOrSet(key, factory);
  const getPosts = cachet.wrap(async function getPosts(_query: { userId: number; page: number }) {
    return factory();
  });
  const query = { userId: 1, page: 2 };
  await getPosts(query);

  const bento = new BentoCache({
    default: "cache",
    stores: { cache: bentostore().useL1Layer(memoryDriver({ maxSize: "100mb" })) },
  });
  await bento.getOrSet({ key, factory, ttl: 60_000 });

  const manager = createCacheManager({ ttl: 60_000 });
  await manager.wrap(key, factory);

  const acd = createAcd({ ttl: 60, storage: { type: "memory" } }).define("getPosts", (_k: string) =>
    factory(),
  );
  await acd.getPosts(key);

  const longArgs = [{ filter: "x".repeat(200), page: 3, sort: ["title", "id"] }];
  const now = Date.now();
  const entry: Entry = {
    value: posts,
    createdAt: now,
    freshUntil: now + 60_000,
    staleUntil: now + 60_000,
    tags: [],
  };
  const rawEntry: Entry = { ...entry, value: bytes };
  const encoded = encodeEntry(entry, jsonSerializer);
  const encodedRaw = encodeEntry(rawEntry, rawSerializer);

  const bench = new Bench({ time, warmupTime: Math.min(200, time), throws: true });
  const results: MicroResult[] = [];
  const groups = new Map<string, { group: string; batch: number }>();
  const add = (group: string, name: string, batch: number, fn: () => unknown) => {
    groups.set(name, { group, batch });
    bench.add(name, fn);
  };
  const sink: unknown[] = [];

  // Memory hit: one key, already cached.
  add("memory hit", "lru-cache get (bare)", BATCH, () => {
    for (let i = 0; i < BATCH; i++) sink[0] = lru.get(key);
  });
  add("memory hit", "lru-cache get, awaited (floor of any async API)", BATCH, async () => {
    for (let i = 0; i < BATCH; i++) sink[0] = await lru.get(key);
  });
  add("memory hit", "cachet getOrSet", BATCH, async () => {
    for (let i = 0; i < BATCH; i++) sink[0] = await cachet.getOrSet(key, factory);
  });
  add("memory hit", "cachet getOrSet, call only (not awaited)", BATCH, () => {
    for (let i = 0; i < BATCH; i++) sink[0] = cachet.getOrSet(key, factory);
  });
  add("memory hit", "cachet get", BATCH, async () => {
    for (let i = 0; i < BATCH; i++) sink[0] = await cachet.get(key);
  });
  add("memory hit", "bentocache getOrSet", BATCH, async () => {
    for (let i = 0; i < BATCH; i++) sink[0] = await bento.getOrSet({ key, factory, ttl: 60_000 });
  });
  add("memory hit", "bentocache get", BATCH, async () => {
    for (let i = 0; i < BATCH; i++) sink[0] = await bento.get({ key });
  });
  add("memory hit", "cache-manager wrap", BATCH, async () => {
    for (let i = 0; i < BATCH; i++) sink[0] = await manager.wrap(key, factory);
  });
  add("memory hit", "cache-manager get", BATCH, async () => {
    for (let i = 0; i < BATCH; i++) sink[0] = await manager.get(key);
  });
  add("memory hit", "async-cache-dedupe define'd call", BATCH, async () => {
    for (let i = 0; i < BATCH; i++) sink[0] = await acd.getPosts(key);
  });

  // wrap: the whole call (key from the arguments, then the memory hit), and the key alone.
  add("wrap keys", "cachet wrap hit ({ userId, page })", BATCH, async () => {
    for (let i = 0; i < BATCH; i++) sink[0] = await getPosts(query);
  });
  add("wrap keys", "argsKey ({ userId, page })", BATCH, () => {
    for (let i = 0; i < BATCH; i++) sink[0] = argsKey([query]);
  });
  add("wrap keys", "argsKey (long, hashed)", BATCH, () => {
    for (let i = 0; i < BATCH; i++) sink[0] = argsKey(longArgs);
  });

  // Entries: the posts as JSON (serializer included), and as bytes (the envelope alone).
  add("entry", `encodeEntry json (${encoded.length} B)`, 1, () => {
    sink[0] = encodeEntry(entry, jsonSerializer);
  });
  add("entry", `decodeEntry json (${encoded.length} B)`, 1, () => {
    sink[0] = decodeEntry("posts", encoded, jsonSerializer);
  });
  add("entry", `encodeEntry raw (${encodedRaw.length} B)`, BATCH, () => {
    for (let i = 0; i < BATCH; i++) sink[0] = encodeEntry(rawEntry, rawSerializer);
  });
  add("entry", `decodeEntry raw (${encodedRaw.length} B)`, BATCH, () => {
    for (let i = 0; i < BATCH; i++) sink[0] = decodeEntry("posts", encodedRaw, rawSerializer);
  });

  await bench.run();
  for (const task of bench.tasks) {
    const r = task.result;
    const meta = groups.get(task.name)!;
    if (r.state !== "completed") throw new Error(`${task.name}: ${r.state}`);
    const nsPerSample = r.latency.mean * 1e6;
    results.push({
      name: task.name,
      group: meta.group,
      opsPerSec: (1e9 / nsPerSample) * meta.batch,
      nsPerOp: nsPerSample / meta.batch,
      rme: r.latency.rme,
      samples: r.latency.samplesCount,
      batch: meta.batch,
    });
  }
  await cachet.close();
  await bento.disconnectAll();
  await manager.disconnect();
  console.log(`MICRO_JSON ${JSON.stringify(results)}`);
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    console.error(error instanceof Error ? error.stack : error);
    process.exit(1);
  },
);
