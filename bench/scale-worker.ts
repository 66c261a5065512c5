/**
 * One step of `npm run bench:scale` (bench/scale.ts), in a process of its own so that every
 * step starts from an empty heap: `node --expose-gc --import tsx bench/scale-worker.ts <job>`,
 * `<job>` a JSON {@link ScaleJob}. Prints `progress …` lines, then `SCALE_JSON <result>`.
 *
 * - `hits`: N entries, then rounds of `getOrSet` hits on keys drawn at random among them:
 *   CPU µs per hit (this process, and Redis's `INFO cpu`), per-call latency, memory per entry.
 * - `invalidate`: N entries carrying one tag in one namespace; `invalidateTags` and the
 *   namespace's `clear()` timed, then a sample read back (every entry must be gone).
 * - `cold`: K distinct keys nobody asked for yet, requested at once through `getOrSet` with a
 *   100 ms origin: origin calls, per-call latency, and whether every call settled.
 */
import type { Cache } from "cachet";
import { createCache, memoryStore } from "cachet";
import { LRUCache } from "lru-cache";
import { median, percentile } from "./lib/stats.js";
import { redisCommandCalls, redisCpuSeconds } from "./lib/store-cpu.js";

export type ScaleStore = "memory" | "redis";

export type ScaleJob =
  | {
      kind: "hits";
      store: ScaleStore;
      n: number;
      hits: number;
      rounds: number;
      concurrency: number;
      redisPort: number;
    }
  | { kind: "invalidate"; store: ScaleStore; n: number; repeats: number; redisPort: number }
  | {
      kind: "cold";
      store: ScaleStore;
      n: number;
      originMs: number;
      deadlineMs: number;
      redisPort: number;
    };

export interface HitsRound {
  hitsPerSecond: number;
  cpuUs: number;
  redisCpuUs: number;
  redisCmds: number;
  p50Us: number;
  p99Us: number;
  maxUs: number;
}

export interface HitsResult {
  kind: "hits";
  store: ScaleStore;
  n: number;
  fillSeconds: number;
  /** Heap growth after a full GC over N (memory store), or Redis `used_memory` growth over N. */
  bytesPerEntry: number;
  /** Redis: `MEMORY USAGE` of sampled keys, median. */
  memoryUsageSample?: number;
  /** RSS growth over N (memory store). */
  rssPerEntry?: number;
  misses: number;
  factoryCalls: number;
  rounds: HitsRound[];
  /**
   * Memory store only: ns per `get` of a bare lru-cache holding the same N values, on the same
   * random keys, median over the rounds. What random access over N entries costs any map.
   */
  baselineNs?: number;
}

export interface InvalidateResult {
  kind: "invalidate";
  store: ScaleStore;
  n: number;
  fillSeconds: number;
  tagMs: number[];
  namespaceMs: number[];
  /** The first read after each invalidation (it must judge the entry expired), µs. */
  firstReadUs: number[];
  /** Of a sample of entries read back after each invalidation, how many were still there. */
  survivorsAfterTag: number;
  survivorsAfterNamespace: number;
  sampled: number;
}

export interface ColdResult {
  kind: "cold";
  store: ScaleStore;
  n: number;
  originMs: number;
  originCalls: number;
  /** Keys whose origin ran more than once. */
  duplicateCalls: number;
  settled: number;
  fulfilled: number;
  rejected: number;
  rejections: string[];
  wrongValues: number;
  unsettledAtDeadline: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  elapsedMs: number;
  /** The same keys requested again, at once: origin calls (0 when all were stored). */
  secondWaveCalls: number;
  secondWaveMaxMs: number;
  /** The cache's `error` events (by operation and code) and breaker changes, both waves. */
  errors: Record<string, number>;
}

export type ScaleResult = HitsResult | InvalidateResult | ColdResult;

const gc = (globalThis as { gc?: () => void }).gc;
const progress = (line: string) => console.log(`progress ${line}`);

/** A post shaped like the demo's (JSONPlaceholder): about 250 bytes of JSON. */
function post(i: number) {
  return {
    userId: (i % 10) + 1,
    id: i,
    title: `sunt aut facere repellat provident occaecati excepturi ${i}`,
    body: "quia et suscipit\nsuscipit recusandae consequuntur expedita et cum\nreprehenderit molestiae ut ut quas totam\nnostrum rerum est autem sunt rem eveniet architecto",
  };
}

const key = (i: number) => `post:${i}`;

/** mulberry32: a fast seeded PRNG, so that every run draws the same keys. */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

async function makeCache(
  job: ScaleJob,
  options: { lease?: boolean; defaultTimeout?: boolean } = {},
): Promise<Cache> {
  const ttl = "1h";
  if (job.store === "memory") {
    // Large enough for a million entries: this measures growth, not eviction.
    return createCache({ store: memoryStore({ maxSize: 16 * 2 ** 30 }), ttl });
  }
  const { redisStore } = await import("cachet/redis");
  const cache = createCache({
    store: redisStore({ url: `redis://127.0.0.1:${job.redisPort}`, prefix: "scale:" }),
    ttl,
    // A bulk fill and a 10,000-key burst on a shared 2-core machine: a store call may wait
    // longer than the 50 ms default behind its neighbours in the pipeline.
    ...(options.defaultTimeout ? {} : { storeTimeout: "2s" }),
    ...(options.lease ? { lease: true } : {}),
  });
  await cache.ready({ timeout: "5s" });
  return cache;
}

/** Write `n` entries with `setMany`, 1,000 a call, printing progress every tenth. */
async function fill(cache: Cache, n: number, options: { tags?: string[] } = {}): Promise<number> {
  const t0 = performance.now();
  const batch = 1000;
  let reported = 0;
  for (let i = 0; i < n; i += batch) {
    const items = [];
    for (let j = i; j < Math.min(n, i + batch); j++) {
      items.push({ key: key(j), value: post(j), ...(options.tags ? { tags: options.tags } : {}) });
    }
    await cache.setMany(items);
    if (i + batch >= reported + n / 10) {
      reported = i + batch;
      progress(
        `filled ${Math.min(n, i + batch).toLocaleString("en-US")} of ${n.toLocaleString("en-US")}`,
      );
    }
  }
  return (performance.now() - t0) / 1000;
}

function settle(): void {
  gc?.();
  gc?.();
}

async function redisUsedMemory(port: number): Promise<number> {
  const { Redis } = await import("ioredis");
  const r = new Redis({ port, host: "127.0.0.1", lazyConnect: true });
  await r.connect();
  const info = await r.info("memory");
  r.disconnect();
  return Number(/^used_memory:(\d+)/m.exec(info)?.[1]);
}

async function redisMemoryUsage(port: number, keys: string[]): Promise<number> {
  const { Redis } = await import("ioredis");
  const r = new Redis({ port, host: "127.0.0.1", lazyConnect: true });
  await r.connect();
  const sizes: number[] = [];
  for (const k of keys) {
    const v = (await r.call("MEMORY", "USAGE", k, "SAMPLES", "0")) as number | null;
    if (typeof v === "number") sizes.push(v);
  }
  r.disconnect();
  return median(sizes);
}

async function hits(job: Extract<ScaleJob, { kind: "hits" }>): Promise<HitsResult> {
  settle();
  const heap0 = process.memoryUsage().heapUsed;
  const rss0 = process.memoryUsage().rss;
  const used0 = job.store === "redis" ? await redisUsedMemory(job.redisPort) : 0;
  const cache = await makeCache(job);
  const fillSeconds = await fill(cache, job.n);
  settle();
  let bytesPerEntry: number;
  let memoryUsageSample: number | undefined;
  let rssPerEntry: number | undefined;
  if (job.store === "memory") {
    bytesPerEntry = (process.memoryUsage().heapUsed - heap0) / job.n;
    rssPerEntry = (process.memoryUsage().rss - rss0) / job.n;
  } else {
    bytesPerEntry = ((await redisUsedMemory(job.redisPort)) - used0) / job.n;
    const pick = random(7);
    const sample = Array.from({ length: 50 }, () => `scale:${key(Math.floor(pick() * job.n))}`);
    memoryUsageSample = await redisMemoryUsage(job.redisPort, sample);
  }
  let factoryCalls = 0;
  let misses = 0;
  const factory = async () => {
    factoryCalls++;
    return post(-1);
  };
  const rounds: HitsRound[] = [];
  // An unrecorded round first: the JIT, and the connection's first pipeline.
  for (let round = -1; round < job.rounds; round++) {
    const count = round < 0 ? Math.min(job.hits, 20_000) : job.hits;
    const next = random(1000 + round);
    const latencies = new Float64Array(count);
    let issued = 0;
    const cpu0 = process.cpuUsage();
    const redisCpu0 = job.store === "redis" ? await redisCpuSeconds(job.redisPort) : 0;
    const cmds0 = job.store === "redis" ? await redisCommandCalls(job.redisPort) : 0;
    const t0 = performance.now();
    const worker = async () => {
      while (issued < count) {
        const slot = issued++;
        const k = key(Math.floor(next() * job.n));
        const s = performance.now();
        const value = await cache.getOrSet(k, factory);
        latencies[slot] = performance.now() - s;
        if ((value as { id: number }).id === -1) misses++;
      }
    };
    await Promise.all(Array.from({ length: job.concurrency }, worker));
    const elapsed = performance.now() - t0;
    const cpu = process.cpuUsage(cpu0);
    const redisCpu1 = job.store === "redis" ? await redisCpuSeconds(job.redisPort) : 0;
    const cmds1 = job.store === "redis" ? await redisCommandCalls(job.redisPort) : 0;
    if (round < 0) continue;
    const sorted = Array.from(latencies).sort((a, b) => a - b);
    rounds.push({
      hitsPerSecond: count / (elapsed / 1000),
      cpuUs: (cpu.user + cpu.system) / count,
      redisCpuUs: ((redisCpu1 - redisCpu0) * 1e6) / count,
      redisCmds: (cmds1 - cmds0) / count,
      p50Us: percentile(sorted, 50) * 1000,
      p99Us: percentile(sorted, 99) * 1000,
      maxUs: sorted.at(-1)! * 1000,
    });
    progress(
      `hits round ${round + 1}/${job.rounds}: ${Math.round(count / (elapsed / 1000)).toLocaleString("en-US")} hits/s`,
    );
  }
  await cache.clear().catch(() => {});
  await cache.close();
  const baselineNs = job.store === "memory" ? baseline(job.n, job.hits, job.rounds) : undefined;
  return {
    kind: "hits",
    store: job.store,
    n: job.n,
    fillSeconds,
    bytesPerEntry,
    ...(memoryUsageSample !== undefined ? { memoryUsageSample } : {}),
    ...(rssPerEntry !== undefined ? { rssPerEntry } : {}),
    misses,
    factoryCalls,
    rounds,
    ...(baselineNs !== undefined ? { baselineNs } : {}),
  };
}

/** ns per synchronous `get` of a bare lru-cache with the same N values and the same keys. */
function baseline(n: number, hits: number, rounds: number): number {
  settle();
  const lru = new LRUCache<string, object>({ max: n });
  for (let i = 0; i < n; i++) lru.set(key(i), Object.freeze(post(i)));
  const each: number[] = [];
  let found = 0;
  for (let round = -1; round < rounds; round++) {
    const next = random(1000 + round);
    const t0 = performance.now();
    for (let i = 0; i < hits; i++) if (lru.get(key(Math.floor(next() * n))) !== undefined) found++;
    if (round >= 0) each.push(((performance.now() - t0) * 1e6) / hits);
  }
  if (found === 0) throw new Error("baseline: no hit");
  progress(`bare lru-cache baseline: ${median(each).toFixed(0)} ns per get`);
  return median(each);
}

async function invalidate(
  job: Extract<ScaleJob, { kind: "invalidate" }>,
): Promise<InvalidateResult> {
  const root = await makeCache(job);
  const ns = root.namespace("scale");
  const fillSeconds = await fill(ns, job.n, { tags: ["catalog"] });
  settle();
  const pick = random(11);
  const sample = Array.from({ length: 1000 }, () => key(Math.floor(pick() * job.n)));
  const before = (await ns.getMany(sample)).filter((v) => v !== undefined).length;
  if (before !== sample.length) {
    throw new Error(`${before} of ${sample.length} sampled entries found before invalidating`);
  }
  const time = async (fn: () => Promise<void>) => {
    const t0 = performance.now();
    await fn();
    return performance.now() - t0;
  };
  // A full GC leaves the old space to be swept in the background; the first allocations after
  // it wait for the sweeper (hundreds of ms with a million entries), which is the bench's
  // doing, not the cache's. Give it time before timing anything.
  await new Promise((resolve) => setTimeout(resolve, 2000));
  const tagMs: number[] = [];
  const firstReadUs: number[] = [];
  for (let i = 0; i < job.repeats; i++) {
    tagMs.push(await time(() => ns.invalidateTags(["catalog"])));
    // The first read after each invalidation re-checks the entry's tags (the registry moved).
    const r0 = performance.now();
    await ns.get(sample[i % sample.length]!);
    firstReadUs.push((performance.now() - r0) * 1000);
  }
  const survivorsAfterTag = (await ns.getMany(sample)).filter((v) => v !== undefined).length;
  progress(`invalidateTags timed ${job.repeats} times`);
  const namespaceMs: number[] = [];
  for (let i = 0; i < job.repeats; i++) namespaceMs.push(await time(() => ns.clear()));
  const survivorsAfterNamespace = (await ns.getMany(sample)).filter((v) => v !== undefined).length;
  progress(`namespace clear timed ${job.repeats} times`);
  if (job.store === "redis") await root.clear().catch(() => {});
  await root.close();
  return {
    kind: "invalidate",
    store: job.store,
    n: job.n,
    fillSeconds,
    tagMs,
    namespaceMs,
    firstReadUs,
    survivorsAfterTag,
    survivorsAfterNamespace,
    sampled: sample.length,
  };
}

async function cold(job: Extract<ScaleJob, { kind: "cold" }>): Promise<ColdResult> {
  // As the HTTP targets on Redis are set up: one origin call per key across processes.
  // The cold burst runs on cachet's defaults (50 ms store timeout): what an application gets.
  const cache = await makeCache(job, { lease: job.store === "redis", defaultTimeout: true });
  const errors: Record<string, number> = {};
  cache.on("error", (e) => {
    const code = (e.error as { code?: unknown } | undefined)?.code;
    const name = `${e.operation}${typeof code === "string" ? ` ${code}` : ""}`;
    errors[name] = (errors[name] ?? 0) + 1;
  });
  cache.on("breaker", (e) => {
    const name = `breaker ${e.state}`;
    errors[name] = (errors[name] ?? 0) + 1;
  });
  const calls = new Map<string, number>();
  const origin = async (k: string) => {
    calls.set(k, (calls.get(k) ?? 0) + 1);
    await new Promise((resolve) => setTimeout(resolve, job.originMs));
    return { key: k };
  };
  const wave = async () => {
    const latencies: number[] = [];
    const rejections: string[] = [];
    let fulfilled = 0;
    let wrong = 0;
    let settled = 0;
    const t0 = performance.now();
    const all = Array.from({ length: job.n }, (_, i) => {
      const k = `cold:${i}`;
      const s = performance.now();
      return cache
        .getOrSet(k, () => origin(k))
        .then(
          (v) => {
            settled++;
            fulfilled++;
            if ((v as { key?: string }).key !== k) wrong++;
            latencies.push(performance.now() - s);
          },
          (error: unknown) => {
            settled++;
            latencies.push(performance.now() - s);
            if (rejections.length < 5) rejections.push(String((error as Error)?.message ?? error));
          },
        );
    });
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<"deadline">((resolve) => {
      timer = setTimeout(() => resolve("deadline"), job.deadlineMs);
    });
    await Promise.race([Promise.all(all), deadline]);
    clearTimeout(timer);
    return {
      latencies,
      settled,
      fulfilled,
      rejected: settled - fulfilled,
      rejections,
      wrong,
      elapsedMs: performance.now() - t0,
    };
  };
  const first = await wave();
  const originCalls = [...calls.values()].reduce((a, b) => a + b, 0);
  const duplicateCalls = [...calls.values()].filter((c) => c > 1).length;
  progress(`cold wave: ${first.settled} of ${job.n} settled, ${originCalls} origin calls`);
  await new Promise((resolve) => setTimeout(resolve, 200)); // writes behind the responses land
  const before = originCalls;
  const second = await wave();
  const secondWaveCalls = [...calls.values()].reduce((a, b) => a + b, 0) - before;
  await cache.clear().catch(() => {});
  await cache.close();
  return {
    kind: "cold",
    store: job.store,
    n: job.n,
    originMs: job.originMs,
    originCalls,
    duplicateCalls,
    settled: first.settled,
    fulfilled: first.fulfilled,
    rejected: first.rejected,
    rejections: first.rejections,
    wrongValues: first.wrong,
    unsettledAtDeadline: job.n - first.settled,
    p50Ms: percentile(first.latencies, 50),
    p99Ms: percentile(first.latencies, 99),
    maxMs: Math.max(...first.latencies),
    elapsedMs: first.elapsedMs,
    secondWaveCalls,
    secondWaveMaxMs: Math.max(...second.latencies),
    errors,
  };
}

async function main(): Promise<void> {
  const job = JSON.parse(process.argv[2] ?? "") as ScaleJob;
  if (!gc) throw new Error("run with --expose-gc");
  const result: ScaleResult =
    job.kind === "hits"
      ? await hits(job)
      : job.kind === "invalidate"
        ? await invalidate(job)
        : await cold(job);
  console.log(`SCALE_JSON ${JSON.stringify(result)}`);
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    console.error(`scale worker failed: ${error instanceof Error ? error.stack : String(error)}`);
    process.exit(1);
  },
);
