/**
 * `npm run bench:working-set`: the hit path over a working set of N distinct URLs
 * (`/posts?k=1..N`, 1,000 by default) instead of one URL. With one URL, 50 concurrent hits of a
 * Redis-backed cache are one coalesced Redis read; here every hit needs a lookup of its own.
 * Every target is warmed once (N misses), then wrk cycles over the N URLs (a Lua script chooses
 * the path of every request, round-robin or random) in rounds, with `limit` (Fastify answering a
 * constant Buffer, asked for the same URLs) measured before and after every few targets. Per
 * target: req/s × limit, CPU µs per hit of the server process and of Redis, Redis commands per
 * hit, and the origin calls during the measured runs. See bench/README.md, "Working set".
 */

import { mkdirSync, writeFileSync } from "node:fs";
import { loadavg } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { ensureBuilt } from "./lib/build.js";
import { timedGet } from "./lib/client.js";
import { disablePinning, pinningDescription } from "./lib/cpu.js";
import type { LoadResult } from "./lib/load.js";
import { wrk, wrkInstalled, wrkVersion } from "./lib/load.js";
import type { Machine } from "./lib/machine.js";
import { machine } from "./lib/machine.js";
import { formatCount, numberOption, parseCount, parseOptions, shellQuote } from "./lib/options.js";
import type { TargetProcess } from "./lib/procs.js";
import { ROOT, startTarget, startUpstream } from "./lib/procs.js";
import { formatFiles } from "./lib/report.js";
import { max, median, min, shuffle, sleep } from "./lib/stats.js";
import { redisCommandCalls, redisCpuSeconds } from "./lib/store-cpu.js";
import { startStores } from "./lib/stores.js";
import type { ProfiledRun } from "./profile.js";
import type { TargetConfig } from "./targets/common.js";
import type { TargetInfo } from "./targets/registry.js";
import { TARGETS, targetInfo } from "./targets/registry.js";

const UPSTREAM_LATENCY_MS = 100;
/**
 * One hour: the working set is warmed once, before every round, so nothing may expire while
 * the rounds run (expiry is what `npm run bench`'s misses and stampede phases measure).
 */
const TTL_MS = 3_600_000;
/** `limit` comes back after every LIMIT_EVERY targets, as in `npm run bench`. */
const LIMIT_EVERY = 3;
/**
 * Concurrent requests while warming a target's working set: a handful, as a real warm-up
 * would be. 50 concurrent misses keep a target's event loop so busy on a loaded 2-core
 * machine that its store writes pass cachet's 50 ms store timeout, and the set starts
 * half-empty (what happens under load is the rounds' business, and reported there).
 */
const WARM_CONCURRENCY = 8;
/** Warming passes at most: a second pass fills what the first could not store. */
const WARM_PASSES = 3;
const SCRIPT = fileURLToPath(new URL("./working-set.lua", import.meta.url));

export const DEFAULT_TARGETS = [
  "limit",
  "limit-aa",
  "limit-redis",
  "cachet-memory",
  "cachet-tiered",
  "cachet-redis",
  "bentocache-memory",
  "bentocache-tiered",
  "cache-manager-memory",
  "cache-manager-redis",
  "acd-memory",
  "acd-redis",
] as const;
const DEFAULT_KEYS = 1000;

const USAGE = `usage: npm run bench:working-set -- [options]

  --keys N              distinct URLs /posts?k=1..N (default ${DEFAULT_KEYS}; 10k, 1M … accepted)
  --order round-robin|random   how wrk picks the next URL (default round-robin)
  --targets a,b,…       targets (limit and limit-aa are always added); default:
                        ${DEFAULT_TARGETS.slice(2).join(", ")}
  --rounds N            rounds (default 3)
  --duration S          seconds of load per target per round (default 3)
  --warmup S            seconds of unrecorded load per target before the rounds (default 1)
  --connections N       wrk connections (default 50)
  --seed N              seed of the per-round target order and of the random order
  --label TEXT          what this run is (top of the report)
  --out DIR             output directory (default bench/ for the default set-up, else bench/.tmp/)
  --no-pin              do not pin the targets to core 0 and wrk to core 1
  --profile T[,REF]     no rounds: a V8 CPU profile of target T's main thread under the
                        working-set load, summarised (bench/.tmp/profiles/ws-T.md); with a
                        second target, both, and T against REF per request
                        (bench/.tmp/profiles/ws-T-vs-REF.md), e.g. cachet-redis,limit-redis`;

interface Args {
  keys: number;
  order: "round-robin" | "random";
  targets: string[];
  rounds: number;
  duration: number;
  warmup: number;
  connections: number;
  seed: number;
  label: string | undefined;
  out: string | undefined;
  noPin: boolean;
  /** `--profile`: the targets to profile under load (no rounds, no report); a second is compared. */
  profile: string[] | undefined;
  /** The default targets and key count: the run may replace the reference results. */
  reference: boolean;
}

function parseArgs(argv: readonly string[]): Args {
  const { values, flags, help } = parseOptions(argv, {
    values: [
      "keys",
      "order",
      "targets",
      "rounds",
      "duration",
      "warmup",
      "connections",
      "seed",
      "label",
      "out",
      "profile",
    ],
    flags: ["no-pin"],
    usage: USAGE,
  });
  if (help) {
    console.log(USAGE);
    process.exit(0);
  }
  const order = values.get("order") ?? "round-robin";
  if (order !== "round-robin" && order !== "random") {
    throw new Error(`--order: expected round-robin or random, got ${order}`);
  }
  const listed = values
    .get("targets")
    ?.split(",")
    .map((s) => s.trim())
    .filter(Boolean);
  const profile = values
    .get("profile")
    ?.split(",")
    .map((n) => n.trim())
    .filter(Boolean);
  if (profile !== undefined && (profile.length === 0 || profile.length > 2)) {
    throw new Error("--profile: expected one target, or two (the second is the reference)");
  }
  const names = new Set(profile ?? ["limit", "limit-aa", ...(listed ?? DEFAULT_TARGETS)]);
  for (const n of names) targetInfo(n); // fails on an unknown name
  const keys = values.has("keys")
    ? parseCount(values.get("keys")!, "--keys", 1, 10_000_000)
    : DEFAULT_KEYS;
  return {
    keys,
    order,
    targets: profile ?? TARGETS.filter((t) => names.has(t.name)).map((t) => t.name),
    rounds: numberOption(values, "rounds", 3, 1, 100),
    duration: numberOption(values, "duration", 3, 1, 600),
    warmup: numberOption(values, "warmup", 1, 0, 600),
    connections: numberOption(values, "connections", 50, 1, 10_000),
    seed: numberOption(values, "seed", Math.floor(Math.random() * 2 ** 31), 0, 2 ** 32),
    label: values.get("label"),
    out: values.get("out"),
    noPin: flags.has("no-pin"),
    profile,
    reference:
      profile === undefined &&
      listed === undefined &&
      keys === DEFAULT_KEYS &&
      order === "round-robin",
  };
}

/** One measured run of one target. */
export interface WsSample {
  readonly rps: number;
  readonly requests: number;
  readonly p50: number;
  readonly p99: number;
  /** Req/s over the mean of the `limit` runs just before and after (1 for `limit`). */
  readonly ratio: number;
  /** CPU µs per request of the target process (all threads). */
  readonly cpuUs: number;
  /** CPU µs per request of redis-server (INFO cpu, all threads). */
  readonly redisCpuUs: number;
  /** Redis commands per request (INFO commandstats, INFO itself left out). */
  readonly redisCmds: number;
  readonly upstreamCalls: number;
  readonly non2xx: number;
  readonly errors: number;
}

export interface WsTarget {
  readonly name: string;
  readonly setup: string;
  readonly storage: string;
  /**
   * Warming: the origin calls of each pass over the N URLs (the first makes N; a later pass
   * calls the origin only for what was not stored), how long it took, and a hit's Cache-Status.
   */
  readonly warm?: { passes: number[]; seconds: number; cacheStatus: string | undefined };
  /**
   * The target's own counters during the measured rounds (cachet: store errors by operation
   * and code, breaker openings; peers: store errors), when it keeps any.
   */
  readonly troubles?: Record<string, number>;
  readonly samples: WsSample[];
  /** Origin calls of the unmeasured pass over the N URLs before each run, when not 0. */
  readonly refilled: number[];
  readonly summary?: {
    rps: number;
    ratio: number;
    ratioMin: number;
    ratioMax: number;
    p50: number;
    p99: number;
    cpuUs: number;
    redisCpuUs: number;
    redisCmds: number;
    upstreamCalls: number;
    non2xx: number;
    errors: number;
  };
}

export interface WsResults {
  readonly label: string | undefined;
  readonly command: string;
  readonly settings: Omit<Args, "label" | "out" | "reference" | "targets" | "profile"> & {
    ttlMs: number;
    upstreamLatencyMs: number;
    limitEvery: number;
  };
  readonly machine: Machine;
  readonly loadAtEnd: number[];
  readonly elapsedSeconds: number;
  /** `limit`'s req/s in every run, per round: how much the machine's capacity moved. */
  readonly limitRps: number[][];
  readonly targets: WsTarget[];
}

const log = (line: string) => console.log(`[working-set] ${line}`);
const cleanups: Array<() => Promise<void>> = [];
async function cleanUp(): Promise<void> {
  for (let next = cleanups.pop(); next; next = cleanups.pop()) {
    await next().catch((error: unknown) => log(`clean-up: ${String(error)}`));
  }
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  if (!wrkInstalled()) throw new Error("the working-set scenario needs wrk (apt-get install wrk)");
  ensureBuilt(ROOT, log);
  if (args.noPin) disablePinning();
  const started = performance.now();
  const infos = args.targets.map(targetInfo);
  log(
    `${formatCount(args.keys)} URLs, ${args.order}; ${infos.length} targets; ${args.rounds} rounds × ${args.duration} s; CPU placement: ${pinningDescription()}`,
  );
  const facts = machine(
    ROOT,
    `${wrkVersion()} (-t1, working-set.lua); CPU placement: ${pinningDescription()}`,
  );
  const stores = await startStores(
    {
      cluster: infos.some((t) => t.storage === "cluster"),
      memcached: infos.some((t) => t.storage === "memcached"),
    },
    log,
  );
  cleanups.push(() => stores.stop());
  const upstream = await startUpstream(UPSTREAM_LATENCY_MS);
  cleanups.push(() => upstream.stop());
  const config = (name: string): TargetConfig => ({
    name,
    upstreamUrl: upstream.url,
    redisUrl: stores.redis.url,
    redisPort: stores.redis.port,
    clusterNodes: stores.cluster?.rootNodes.map((n) => n.url) ?? [],
    memcachedServers: stores.memcached?.servers ?? "",
    ttlMs: TTL_MS,
  });

  const procs = new Map<string, TargetProcess>();
  cleanups.push(async () => {
    await Promise.all([...procs.values()].map((p) => p.stop()));
  });
  for (let i = 0; i < infos.length; i += 3) {
    const batch = infos.slice(i, i + 3);
    const ps = await Promise.all(batch.map((t) => startTarget(config(t.name))));
    for (const [j, t] of batch.entries()) procs.set(t.name, ps[j]!);
  }
  log(`started ${procs.size} target processes`);

  const results = new Map<string, WsTarget>();
  for (const t of infos) {
    const proc = procs.get(t.name)!;
    const entry: WsTarget = {
      name: t.name,
      setup: t.setup,
      storage: t.storage,
      samples: [],
      refilled: [],
    };
    if (t.family !== "limit") {
      const t0 = performance.now();
      const passes: number[] = [];
      for (let pass = 0; pass < WARM_PASSES; pass++) {
        const calls0 = await upstream.calls();
        await warmWorkingSet(proc, args.keys);
        await sleep(200); // a cache may finish storing just after its response
        passes.push((await upstream.calls()) - calls0);
        if (pass > 0 && passes.at(-1) === 0) break;
      }
      const check = await timedGet(`${proc.url}/posts?k=1`, false, 30_000);
      const status = check.headers["cache-status"];
      const warm = {
        passes,
        seconds: (performance.now() - t0) / 1000,
        cacheStatus: typeof status === "string" ? status : undefined,
      };
      log(
        `${t.name}: warmed ${formatCount(args.keys)} URLs in ${warm.seconds.toFixed(1)} s (origin calls per pass: ${passes.join(", ")})`,
      );
      results.set(t.name, { ...entry, warm });
    } else {
      results.set(t.name, entry);
    }
  }

  const script = (round: number) => ({
    file: SCRIPT,
    args: [String(args.keys), args.order, String(args.seed + round)],
  });
  const run = (proc: TargetProcess, seconds: number, round: number): Promise<LoadResult> =>
    wrk({
      url: `${proc.url}/posts`,
      connections: args.connections,
      seconds,
      script: script(round),
    });

  if (args.warmup > 0) {
    log(`JIT warm-up: ${args.warmup} s of load per target (not recorded)`);
    for (const t of infos) await run(procs.get(t.name)!, args.warmup, -1);
  }

  if (args.profile !== undefined) {
    const runs: ProfiledRun[] = [];
    for (const name of args.profile) runs.push(await profileTarget(procs.get(name)!, args, run));
    const { writeComparison } = await import("./profile.js");
    const compared = writeComparison(runs, join(ROOT, "bench/.tmp/profiles"), "ws-");
    if (compared) log(`comparison: ${compared}`);
    return;
  }

  const troubles0 = new Map<string, Record<string, number>>();
  for (const [name, proc] of procs) troubles0.set(name, (await proc.usage()).stats);
  const limitRps: number[][] = [];
  const limitInfo = targetInfo("limit");
  for (let round = 0; round < args.rounds; round++) {
    const others = shuffle(
      infos.filter((t) => t.name !== "limit"),
      args.seed + round,
    );
    const sequence: TargetInfo[] = [limitInfo];
    others.forEach((t, i) => {
      sequence.push(t);
      if ((i + 1) % LIMIT_EVERY === 0 || i === others.length - 1) sequence.push(limitInfo);
    });
    const runs: { name: string; sample: Omit<WsSample, "ratio"> }[] = [];
    for (const t of sequence) {
      const proc = procs.get(t.name)!;
      if (t.family !== "limit") {
        // Every URL once more just before the run (not measured): a two-tier cache's L1
        // copies live at most l1MaxTtl (1 min), and the rounds take longer than that; this
        // keeps "L1 warm" true for every run and puts back anything that was not stored.
        const calls0 = await upstream.calls();
        await warmWorkingSet(proc, args.keys);
        const refilled = (await upstream.calls()) - calls0;
        if (refilled > 0) results.get(t.name)!.refilled.push(refilled);
      }
      const before = await counters(proc, stores.redis.port, upstream.calls);
      const result = await run(proc, args.duration, round);
      const after = await counters(proc, stores.redis.port, upstream.calls);
      const n = Math.max(1, result.requests);
      runs.push({
        name: t.name,
        sample: {
          rps: result.rps,
          requests: result.requests,
          p50: result.p50,
          p99: result.p99,
          cpuUs: (after.cpuUs - before.cpuUs) / n,
          redisCpuUs: ((after.redisCpu - before.redisCpu) * 1e6) / n,
          redisCmds: (after.redisCmds - before.redisCmds) / n,
          upstreamCalls: after.calls - before.calls,
          non2xx: result.non2xx,
          errors: result.errors,
        },
      });
    }
    const limits = runs.filter((r) => r.name === "limit").map((r) => r.sample.rps);
    limitRps.push(limits);
    runs.forEach((r, i) => {
      let ratio = 1;
      if (r.name !== "limit") {
        const before = runs.slice(0, i).findLast((x) => x.name === "limit")!.sample.rps;
        const after = runs.slice(i + 1).find((x) => x.name === "limit")!.sample.rps;
        ratio = r.sample.rps / ((before + after) / 2);
      }
      results.get(r.name)!.samples.push({ ...r.sample, ratio });
    });
    log(
      `round ${round + 1}/${args.rounds}: limit ${limits.map(Math.round).join("/")} req/s; ` +
        others
          .map((t) => `${t.name} ${results.get(t.name)!.samples.at(-1)!.ratio.toFixed(2)}`)
          .join(", "),
    );
  }

  for (const [name, proc] of procs) {
    const before = troubles0.get(name)!;
    const after = (await proc.usage()).stats;
    const delta: Record<string, number> = {};
    for (const [k, v] of Object.entries(after)) {
      if (v - (before[k] ?? 0) > 0) delta[k] = v - (before[k] ?? 0);
    }
    results.set(name, { ...results.get(name)!, troubles: delta });
  }
  const targets = infos.map((t) => summarise(results.get(t.name)!));
  const report: WsResults = {
    label: args.label,
    command: `npm run bench:working-set${process.argv.length > 2 ? ` -- ${process.argv.slice(2).map(shellQuote).join(" ")}` : ""}`,
    settings: {
      keys: args.keys,
      order: args.order,
      rounds: args.rounds,
      duration: args.duration,
      warmup: args.warmup,
      connections: args.connections,
      seed: args.seed,
      noPin: args.noPin,
      ttlMs: TTL_MS,
      upstreamLatencyMs: UPSTREAM_LATENCY_MS,
      limitEvery: LIMIT_EVERY,
    },
    machine: facts,
    loadAtEnd: loadavg().map((l) => Math.round(l * 100) / 100),
    elapsedSeconds: Math.round((performance.now() - started) / 1000),
    limitRps,
    targets,
  };
  const outDir = args.out ?? join(ROOT, args.reference ? "bench" : "bench/.tmp");
  mkdirSync(outDir, { recursive: true });
  writeFileSync(join(outDir, "working-set.json"), `${JSON.stringify(report, null, 2)}\n`);
  writeFileSync(join(outDir, "WORKING-SET.md"), renderWorkingSet(report));
  formatFiles([join(outDir, "WORKING-SET.md"), join(outDir, "working-set.json")]);
  log(
    `done in ${report.elapsedSeconds} s; wrote ${join(outDir, "WORKING-SET.md")} and working-set.json`,
  );
}

/**
 * `--profile`: a V8 CPU profile of the target's main thread during one run of the working-set
 * load (after the JIT warm-up), and its summary: where a hit's time goes, by area and function.
 */
async function profileTarget(
  proc: TargetProcess,
  args: Args,
  run: (proc: TargetProcess, seconds: number, round: number) => Promise<LoadResult>,
): Promise<ProfiledRun> {
  const dir = join(ROOT, "bench/.tmp/profiles");
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `ws-${proc.name}.cpuprofile`);
  const usage0 = await proc.usage();
  await proc.profileStart();
  const result = await run(proc, Math.max(args.duration, 5), 0);
  await proc.profileStop(file);
  const usage1 = await proc.usage();
  const cpu = usage1.cpu.user + usage1.cpu.system - (usage0.cpu.user + usage0.cpu.system);
  log(
    `${proc.name}: ${Math.round(result.rps)} req/s, p99 ${result.p99.toFixed(2)} ms, ` +
      `${(cpu / Math.max(1, result.requests)).toFixed(1)} µs CPU per hit (profiler included)`,
  );
  const { summariseFile } = await import("./profile.js");
  const summary = summariseFile(
    file,
    `${proc.name}, working set of ${formatCount(args.keys)} URLs`,
    result,
  );
  const md = join(dir, `ws-${proc.name}.md`);
  writeFileSync(md, summary);
  console.log(summary);
  log(`profile: ${file}; summary: ${md}`);
  return { name: proc.name, file, requests: result.requests };
}

/** GET /posts?k=1..n, `WARM_CONCURRENCY` at a time; every answer must be a 200. */
async function warmWorkingSet(proc: TargetProcess, n: number): Promise<void> {
  let next = 1;
  const failures: string[] = [];
  const worker = async () => {
    while (next <= n) {
      const k = next++;
      const r = await timedGet(`${proc.url}/posts?k=${k}`, false, 30_000);
      if (r.status !== 200) failures.push(`k=${k}: ${r.status} ${r.error ?? ""}`);
    }
  };
  await Promise.all(Array.from({ length: WARM_CONCURRENCY }, worker));
  if (failures.length > 0) {
    throw new Error(
      `${proc.name}: ${failures.length} warming requests failed: ${failures.slice(0, 3).join("; ")}`,
    );
  }
}

async function counters(proc: TargetProcess, redisPort: number, calls: () => Promise<number>) {
  const [usage, redisCpu, redisCmds, upstreamCalls] = await Promise.all([
    proc.usage(),
    redisCpuSeconds(redisPort),
    redisCommandCalls(redisPort),
    calls(),
  ]);
  return { cpuUs: usage.cpu.user + usage.cpu.system, redisCpu, redisCmds, calls: upstreamCalls };
}

function summarise(t: WsTarget): WsTarget {
  const s = t.samples;
  const ratios = s.map((x) => x.ratio);
  return {
    ...t,
    summary: {
      rps: median(s.map((x) => x.rps)),
      ratio: median(ratios),
      ratioMin: min(ratios),
      ratioMax: max(ratios),
      p50: median(s.map((x) => x.p50)),
      p99: median(s.map((x) => x.p99)),
      cpuUs: median(s.map((x) => x.cpuUs)),
      redisCpuUs: median(s.map((x) => x.redisCpuUs)),
      redisCmds: median(s.map((x) => x.redisCmds)),
      upstreamCalls: s.reduce((a, x) => a + x.upstreamCalls, 0),
      non2xx: s.reduce((a, x) => a + x.non2xx, 0),
      errors: s.reduce((a, x) => a + x.errors, 0),
    },
  };
}

const usesRedis = (storage: string) => storage === "redis" || storage === "tiered";

/** WORKING-SET.md from a results object. */
export function renderWorkingSet(r: WsResults): string {
  const m = r.machine;
  const f1 = (n: number) => n.toFixed(1);
  const f2 = (n: number) => n.toFixed(2);
  const rows = [...r.targets].sort((a, b) => (b.summary?.ratio ?? 0) - (a.summary?.ratio ?? 0));
  const limitMedian = median(r.limitRps.flat());
  const lines = [
    "# Working-set hits: cachet and its peers over many URLs",
    "",
    ...(r.label ? [`> ${r.label}`, ""] : []),
    `Generated by \`${r.command}\` on ${m.date} (${r.elapsedSeconds} s). The single-URL scenario is in [RESULTS.md](RESULTS.md); how both are run is in [README.md](README.md).`,
    "",
    `**Scenario**: ${formatCount(r.settings.keys)} distinct URLs \`/posts?k=1..${r.settings.keys}\` (each the 27 KB demo body, served as 24.4 KB of compact JSON), every target warmed once (${formatCount(r.settings.keys)} misses), then wrk (${r.settings.connections} connections, one thread) asking for them ${r.settings.order === "random" ? "in random order" : "round-robin"} (\`bench/working-set.lua\` chooses every request's path), so that every hit needs a lookup of its own. \`limit\` (Fastify answering a constant Buffer) is asked for the same URLs. ${r.settings.rounds} rounds × ${r.settings.duration} s per target, targets shuffled per round (seed ${r.settings.seed}), \`limit\` measured before and after every ${r.settings.limitEvery} targets; TTL ${r.settings.ttlMs / 60_000} min so that nothing expires during the rounds.`,
    "",
    `**Machine**: ${m.cpuModel}, ${m.cores} cores, shared with other work: 1-minute load average ${m.loadAtStart[0]} before the run, ${r.loadAtEnd[0]} at its end. ${m.node}, ${m.redis}; ${m.loadGenerator}. Absolute req/s depend on that load; read the ratios (measured seconds apart) and their spread.`,
    "",
    "| target | × limit (median) | rounds (min–max) | req/s | p50 ms | p99 ms | CPU µs/hit (server) | CPU µs/hit (Redis) | Redis cmds/hit | origin calls (measured runs) | errors |",
    "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
  ];
  for (const t of rows) {
    const s = t.summary!;
    const redis = usesRedis(t.storage);
    lines.push(
      `| \`${t.name}\` | ${t.name === "limit" ? "1.00" : f2(s.ratio)} | ${t.name === "limit" ? "—" : `${f2(s.ratioMin)}–${f2(s.ratioMax)}`} | ${Math.round(s.rps).toLocaleString("en-US")} | ${f2(s.p50)} | ${f2(s.p99)} | ${f1(s.cpuUs)} | ${redis ? f1(s.redisCpuUs) : "—"} | ${redis ? f2(s.redisCmds) : "—"} | ${t.name.startsWith("limit") ? "—" : s.upstreamCalls} | ${s.non2xx + s.errors} |`,
    );
  }
  lines.push(
    "",
    `\`limit\` ran at ${r.limitRps.map((rs) => rs.map(Math.round).join("/")).join(" · ")} req/s (per round; median ${Math.round(limitMedian).toLocaleString("en-US")}): how much the machine's capacity moved during the run. \`limit-aa\` (a second, identical \`limit\`) shows how far two identical targets drift apart: ratios closer than its distance from 1.00 are not distinguishable.`,
    "",
    "How each figure is measured: req/s and latency from wrk; `× limit` is a target's req/s over the mean of the `limit` runs just before and after it (median over rounds); CPU µs/hit is the process's `process.cpuUsage()` (all threads, read over IPC) and Redis's `INFO cpu` (`used_cpu_user + used_cpu_sys`), before and after each run, over the requests; Redis commands per hit is the `INFO commandstats` delta (the bench's own `INFO` left out) over the requests; origin calls are the fake upstream's counter during the measured runs (0 for a cache that only hits). A figure marked — does not apply (no Redis).",
    "",
    `Warming: ${WARM_CONCURRENCY} concurrent requests over the ${formatCount(r.settings.keys)} URLs, repeated (up to ${WARM_PASSES} passes) until a pass calls the origin for none of them; the origin calls of each pass say how many entries the previous one failed to store. Before every measured run each target gets one more unmeasured pass over the URLs (a two-tier cache's L1 copies live at most \`l1MaxTtl\`, 1 min, and a round lasts longer: this keeps its L1 warm); its origin calls, when any, are listed. Store troubles are the target's own counters during the rounds (cachet: \`error\` events by operation and code, circuit-breaker openings).`,
    "",
    "| target | set-up | warming: origin calls per pass, seconds | Cache-Status of a hit | origin calls of the passes before the runs | store troubles during the rounds |",
    "| --- | --- | --- | --- | --- | --- |",
  );
  for (const t of r.targets) {
    const troubles = Object.entries(t.troubles ?? {})
      .map(([k, v]) => `${k}: ${v}`)
      .join("; ");
    lines.push(
      `| \`${t.name}\` | ${t.setup} | ${t.warm ? `${t.warm.passes.join(", ")}; ${t.warm.seconds.toFixed(1)} s` : "—"} | ${t.warm?.cacheStatus ? `\`${t.warm.cacheStatus}\`` : "—"} | ${t.name.startsWith("limit") ? "—" : t.refilled.length ? t.refilled.join(", ") : "0"} | ${troubles || "none"} |`,
    );
  }
  lines.push("");
  return `${lines.join("\n")}\n`;
}

let interrupted = false;
for (const [signal, code] of [
  ["SIGINT", 130],
  ["SIGTERM", 143],
] as const) {
  process.once(signal, () => {
    interrupted = true;
    log(`${signal}: stopping the servers`);
    void cleanUp().finally(() => process.exit(code));
  });
}
main().then(
  () => cleanUp().then(() => process.exit(0)),
  (error: unknown) => {
    if (interrupted) return;
    console.error(`[working-set] failed: ${error instanceof Error ? error.stack : String(error)}`);
    void cleanUp().finally(() => process.exit(1));
  },
);
