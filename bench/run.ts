/**
 * `npm run bench`: cachet side by side with the constant-buffer limit, no cache, and the peers,
 * each target in its own process, in one run. See bench/README.md for what every figure means.
 */

import { spawn } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import type { BenchArgs, Phase } from "./lib/args.js";
import { PHASES, parseArgs } from "./lib/args.js";
import { ensureBuilt } from "./lib/build.js";
import type { Timed } from "./lib/client.js";
import { burst, loop, timedGet } from "./lib/client.js";
import { disablePinning, pinningDescription } from "./lib/cpu.js";
import type { LoadGenerator, LoadResult } from "./lib/load.js";
import { autocannon, wrk, wrkInstalled, wrkVersion } from "./lib/load.js";
import { machine } from "./lib/machine.js";
import type { TargetProcess, UpstreamProcess } from "./lib/procs.js";
import { ROOT, startTarget, startUpstream } from "./lib/procs.js";
import type {
  ApicacheProbe,
  DemoResult,
  HitRound,
  HitSample,
  HitSummary,
  KillResult,
  MemoryOutcome,
  MissResult,
  Results,
  StampedeResult,
  TargetResult,
  WarmResult,
} from "./lib/report.js";
import { writeReport } from "./lib/report.js";
import { max, median, min, percentile, shuffle, sleep } from "./lib/stats.js";
import type { Outage, StoreServers } from "./lib/stores.js";
import { startStores } from "./lib/stores.js";
import type { MicroResult } from "./micro.js";
import type { ProfiledRun } from "./profile.js";
import type { TargetConfig } from "./targets/common.js";
import type { TargetInfo } from "./targets/registry.js";
import { caches, sharesStore, TARGETS, targetInfo } from "./targets/registry.js";

const UPSTREAM_LATENCY_MS = 100;
const TTL_MS = 60_000;
/** cachet's default `storeTimeout`: with the origin's latency, the longest a request may take while Redis is down. */
const CACHET_STORE_TIMEOUT_MS = 50;
const STAMPEDE_REQUESTS = 500;
/** In each hit round, `limit` is measured again after every LIMIT_EVERY targets. */
const LIMIT_EVERY = 3;
const MEMORY_KEYS = 100_000;
const MEMORY_HEAP_LIMIT_MB = 1024;
const MEMORY_LIBS = ["cachet", "bentocache", "cache-manager", "acd"] as const;

const log = (line: string) => console.log(`[bench] ${line}`);

/**
 * What must be stopped when the run ends, fails or is interrupted (SIGINT/SIGTERM): the store
 * servers (and the cluster's temporary directory) and the upstream. Target processes are
 * killed by procs.ts when this process exits.
 */
const cleanups: Array<() => Promise<void>> = [];
async function cleanUp(): Promise<void> {
  for (let next = cleanups.pop(); next; next = cleanups.pop()) {
    await next().catch((error: unknown) => log(`clean-up: ${String(error)}`));
  }
}

/** The key prefix a cachet target gives its store (bench/targets/cachet.ts). */
const cachetPrefix = (name: string) => `cachet:${name}:`;

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  if (args.list) {
    for (const t of TARGETS) console.log(`${t.name.padEnd(22)} ${t.setup}`);
    return;
  }
  if (args.render !== undefined) {
    const results = JSON.parse(readFileSync(args.render, "utf8")) as Results;
    const written = writeReport(results, args.out ?? dirname(args.render));
    log(`wrote ${written.join(", ")}`);
    return;
  }
  ensureBuilt(ROOT, log);
  const useWrk = args.loadgen ? args.loadgen === "wrk" : wrkInstalled();
  const load: LoadGenerator = useWrk ? wrk : autocannon;
  const loadName = useWrk ? `${wrkVersion()} (-t1)` : "autocannon (in the harness process)";
  const started = performance.now();

  const selected = selectTargets(args);
  const phases = args.phases;
  const complete =
    args.targets === undefined && PHASES.every((p) => phases.has(p)) && args.profile === undefined;
  const outDir = args.out ?? (complete ? join(ROOT, "bench") : join(ROOT, "bench/.tmp"));

  log(
    args.profile !== undefined
      ? `profile of ${args.profile.join(" against ")}; load: ${loadName}`
      : `${args.full ? "full" : "quick"} mode; ${selected.length} targets; phases: ${[...phases].join(", ")}; load: ${loadName}`,
  );
  if (args.noPin) disablePinning();
  log(`CPU placement: ${pinningDescription()}`);
  const facts = machine(ROOT, `${loadName}; CPU placement: ${pinningDescription()}`);
  const stored = args.profile !== undefined ? args.profile.map(targetInfo) : selected;
  const stores = await startStores(
    {
      cluster: stored.some((t) => t.storage === "cluster"),
      memcached: stored.some((t) => t.storage === "memcached"),
    },
    log,
  );
  cleanups.push(() => stores.stop());
  const { redis } = stores;
  const upstream = await startUpstream(UPSTREAM_LATENCY_MS);
  cleanups.push(() => upstream.stop());
  log(`fake upstream on ${upstream.url} (${UPSTREAM_LATENCY_MS} ms latency)`);
  const config = (name: string): TargetConfig => ({
    name,
    upstreamUrl: upstream.url,
    redisUrl: redis.url,
    redisPort: redis.port,
    clusterNodes: stores.cluster?.rootNodes.map((n) => n.url) ?? [],
    memcachedServers: stores.memcached?.servers ?? "",
    ttlMs: TTL_MS,
  });

  try {
    if (args.profile !== undefined) {
      const runs: ProfiledRun[] = [];
      for (const name of args.profile) {
        runs.push(await profile(args, targetInfo(name), config, load));
      }
      const { writeComparison } = await import("./profile.js");
      const compared = writeComparison(runs, join(ROOT, "bench/.tmp/profiles"));
      if (compared) log(`comparison: ${compared}`);
      return;
    }

    // Started three at a time (start-up is mostly CPU: loading and compiling modules).
    const procs = new Map<string, TargetProcess>();
    for (let i = 0; i < selected.length; i += 3) {
      const batch = selected.slice(i, i + 3);
      const started = await Promise.all(batch.map((t) => startTarget(config(t.name))));
      for (const [j, t] of batch.entries()) procs.set(t.name, started[j]!);
    }
    log(`started ${procs.size} target processes`);

    const results = new Map<string, TargetResult>();
    for (const t of selected) {
      const proc = procs.get(t.name)!;
      results.set(t.name, { name: t.name, info: t, warm: await warm(proc) });
    }

    let rounds: HitRound[] = [];
    if (phases.has("hits")) {
      rounds = await hitRounds(args, selected, procs, load, stores, upstream);
      summariseHits(rounds, results, procs);
      for (const t of selected) {
        const usage = await procs.get(t.name)!.usage();
        const r = results.get(t.name)!;
        r.memoryAfterHits = { rss: usage.memory.rss, heapUsed: usage.memory.heapUsed };
      }
    }
    if (phases.has("misses")) {
      for (const t of selected.filter((t) => t.family !== "limit")) {
        results.get(t.name)!.misses = await misses(procs.get(t.name)!, args.misses);
      }
      log("misses timed");
    }
    if (phases.has("stampede")) {
      for (const t of selected.filter(caches)) {
        results.get(t.name)!.stampede = await stampede(t, procs.get(t.name)!, config, upstream);
        log(`stampede ${t.name}: ${JSON.stringify(results.get(t.name)!.stampede)}`);
      }
    }
    if (phases.has("redis-kill")) {
      for (const t of selected.filter(sharesStore)) {
        // Cache the key first: for a cluster, the outage kills the master that holds it.
        await timedGet(`${procs.get(t.name)!.url}/posts`, false, 30_000);
        const outage = await stores.outage(t.storage, cachetPrefix(t.name));
        results.get(t.name)!.redisKill = await storeKill(args, procs.get(t.name)!, outage);
        log(`store kill ${t.name}: ${JSON.stringify(results.get(t.name)!.redisKill)}`);
      }
    }
    for (const [name, proc] of procs) {
      // The targets' own counters (store errors), over the whole run.
      results.get(name)!.stats = await proc.usage().then(
        (u) => u.stats,
        () => ({ "process gone": 1 }),
      );
      await proc.stop();
    }

    const memory = phases.has("memory") ? await memoryPhase(upstream.url) : undefined;
    const micro = phases.has("micro") ? await microPhase(upstream.url, args.full) : undefined;
    const demo = phases.has("demo") ? await demoPhase() : undefined;

    const report: Results = {
      label: args.label,
      mode: args.full ? "full" : "quick",
      complete,
      settings: {
        rounds: args.rounds,
        duration: args.duration,
        warmup: args.warmup,
        connections: args.connections,
        misses: args.misses,
        seed: args.seed,
        upstreamLatencyMs: UPSTREAM_LATENCY_MS,
        ttlMs: TTL_MS,
        stampedeRequests: STAMPEDE_REQUESTS,
        limitEvery: LIMIT_EVERY,
        memoryKeys: MEMORY_KEYS,
        memoryHeapLimitMb: MEMORY_HEAP_LIMIT_MB,
        cachetStoreTimeoutMs: CACHET_STORE_TIMEOUT_MS,
        phases: [...phases],
        command: `npm run bench${process.argv.length > 2 ? ` -- ${process.argv.slice(2).map(shellQuote).join(" ")}` : ""}`,
      },
      machine: facts,
      loadAtEnd: (await import("node:os")).loadavg().map((l) => Math.round(l * 100) / 100),
      elapsedSeconds: Math.round((performance.now() - started) / 1000),
      targets: selected.map((t) => results.get(t.name)!),
      rounds,
      memory,
      micro,
      demo,
      apicache: await apicacheProbe(),
    };
    const written = writeReport(report, outDir);
    log(`done in ${report.elapsedSeconds} s; wrote ${written.join(", ")}`);
  } finally {
    await cleanUp();
  }
}

/** An argument as a shell would need it written. */
function shellQuote(arg: string): string {
  return /^[\w.,=/:@%+-]+$/.test(arg) ? arg : `'${arg.replace(/'/g, "'\\''")}'`;
}

function selectTargets(args: BenchArgs): TargetInfo[] {
  if (args.targets === undefined) return [...TARGETS];
  const names = new Set(["limit", "limit-aa", ...args.targets]);
  for (const n of names) targetInfo(n); // fails on an unknown name
  return TARGETS.filter((t) => names.has(t.name));
}

/** The first request (a miss: it fills the cache), then one more that must be a hit. */
async function warm(proc: TargetProcess): Promise<WarmResult> {
  const first = await timedGet(`${proc.url}/posts`, false, 30_000);
  if (first.status !== 200) {
    throw new Error(`${proc.name}: first GET /posts answered ${first.status} ${first.error ?? ""}`);
  }
  await sleep(50); // a cache may finish storing just after the response
  const second = await timedGet(`${proc.url}/posts`, false, 30_000);
  if (second.status !== 200)
    throw new Error(`${proc.name}: second GET /posts answered ${second.status}`);
  const status = second.headers["cache-status"] ?? second.headers["apicache-store"];
  return {
    firstMs: first.ms,
    bytes: second.bytes,
    secondMs: second.ms,
    headers: typeof status === "string" ? status : undefined,
  };
}

async function usageOf(proc: TargetProcess): Promise<number> {
  const u = await proc.usage();
  return u.cpu.user + u.cpu.system;
}

/** Every target, every round, in a shuffled order per round; `limit` is in every round. */
async function hitRounds(
  args: BenchArgs,
  selected: readonly TargetInfo[],
  procs: Map<string, TargetProcess>,
  load: LoadGenerator,
  stores: StoreServers,
  upstream: UpstreamProcess,
): Promise<HitRound[]> {
  if (args.warmup > 0) {
    log(`JIT warm-up: ${args.warmup} s of load per target (not recorded)`);
    for (const t of selected) {
      await load({
        url: `${procs.get(t.name)!.url}/posts`,
        connections: args.connections,
        seconds: args.warmup,
      });
    }
  }
  const rounds: HitRound[] = [];
  const limitInfo = targetInfo("limit");
  for (let round = 0; round < args.rounds; round++) {
    // `limit` opens the round and comes back after every LIMIT_EVERY targets, so that every
    // target is compared with the limit measured just before and just after it.
    const others = shuffle(
      selected.filter((t) => t.name !== "limit"),
      args.seed + round,
    );
    const sequence: TargetInfo[] = [limitInfo];
    others.forEach((t, i) => {
      sequence.push(t);
      if ((i + 1) % LIMIT_EVERY === 0 || i === others.length - 1) sequence.push(limitInfo);
    });
    const runs: { name: string; sample: HitSample }[] = [];
    for (const t of sequence) {
      const proc = procs.get(t.name)!;
      // A key of this round's, warmed just before the run: every target's entry is seconds old
      // while it is measured, so a TTL expiry (and its origin call) never falls inside a hit
      // run. Expiry and misses are measured by the misses and stampede phases.
      const url = `${proc.url}/posts?round=${round + 1}`;
      await timedGet(url, false, 30_000);
      const cpu0 = await usageOf(proc);
      const store0 = await stores.cpuSeconds(t.storage);
      const calls0 = await upstream.calls();
      const result: LoadResult = await load({
        url,
        connections: args.connections,
        seconds: args.duration,
      });
      const cpu1 = await usageOf(proc);
      const store1 = await stores.cpuSeconds(t.storage);
      const calls1 = await upstream.calls();
      const n = Math.max(1, result.requests);
      runs.push({
        name: t.name,
        sample: {
          ...result,
          cpuUsPerRequest: (cpu1 - cpu0) / n,
          storeCpuUsPerRequest: ((store1 - store0) * 1e6) / n,
          upstreamCalls: calls1 - calls0,
          ratio: 1,
          limitRps: result.rps,
        },
      });
    }
    const samples: HitRound["samples"] = {};
    const limitRuns = runs.filter((r) => r.name === "limit").map((r) => r.sample);
    runs.forEach((run, i) => {
      if (run.name === "limit") return;
      const before = runs.slice(0, i).findLast((r) => r.name === "limit")!.sample.rps;
      const after = runs.slice(i + 1).find((r) => r.name === "limit")!.sample.rps;
      const limitRps = (before + after) / 2;
      samples[run.name] = { ...run.sample, ratio: run.sample.rps / limitRps, limitRps };
    });
    // limit's own figures: its median run (by req/s) stands for the round.
    const sorted = [...limitRuns].sort((a, b) => a.rps - b.rps);
    samples.limit = sorted[(sorted.length - 1) >> 1]!;
    rounds.push({
      round: round + 1,
      order: runs.map((r) => r.name),
      samples,
      limitRps: limitRuns.map((s) => s.rps),
    });
    log(
      `round ${round + 1}/${args.rounds}: limit ${limitRuns.map((s) => Math.round(s.rps)).join("/")} req/s; ` +
        others.map((t) => `${t.name} ${samples[t.name]!.ratio.toFixed(2)}`).join(", "),
    );
  }
  return rounds;
}

function summariseHits(
  rounds: readonly HitRound[],
  results: Map<string, TargetResult>,
  procs: Map<string, TargetProcess>,
): void {
  for (const name of procs.keys()) {
    const samples = rounds.map((r) => r.samples[name]!);
    const ratios = rounds.map((r) => r.samples[name]!.ratio);
    const framework = targetInfo(name).framework;
    const own = framework === "fastify" ? undefined : `limit-${framework}`;
    const ownRatios =
      own && own !== name && rounds.every((r) => r.samples[own])
        ? rounds.map((r) => r.samples[name]!.rps / r.samples[own]!.rps)
        : undefined;
    const summary: HitSummary = {
      rps: median(samples.map((s) => s.rps)),
      ratio: median(ratios),
      ratioMin: min(ratios),
      ratioMax: max(ratios),
      ...(ownRatios ? { ratioOwn: median(ownRatios) } : {}),
      p50: median(samples.map((s) => s.p50)),
      p99: median(samples.map((s) => s.p99)),
      max: max(samples.map((s) => s.max)),
      cpuUsPerRequest: median(samples.map((s) => s.cpuUsPerRequest)),
      storeCpuUsPerRequest: median(samples.map((s) => s.storeCpuUsPerRequest)),
      upstreamCalls: samples.reduce((a, s) => a + s.upstreamCalls, 0),
      non2xx: samples.reduce((a, s) => a + s.non2xx, 0),
      errors: samples.reduce((a, s) => a + s.errors, 0),
      requests: samples.reduce((a, s) => a + s.requests, 0),
      bytesPerResponse: median(samples.map((s) => s.bytes / Math.max(1, s.requests))),
    };
    results.get(name)!.hits = summary;
  }
}

/** Sequential misses, each on a key never seen before (a fresh query string). */
async function misses(proc: TargetProcess, count: number): Promise<MissResult> {
  const times: number[] = [];
  for (let i = 0; i < count; i++) {
    const r = await timedGet(`${proc.url}/posts?miss=${Date.now()}-${i}`, false, 30_000);
    if (r.status !== 200)
      throw new Error(`${proc.name}: miss answered ${r.status} ${r.error ?? ""}`);
    times.push(r.ms);
  }
  return { count, median: median(times), max: max(times), min: min(times) };
}

/** Wait until the upstream's counter stops moving (in-flight calls land), then read it. */
async function settledCalls(upstream: UpstreamProcess): Promise<number> {
  let last = await upstream.calls();
  for (let i = 0; i < 20; i++) {
    await sleep(150);
    const now = await upstream.calls();
    if (now === last) return now;
    last = now;
  }
  return last;
}

function statuses(records: readonly Timed[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const r of records) {
    const k = r.status === 0 ? "failed" : String(r.status);
    out[k] = (out[k] ?? 0) + 1;
  }
  return out;
}

/** 500 concurrent cold requests of one new key: in one process, and split across two. */
async function stampede(
  t: TargetInfo,
  proc: TargetProcess,
  config: (name: string) => TargetConfig,
  upstream: UpstreamProcess,
): Promise<StampedeResult> {
  const tag = `${Date.now()}`;
  const calls0 = await settledCalls(upstream);
  const one = await burst(`${proc.url}/posts?stampede=one-${tag}`, STAMPEDE_REQUESTS);
  const calls1 = await settledCalls(upstream);
  const result: StampedeResult = {
    oneProcess: {
      upstreamCalls: calls1 - calls0,
      statuses: statuses(one),
      slowestMs: max(one.map((r) => r.ms)),
    },
  };
  if (!sharesStore(t)) return result;

  const second = await startTarget(config(t.name));
  try {
    // Connect the second process to its store (its own first request), then measure.
    await timedGet(`${second.url}/posts?stampede=warm-${tag}`, false, 30_000);
    const calls2 = await settledCalls(upstream);
    const half = STAMPEDE_REQUESTS / 2;
    const key = `/posts?stampede=two-${tag}`;
    const [a, b] = await Promise.all([
      burst(`${proc.url}${key}`, half),
      burst(`${second.url}${key}`, half),
    ]);
    const calls3 = await settledCalls(upstream);
    result.twoProcesses = {
      upstreamCalls: calls3 - calls2,
      statuses: statuses([...a, ...b]),
      slowestMs: max([...a, ...b].map((r) => r.ms)),
    };
  } finally {
    await second.stop();
  }
  return result;
}

/**
 * Closed-loop load on a warm key while the target's store (Redis, the cluster master holding
 * the key, memcached) is killed (SIGKILL) and later restarted (empty): failures, and how long
 * requests took while it was down.
 */
async function storeKill(
  args: BenchArgs,
  proc: TargetProcess,
  outage: Outage,
): Promise<KillResult> {
  const seconds = args.full ? 12 : 6;
  const killAt = args.full ? 3000 : 1500;
  const restartAt = args.full ? 8000 : 3500;
  await timedGet(`${proc.url}/posts`, false, 30_000); // the key is cached before the run
  await sleep(100);
  let killedAt: number | undefined;
  let restartedAt: number | undefined;
  let busy = false;
  const { records, t0 } = await loop(`${proc.url}/posts`, 50, seconds, 15_000, async (elapsed) => {
    if (busy) return;
    if (killedAt === undefined && elapsed >= killAt) {
      busy = true;
      await outage.kill();
      killedAt = performance.now();
      busy = false;
    } else if (killedAt !== undefined && restartedAt === undefined && elapsed >= restartAt) {
      busy = true;
      await outage.restart();
      restartedAt = performance.now();
      busy = false;
    }
  });
  if (killedAt === undefined || restartedAt === undefined) {
    throw new Error(`store kill: the run ended before ${outage.what} was killed and restarted`);
  }
  // Not measured; a failure here is logged, not fatal (the figures above are complete).
  await outage.settle().catch((error: unknown) => log(`after the outage: ${String(error)}`));
  const down = records.filter((r) => r.start < restartedAt! && r.end > killedAt!);
  const after = records.filter((r) => r.start >= restartedAt!);
  const threshold = CACHET_STORE_TIMEOUT_MS + UPSTREAM_LATENCY_MS;
  return {
    killed: outage.what,
    seconds,
    downMs: restartedAt - killedAt,
    killedAtMs: killedAt - t0,
    requests: records.length,
    failed: records.filter((r) => r.status !== 200).length,
    failures: [
      ...new Set(
        records.filter((r) => r.status !== 200).map((r) => r.error ?? `status ${r.status}`),
      ),
    ].slice(0, 3),
    duringOutage: down.length,
    failedDuringOutage: down.filter((r) => r.status !== 200).length,
    slowestDuringOutageMs: max(down.map((r) => r.ms)),
    p99DuringOutageMs: percentile(
      down.map((r) => r.ms),
      99,
    ),
    overThresholdDuringOutage: down.filter((r) => r.ms > threshold).length,
    thresholdMs: threshold,
    slowestAfterRestartMs: max(after.map((r) => r.ms)),
    overOneSecond: records.filter((r) => r.ms > 1000).length,
  };
}

function runChild(
  args: readonly string[],
  marker: string,
  onLine?: (line: string) => void,
): Promise<{ json: string | undefined; code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, args, { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    let json: string | undefined;
    let pending = "";
    proc.stdout.on("data", (d: Buffer) => {
      pending += d.toString();
      const lines = pending.split("\n");
      pending = lines.pop() ?? "";
      for (const line of lines) {
        if (line.startsWith(`${marker} `)) json = line.slice(marker.length + 1);
        else {
          output = `${output}${line}\n`.slice(-4000);
          onLine?.(line);
        }
      }
    });
    proc.stderr.on("data", (d: Buffer) => {
      output = (output + d.toString()).slice(-4000);
    });
    proc.once("error", reject);
    proc.once("exit", (code) => resolve({ json, code, output }));
  });
}

/** Heap and RSS after 100,000 distinct keys, one process per library, two at a time. */
async function memoryPhase(upstreamUrl: string): Promise<MemoryOutcome[]> {
  log(
    `memory: ${MEMORY_KEYS.toLocaleString("en-US")} distinct keys per library (heap capped at ${MEMORY_HEAP_LIMIT_MB} MiB)`,
  );
  const one = async (lib: string): Promise<MemoryOutcome> => {
    let lastProgress = 0;
    const child = await runChild(
      [
        "--expose-gc",
        `--max-old-space-size=${MEMORY_HEAP_LIMIT_MB}`,
        "--import",
        "tsx",
        join(ROOT, "bench/memory.ts"),
        lib,
        upstreamUrl,
        String(MEMORY_KEYS),
      ],
      "MEMORY_JSON",
      (line) => {
        const m = /^progress (\d+)/.exec(line);
        if (m) lastProgress = Number(m[1]);
      },
    );
    if (child.json) return { lib, result: JSON.parse(child.json) };
    const oom = /heap out of memory|Allocation failed/i.test(child.output);
    return {
      lib,
      failure: oom
        ? `ran out of heap (${MEMORY_HEAP_LIMIT_MB} MiB) after more than ${lastProgress.toLocaleString("en-US")} keys`
        : `exited ${child.code}: ${child.output.trim().split("\n").slice(-3).join(" / ")}`,
    };
  };
  const out: MemoryOutcome[] = [];
  for (let i = 0; i < MEMORY_LIBS.length; i += 2) {
    out.push(...(await Promise.all(MEMORY_LIBS.slice(i, i + 2).map(one))));
  }
  for (const o of out) log(`memory ${o.lib}: ${o.failure ?? JSON.stringify(o.result)}`);
  return out;
}

async function microPhase(upstreamUrl: string, full: boolean): Promise<MicroResult[]> {
  log("micro-benchmarks (tinybench)");
  const child = await runChild(
    ["--import", "tsx", join(ROOT, "bench/micro.ts"), upstreamUrl, full ? "2000" : "500"],
    "MICRO_JSON",
  );
  if (!child.json) throw new Error(`micro-benchmarks failed (${child.code}):\n${child.output}`);
  return JSON.parse(child.json) as MicroResult[];
}

/** `npm run demo` (node demo/dist/compare.js), its table parsed. */
async function demoPhase(): Promise<DemoResult> {
  log("npm run demo (node demo/dist/compare.js)");
  const child = await runChild([join(ROOT, "demo/dist/compare.js")], "\u0000never");
  const text = child.output;
  const row = (label: string) => {
    const m = new RegExp(`${label}[^\\n]*?\\s([\\d.]+) ms\\s+([\\d.]+) ms\\s+(\\d+)`).exec(text);
    return m ? { median: Number(m[1]), p95: Number(m[2]), upstreamCalls: Number(m[3]) } : undefined;
  };
  const before = row("before \\(no cache\\)");
  const after = row("after \\(memory cache\\)");
  return {
    exitCode: child.code,
    before,
    after,
    speedup: before && after ? before.median / after.median : undefined,
    output: text.trim().split("\n").slice(-8).join("\n"),
  };
}

/** apicache reads Redis only when `redisClient.connected` is true: check the installed clients. */
async function apicacheProbe(): Promise<ApicacheProbe> {
  const { Redis } = await import("ioredis");
  const { createClient } = await import("redis");
  const io = new Redis({ lazyConnect: true });
  const nodeRedis = createClient();
  const probe = {
    ioredisConnected: String((io as unknown as { connected?: unknown }).connected),
    nodeRedisConnected: String((nodeRedis as unknown as { connected?: unknown }).connected),
  };
  io.disconnect();
  return probe;
}

/**
 * `--profile <target>`: a V8 CPU profile of the target's main thread while it is under load
 * (after a JIT warm-up), then a summary: where the time goes, by area and by function.
 */
async function profile(
  args: BenchArgs,
  info: TargetInfo,
  config: (name: string) => TargetConfig,
  load: LoadGenerator,
): Promise<ProfiledRun> {
  const dir = join(ROOT, "bench/.tmp/profiles");
  mkdirSync(dir, { recursive: true });
  const proc = await startTarget(config(info.name));
  try {
    await warm(proc);
    const url = `${proc.url}/posts`;
    await load({ url, connections: args.connections, seconds: Math.max(args.warmup, 2) });
    const seconds = Math.max(args.duration, 5);
    const file = join(dir, `${info.name}.cpuprofile`);
    await proc.profileStart();
    const result = await load({ url, connections: args.connections, seconds });
    await proc.profileStop(file);
    log(
      `${info.name}: ${Math.round(result.rps)} req/s, p99 ${result.p99.toFixed(2)} ms over ${seconds} s`,
    );
    const { summariseFile } = await import("./profile.js");
    const summary = summariseFile(file, `${info.name} under load`, result);
    const md = join(dir, `${info.name}.md`);
    writeFileSync(md, summary);
    console.log(summary);
    log(`profile: ${file}; summary: ${md}`);
    return { name: info.name, file, requests: result.requests };
  } finally {
    await proc.stop();
  }
}

let interrupted: NodeJS.Signals | undefined;
for (const [signal, code] of [
  ["SIGINT", 130],
  ["SIGTERM", 143],
] as const) {
  process.once(signal, () => {
    interrupted = signal;
    log(`${signal}: stopping the servers`);
    void cleanUp().finally(() => process.exit(code));
  });
}
main().then(
  () => process.exit(0),
  (error: unknown) => {
    // Interrupted: the run fails on the servers going away; the signal's handler exits.
    if (interrupted) return;
    console.error(`[bench] failed: ${error instanceof Error ? error.stack : String(error)}`);
    void cleanUp().finally(() => process.exit(1));
  },
);

export type { Phase };
