/** The run's outputs: results.json (everything), RESULTS.md (tables, targets), and an SVG chart. */
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { join, relative } from "node:path";
import type { MemoryResult } from "../memory.js";
import type { MicroResult } from "../micro.js";
import type { TargetInfo } from "../targets/registry.js";
import { usesRedis } from "../targets/registry.js";
import type { LoadResult } from "./load.js";
import type { Machine } from "./machine.js";
import { ROOT } from "./procs.js";
import { fixed, int, mib, ms } from "./stats.js";

export interface WarmResult {
  /** The very first request: a miss that fills the cache (process just started). */
  readonly firstMs: number;
  readonly secondMs: number;
  /** Body bytes of a hit. */
  readonly bytes: number;
  /** `Cache-Status` (or apicache's store header) of the second request. */
  readonly headers: string | undefined;
}

export interface HitSample extends LoadResult {
  /** CPU time of the target process per request, µs. */
  readonly cpuUsPerRequest: number;
  /**
   * CPU time of the target's store server per request, µs: Redis (`INFO cpu` delta), the sum
   * over the cluster's three masters, or memcached (`stats` rusage delta).
   */
  readonly storeCpuUsPerRequest: number;
  /** Upstream calls during the run (0 when every request was a hit). */
  readonly upstreamCalls: number;
  /** req/s ÷ `limitRps`. */
  readonly ratio: number;
  /** The mean of `limit`'s req/s measured just before and just after this run. */
  readonly limitRps: number;
}

export interface HitRound {
  readonly round: number;
  /** Targets in the order they were loaded (`limit` several times). */
  readonly order: readonly string[];
  readonly samples: Record<string, HitSample>;
  /** Every `limit` run of the round, req/s. */
  readonly limitRps: readonly number[];
}

export interface HitSummary {
  readonly rps: number;
  /** Median over rounds of (this target's req/s ÷ limit's req/s in the same round). */
  readonly ratio: number;
  readonly ratioMin: number;
  readonly ratioMax: number;
  /** For Express and Hono targets: the same ratio against that framework's own constant-buffer route. */
  readonly ratioOwn?: number;
  readonly p50: number;
  readonly p99: number;
  readonly max: number;
  readonly cpuUsPerRequest: number;
  /** See {@link HitSample.storeCpuUsPerRequest}. */
  readonly storeCpuUsPerRequest: number;
  readonly upstreamCalls: number;
  readonly non2xx: number;
  readonly errors: number;
  readonly requests: number;
  readonly bytesPerResponse: number;
}

export interface MissResult {
  readonly count: number;
  readonly median: number;
  readonly min: number;
  readonly max: number;
}

export interface StampedeFigure {
  readonly upstreamCalls: number;
  readonly statuses: Record<string, number>;
  readonly slowestMs: number;
}

export interface StampedeResult {
  readonly oneProcess: StampedeFigure;
  twoProcesses?: StampedeFigure;
}

export interface KillResult {
  /** What was killed: `redis-server`, the cluster master holding the entry, `memcached`. */
  readonly killed?: string;
  readonly seconds: number;
  readonly downMs: number;
  readonly killedAtMs: number;
  readonly requests: number;
  readonly failed: number;
  readonly failures: readonly string[];
  /** Requests in flight at some point while the store was down. */
  readonly duringOutage: number;
  readonly failedDuringOutage: number;
  readonly slowestDuringOutageMs: number;
  readonly p99DuringOutageMs: number;
  readonly overThresholdDuringOutage: number;
  readonly thresholdMs: number;
  readonly slowestAfterRestartMs: number;
  readonly overOneSecond: number;
}

export interface TargetResult {
  readonly name: string;
  readonly info: TargetInfo;
  readonly warm: WarmResult;
  hits?: HitSummary;
  misses?: MissResult;
  stampede?: StampedeResult;
  redisKill?: KillResult;
  memoryAfterHits?: { rss: number; heapUsed: number };
  stats?: Record<string, number>;
}

export interface MemoryOutcome {
  readonly lib: string;
  readonly result?: MemoryResult;
  readonly failure?: string;
}

export interface DemoResult {
  readonly exitCode: number | null;
  readonly before: { median: number; p95: number; upstreamCalls: number } | undefined;
  readonly after: { median: number; p95: number; upstreamCalls: number } | undefined;
  readonly speedup: number | undefined;
  readonly output: string;
}

export interface ApicacheProbe {
  readonly ioredisConnected: string;
  readonly nodeRedisConnected: string;
}

export interface Results {
  readonly label: string | undefined;
  readonly mode: "quick" | "full";
  readonly complete: boolean;
  readonly settings: {
    readonly rounds: number;
    readonly duration: number;
    readonly warmup: number;
    readonly connections: number;
    readonly misses: number;
    readonly seed: number;
    readonly upstreamLatencyMs: number;
    readonly ttlMs: number;
    readonly stampedeRequests: number;
    readonly limitEvery: number;
    readonly memoryKeys: number;
    readonly memoryHeapLimitMb: number;
    readonly cachetStoreTimeoutMs: number;
    readonly phases: readonly string[];
    readonly command: string;
  };
  readonly machine: Machine;
  readonly loadAtEnd: readonly number[];
  readonly elapsedSeconds: number;
  readonly targets: readonly TargetResult[];
  readonly rounds: readonly HitRound[];
  readonly memory: readonly MemoryOutcome[] | undefined;
  readonly micro: readonly MicroResult[] | undefined;
  readonly demo: DemoResult | undefined;
  readonly apicache: ApicacheProbe;
}

/** One of issue 6's targets (item 5), as measured in this run. */
export interface Verdict {
  readonly target: string;
  readonly status: "met" | "not met" | "not measured";
  readonly measured: string;
}

/** Whether the target keeps its entries in a store server (its CPU is measured). */
const hasStoreServer = (t: TargetResult) =>
  t.info.storage !== "none" && t.info.storage !== "memory";

/** Store CPU per request (results written before the cluster and Memcached targets called it `redisCpuUsPerRequest`). */
const storeCpu = (h: HitSummary) =>
  h.storeCpuUsPerRequest ?? (h as { redisCpuUsPerRequest?: number }).redisCpuUsPerRequest;

const ratio = (r: number | undefined) =>
  r === undefined || !Number.isFinite(r) ? "—" : `${r.toFixed(2)}×`;

function hitsOf(results: Results, name: string): HitSummary | undefined {
  return results.targets.find((t) => t.name === name)?.hits;
}

function microOf(results: Results, name: string): MicroResult | undefined {
  return results.micro?.find((m) => m.name === name);
}

/** Issue 6, item 5: each target, met or not, with the figure it rests on. */
export function verdicts(results: Results): Verdict[] {
  const out: Verdict[] = [];
  const check = (target: string, ok: boolean | undefined, measured: string) =>
    out.push({
      target,
      status: ok === undefined ? "not measured" : ok ? "met" : "not met",
      measured,
    });

  const aa = hitsOf(results, "limit-aa");
  const noise = aa
    ? `; A/A ${ratio(aa.ratio)}, ${aa.ratioMin.toFixed(2)}–${aa.ratioMax.toFixed(2)}`
    : "";
  const limitCpu = hitsOf(results, "limit")?.cpuUsPerRequest ?? Number.NaN;
  const headers = hitsOf(results, "limit-headers");
  const headersNote = headers
    ? `; \`limit-headers\`, the same reply without a cache, ${ratio(headers.ratio)}`
    : "";
  for (const [name, label] of [
    ["cachet-memory", "cachet memory hit ≥ 0.9× limit"],
    ["cachet-tiered", "cachet tiered (L1 warm) hit ≥ 0.9× limit"],
  ] as const) {
    const h = hitsOf(results, name);
    check(
      label,
      h ? h.ratio >= 0.9 : undefined,
      h
        ? `${ratio(h.ratio)} (rounds ${h.ratioMin.toFixed(2)}–${h.ratioMax.toFixed(2)}${noise}; CPU per request ${ratio(h.cpuUsPerRequest / limitCpu)} limit's${headersNote})`
        : "—",
    );
  }

  const redisPeers = results.targets.filter(
    (t) => t.info.family === "peer" && t.info.storage === "redis" && t.hits,
  );
  const best = redisPeers.reduce<TargetResult | undefined>(
    (a, t) => (a === undefined || t.hits!.ratio > a.hits!.ratio ? t : a),
    undefined,
  );
  const cr = hitsOf(results, "cachet-redis");
  const vsBest = cr && best ? cr.ratio / best.hits!.ratio : undefined;
  check(
    "cachet Redis-only hit ≥ 0.6× limit, and ≥ 1.8× the best peer's Redis-only hit",
    cr && vsBest !== undefined ? cr.ratio >= 0.6 && vsBest >= 1.8 : undefined,
    cr
      ? `${ratio(cr.ratio)} of limit (rounds ${cr.ratioMin.toFixed(2)}–${cr.ratioMax.toFixed(2)}${noise}); ${best ? `${ratio(vsBest)} of the best Redis-only peer (${best.name}, ${ratio(best.hits!.ratio)})` : "no Redis-only peer measured"}`
      : "—",
  );

  const lru = microOf(results, "lru-cache get (bare)");
  const awaited = microOf(results, "lru-cache get, awaited (floor of any async API)");
  const gos = microOf(results, "cachet getOrSet");
  check(
    "getOrSet memory hit ≥ 0.5× the ops/s of a bare lru-cache get",
    lru && gos ? gos.opsPerSec / lru.opsPerSec >= 0.5 : undefined,
    lru && gos
      ? `${ratio(gos.opsPerSec / lru.opsPerSec)} (${int(gos.opsPerSec)} vs ${int(lru.opsPerSec)} ops/s); a synchronous map lookup against a promise-returning call: awaiting alone costs several lookups, so no async API can meet this as written — see the next line`
      : "—",
  );
  check(
    "getOrSet memory hit ≥ 0.5× the ops/s of an awaited lru-cache get (the same bar for a promise API)",
    awaited && gos ? gos.opsPerSec / awaited.opsPerSec >= 0.5 : undefined,
    awaited && gos
      ? `${ratio(gos.opsPerSec / awaited.opsPerSec)} (${int(gos.opsPerSec)} vs ${int(awaited.opsPerSec)} ops/s)`
      : "—",
  );

  const cachets = results.targets.filter((t) => t.info.family === "cachet" && t.stampede);
  if (cachets.length > 0) {
    const one = cachets.map((t) => `${t.name} ${t.stampede!.oneProcess.upstreamCalls}`);
    const two = cachets
      .filter((t) => t.stampede!.twoProcesses)
      .map((t) => `${t.name} ${t.stampede!.twoProcesses!.upstreamCalls}`);
    const ok =
      cachets.every((t) => t.stampede!.oneProcess.upstreamCalls === 1) &&
      cachets.every(
        (t) => !t.stampede!.twoProcesses || t.stampede!.twoProcesses.upstreamCalls === 1,
      ) &&
      two.length > 0;
    check(
      `1 upstream call for ${results.settings.stampedeRequests} concurrent cold requests, in one process and across two`,
      ok,
      `one process: ${one.join(", ")}; two processes: ${two.length ? two.join(", ") : "not measured"}`,
    );
  } else {
    check(
      `1 upstream call for ${results.settings.stampedeRequests} concurrent cold requests, in one process and across two`,
      undefined,
      "—",
    );
  }

  // Issue 6 is about Redis: the one redis-server killed (the cluster and Memcached targets'
  // outages are in the table, not in this verdict).
  const killed = results.targets.filter(
    (t) => t.info.family === "cachet" && usesRedis(t.info) && t.redisKill,
  );
  check(
    `while Redis is killed under load: 0 failed requests, none longer than store timeout + origin latency (${results.settings.cachetStoreTimeoutMs} + ${results.settings.upstreamLatencyMs} ms)`,
    killed.length
      ? killed.every(
          (t) => t.redisKill!.failed === 0 && t.redisKill!.overThresholdDuringOutage === 0,
        )
      : undefined,
    killed.length
      ? killed
          .map(
            (t) =>
              `${t.name}: ${t.redisKill!.failed} failed, slowest ${ms(t.redisKill!.slowestDuringOutageMs)}, ${t.redisKill!.overThresholdDuringOutage} over ${t.redisKill!.thresholdMs} ms`,
          )
          .join("; ")
      : "—",
  );

  const d = results.demo;
  check(
    "npm run demo: cached median ≥ 100× faster than uncached",
    d?.speedup !== undefined ? d.speedup >= 100 : undefined,
    d?.speedup !== undefined
      ? `${d.speedup.toFixed(0)}× (${d.before!.median} ms → ${d.after!.median} ms)`
      : d
        ? `could not read the table (exit ${d.exitCode})`
        : "—",
  );
  return out;
}

/** The store servers this run started, in words. */
function storesLine(results: Results): string {
  const storages = new Set(results.targets.map((t) => t.info.storage));
  const servers = ["one redis-server"];
  if (storages.has("cluster")) servers.push("a 3-master Redis Cluster (no replicas)");
  if (storages.has("memcached")) servers.push("one memcached");
  const list =
    servers.length === 1
      ? servers[0]
      : `${servers.slice(0, -1).join(", ")} and ${servers[servers.length - 1]}`;
  return `${list} started by the bench, on free loopback ports`;
}

function table(head: readonly string[], rows: readonly (readonly string[])[]): string {
  const align = head.map((h, i) => (i === 0 || h.startsWith("<") ? "---" : "---:"));
  const clean = head.map((h) => h.replace(/^</, ""));
  return [
    `| ${clean.join(" | ")} |`,
    `| ${align.join(" | ")} |`,
    ...rows.map((r) => `| ${r.join(" | ")} |`),
  ].join("\n");
}

function markdown(results: Results, chartFile: string): string {
  const m = results.machine;
  const s = results.settings;
  const lines: string[] = [];
  lines.push("# cachet benchmark results");
  lines.push("");
  lines.push(
    "Written by `npm run bench` (bench/run.ts); every figure below was measured in this run. See " +
      "[bench/README.md](README.md) for how to run it and how to read the figures.",
  );
  lines.push("");
  lines.push(
    "The hits below ask for one URL, which flatters Redis-backed caches (50 concurrent hits of one " +
      "key are one coalesced Redis read). [WORKING-SET.md](WORKING-SET.md) (`npm run bench:working-set`) " +
      "measures the same targets over 1,000 distinct URLs, each hit a lookup of its own; " +
      "[runs/2026-12-05-scale.md](runs/2026-12-05-scale.md) (`npm run bench:scale`) how the cost grows with the number of entries.",
  );
  lines.push("");
  if (results.label) {
    lines.push(`> **${results.label}**`);
    lines.push("");
  }
  if (!results.complete) {
    lines.push("> Partial run (a subset of targets or phases): not the reference table.");
    lines.push("");
  }
  const before = m.loadAtStart[0] ?? 0;
  if (before > m.cores / 2) {
    lines.push(
      `> The machine was busy when this run started (1-minute load average ${before} on ${m.cores} cores, before the bench started anything): ` +
        "absolute figures are depressed and noisy; read the ratios measured side by side, the A/A spread and the CPU per request.",
    );
    lines.push("");
  }
  lines.push("## Machine and run");
  lines.push("");
  lines.push(
    table(
      ["", "<"],
      [
        ["date", m.date],
        ["CPU", `${m.cpuModel}, ${m.cores} cores`],
        ["memory", `${m.memoryGiB} GiB (${m.freeMemoryGiB} GiB free at start)`],
        ["OS", m.os],
        ["Node.js", m.node],
        ["Redis", m.redis],
        ...(m.memcached ? [["Memcached", m.memcached]] : []),
        ["load generator", m.loadGenerator],
        [
          "load average (1/5/15 min)",
          `start ${m.loadAtStart.join(" / ")}; end ${results.loadAtEnd.join(" / ")}`,
        ],
        ["code measured", `${m.commit ? `commit ${m.commit}, ` : ""}src digest ${m.srcDigest}`],
        [
          "mode",
          `${results.mode}: ${s.rounds} rounds × ${s.duration} s per target, ${s.connections} connections, ${s.warmup} s JIT warm-up per target, seed ${s.seed}; ${results.elapsedSeconds} s in all`,
        ],
        ["command", `\`${s.command}\``],
      ],
    ),
  );
  lines.push("");
  lines.push(
    `Libraries: ${Object.entries(m.versions)
      .map(([k, v]) => `${k} ${v}`)
      .join(", ")}.`,
  );
  lines.push("");
  lines.push(
    `Scenario: \`GET /posts\`; the fake upstream (\`demo/fake-upstream.ts\`) answers its 27 KB pretty-printed JSON after ${s.upstreamLatencyMs} ms; ` +
      "every target's handler fetches it, parses it and returns the object, which the framework serializes again " +
      `(so every target sends the same compact body, size below); TTL ${s.ttlMs / 1000} s; ${storesLine(results)}. ` +
      "The machine is shared and noisy: compare ratios measured in the same round, not absolute req/s across runs.",
  );
  lines.push("");

  const targets = results.targets;
  const limitCpu = hitsOf(results, "limit")?.cpuUsPerRequest;
  if (results.rounds.length > 0) {
    lines.push("## Hits, side by side");
    lines.push("");
    lines.push(
      `Medians of ${results.rounds.length} rounds. In each round every target is loaded in turn, in a shuffled order, and \`limit\` is loaded first and again after every ${s.limitEvery} targets: ` +
        "a target's `× limit` is its req/s divided by the mean of the `limit` runs just before and just after it. " +
        "CPU is per request: the target process (all threads) and its store server (`store µs/req`: Redis's `INFO cpu`; for `cachet-cluster` the sum over the cluster's three masters, gossip on the cluster bus included; memcached's `stats` rusage, every thread). Each round measures a key of its own (`/posts?round=N`), warmed by one request just before the run, so that no TTL expiry falls inside a hit run; `upstream` counts origin calls during the hit runs (0 expected).",
    );
    lines.push("");
    lines.push(
      "`CPU ÷ limit's` divides a target's CPU per request by `limit`'s: it depends less on the other work on the machine than req/s does (lower is better; 1.00× is the limit).",
    );
    lines.push("");
    lines.push(`![hit throughput and p99 per target](${chartFile})`);
    lines.push("");
    lines.push(
      table(
        [
          "target",
          "req/s",
          "× limit",
          "<rounds",
          "× own limit",
          "p50",
          "p99",
          "CPU µs/req",
          "CPU ÷ limit's",
          "store µs/req",
          "body B",
          "upstream",
          "errors",
          "RSS MiB",
        ],
        targets
          .filter((t) => t.hits)
          .map((t) => {
            const h = t.hits!;
            return [
              `\`${t.name}\``,
              int(h.rps),
              ratio(h.ratio),
              `${h.ratioMin.toFixed(2)}–${h.ratioMax.toFixed(2)}`,
              h.ratioOwn !== undefined ? ratio(h.ratioOwn) : "",
              ms(h.p50),
              ms(h.p99),
              fixed(h.cpuUsPerRequest, 1),
              limitCpu ? ratio(h.cpuUsPerRequest / limitCpu) : "—",
              hasStoreServer(t) ? fixed(storeCpu(h), 1) : "—",
              int(t.warm.bytes),
              String(h.upstreamCalls),
              String(h.non2xx + h.errors),
              mib(t.memoryAfterHits?.rss),
            ];
          }),
      ),
    );
    lines.push("");
    lines.push(
      `\`limit\`'s own runs, req/s: ${results.rounds
        .map(
          (r) => `round ${r.round} ${int(Math.min(...r.limitRps))}–${int(Math.max(...r.limitRps))}`,
        )
        .join("; ")} (how much the machine's capacity moved during each round).`,
    );
    lines.push("");
    const aa = targets.find((t) => t.name === "limit-aa")?.hits;
    if (aa) {
      lines.push(
        `**A/A noise**: \`limit-aa\` (a second, identical \`limit\` process) measured ${ratio(aa.ratio)} of \`limit\`, ` +
          `from ${aa.ratioMin.toFixed(2)} to ${aa.ratioMax.toFixed(2)} across rounds. Differences of ratios smaller than that spread are noise.`,
      );
      lines.push("");
    }
    const headers = targets.find((t) => t.name === "limit-headers")?.hits;
    const memory = targets.find((t) => t.name === "cachet-memory")?.hits;
    if (headers && memory) {
      lines.push(
        `\`limit-headers\` sends what a cachet memory hit sends — the reply from an \`onRequest\` hook with \`ETag\`, \`Age\`, \`Vary\` and \`Cache-Status\` — with no cache behind it: ${ratio(headers.ratio)} of \`limit\`. ` +
          `That part of a hit's cost is Fastify's reply path and the headers a correct shared cache must send; \`cachet-memory\` measured ${ratio(memory.ratio / headers.ratio)} of \`limit-headers\`, the rest (key, lookup, freshness, conditional checks).`,
      );
      lines.push("");
    }
    lines.push(
      "`× own limit` compares an Express or Hono target with that framework's own constant-buffer route (`limit-express`, `limit-hono`) in the same round. " +
        "`body B` is the body of a hit; `errors` counts non-2xx responses, socket errors and timeouts during the hit runs.",
    );
    lines.push("");
  }

  const withMisses = targets.filter((t) => t.misses);
  if (withMisses.length > 0) {
    lines.push("## Misses");
    lines.push("");
    lines.push(
      `Sequential requests on keys never seen before (upstream latency ${s.upstreamLatencyMs} ms), and the very first request of each process.`,
    );
    lines.push("");
    lines.push(
      table(
        ["target", "miss median", "miss min", "miss max", "first request"],
        withMisses.map((t) => [
          `\`${t.name}\``,
          ms(t.misses!.median),
          ms(t.misses!.min),
          ms(t.misses!.max),
          ms(t.warm.firstMs),
        ]),
      ),
    );
    lines.push("");
  }

  const withStampede = targets.filter((t) => t.stampede);
  if (withStampede.length > 0) {
    lines.push("## Cold stampede");
    lines.push("");
    lines.push(
      `${s.stampedeRequests} concurrent requests (one connection each) for a key nobody has asked for yet: origin calls, in one process, and split ${s.stampedeRequests / 2} + ${s.stampedeRequests / 2} across two processes of the same target sharing its store (targets on Redis, the Redis Cluster or Memcached only).`,
    );
    lines.push("");
    const st = (r: Record<string, number>) =>
      Object.entries(r)
        .map(([k, v]) => `${v}× ${k}`)
        .join(", ");
    lines.push(
      table(
        [
          "target",
          "origin calls, 1 process",
          "<responses",
          "slowest",
          "origin calls, 2 processes",
          "<responses",
          "slowest",
        ],
        withStampede.map((t) => {
          const a = t.stampede!.oneProcess;
          const b = t.stampede!.twoProcesses;
          return [
            `\`${t.name}\``,
            String(a.upstreamCalls),
            st(a.statuses),
            ms(a.slowestMs),
            b ? String(b.upstreamCalls) : "— (no shared store)",
            b ? st(b.statuses) : "",
            b ? ms(b.slowestMs) : "",
          ];
        }),
      ),
    );
    lines.push("");
  }

  const withKill = targets.filter((t) => t.redisKill);
  if (withKill.length > 0) {
    const k0 = withKill[0]!.redisKill!;
    lines.push("## Store killed under load");
    lines.push("");
    lines.push(
      `50 keep-alive connections loop on the cached \`GET /posts\` for ${k0.seconds} s; the target's store is killed (SIGKILL) at about ${(k0.killedAtMs / 1000).toFixed(1)} s and restarted, empty, about ${(k0.downMs / 1000).toFixed(1)} s later: ` +
        "the one redis-server (each Redis target in turn), for `cachet-cluster` the master holding the cached entry's slot (one of three; the cluster has no replicas, so nothing is promoted and the node comes back with its slots, empty), memcached for `cachet-memcached`. " +
        `"During outage" counts the requests in flight at some point while the store was down. The threshold is cachet's store timeout plus the origin's latency (${k0.thresholdMs} ms).`,
    );
    lines.push("");
    lines.push(
      table(
        [
          "target",
          "<killed",
          "requests",
          "failed",
          "during outage",
          "slowest during outage",
          "p99 during outage",
          `> ${k0.thresholdMs} ms`,
          "slowest after restart",
          "> 1 s",
          "<failure",
        ],
        withKill.map((t) => {
          const k = t.redisKill!;
          return [
            `\`${t.name}\``,
            k.killed ?? "redis-server",
            int(k.requests),
            String(k.failed),
            int(k.duringOutage),
            ms(k.slowestDuringOutageMs),
            ms(k.p99DuringOutageMs),
            String(k.overThresholdDuringOutage),
            ms(k.slowestAfterRestartMs),
            String(k.overOneSecond),
            k.failures.join("; ").slice(0, 120),
          ];
        }),
      ),
    );
    lines.push("");
  }

  if (results.memory) {
    lines.push(`## Memory after ${int(s.memoryKeys)} distinct keys`);
    lines.push("");
    lines.push(
      `One process per library (heap capped at ${s.memoryHeapLimitMb} MiB), each key's value a fresh parse of the posts, inserted through the library's usual call with its default (or the bench targets') bounds; heap and RSS after a full GC. "first key kept" tells whether the store evicted anything.`,
    );
    lines.push("");
    lines.push(
      table(
        [
          "library",
          "heap MiB",
          "RSS MiB",
          "peak RSS MiB",
          "heap before",
          "first key kept",
          "last key kept",
          "seconds",
          "<outcome",
        ],
        results.memory.map((o) => {
          const r = o.result;
          return r
            ? [
                o.lib,
                mib(r.heapUsed),
                mib(r.rss),
                mib(r.peakRss),
                mib(r.baseHeapUsed),
                r.firstKeyKept ? "yes (unbounded?)" : "no (evicted)",
                r.lastKeyKept ? "yes" : "no",
                fixed(r.seconds, 1),
                "completed",
              ]
            : [o.lib, "—", "—", "—", "—", "—", "—", "—", o.failure ?? "failed"];
        }),
      ),
    );
    lines.push("");
  }

  if (results.micro) {
    lines.push("## Micro-benchmarks (tinybench)");
    lines.push("");
    lines.push(
      "Fast operations run in batches of 1,000 calls per sample (the timer's own cost would swamp them); async calls are awaited. Memory hits are on one key that is already cached.",
    );
    lines.push("");
    const lru = microOf(results, "lru-cache get (bare)");
    lines.push(
      table(
        ["group", "<benchmark", "ops/s", "ns/op", "± %", "× lru-cache get"],
        results.micro.map((r) => [
          r.group,
          r.name,
          int(r.opsPerSec),
          fixed(r.nsPerOp, 1),
          fixed(r.rme, 1),
          r.group === "memory hit" && lru ? ratio(r.opsPerSec / lru.opsPerSec) : "",
        ]),
      ),
    );
    lines.push("");
  }

  if (results.demo) {
    lines.push("## `npm run demo`");
    lines.push("");
    lines.push("```");
    lines.push(results.demo.output);
    lines.push("```");
    lines.push("");
  }

  lines.push("## Issue 6, item 5: targets");
  lines.push("");
  lines.push(
    table(
      ["<target", "<status", "<measured"],
      verdicts(results).map((v) => [
        v.target,
        v.status === "met" ? "**met**" : v.status,
        v.measured,
      ]),
    ),
  );
  lines.push("");

  lines.push("## Targets and how they are set up");
  lines.push("");
  lines.push(
    table(
      ["<target", "<framework", "<setup"],
      targets.map((t) => [`\`${t.name}\``, t.info.framework, t.info.setup]),
    ),
  );
  lines.push("");
  if (targets.some((t) => t.info.storage === "cluster" || t.info.storage === "memcached")) {
    lines.push(
      "`cachet-cluster` and `cachet-memcached` are set up as docs/stores.md shows, L2 only with `lease: true`, so that they compare with `cachet-redis`: " +
        "the cluster is three `redis-server --cluster-enabled yes` joined with `redis-cli --cluster create` (no replicas, `cluster-node-timeout` 1000 ms; test/helpers/redis-cluster.ts), the store given the three masters as `rootNodes`; " +
        "memcached is started as the tests start it (test/helpers/memcached.ts: `-l 127.0.0.1 -U 0 -m 64`, its default four worker threads). " +
        "Memcached has no pub/sub: the lease's waiters poll the store instead of being woken by the bus.",
    );
    lines.push("");
  }
  lines.push(
    `apicache 1.6.3 reads Redis only when \`redisClient.connected\` is true (node-redis v3's API, with callbacks). Measured here: ioredis' \`connected\` is \`${results.apicache.ioredisConnected}\`, node-redis's is \`${results.apicache.nodeRedisConnected}\`; with either client apicache would never serve a hit from Redis, so it is measured on its built-in memory store.`,
  );
  const errors = targets.filter((t) => t.stats && Object.values(t.stats).some((v) => v > 0));
  if (errors.length > 0) {
    lines.push("");
    lines.push(
      `Store errors counted by the targets during the run: ${errors.map((t) => `\`${t.name}\` ${JSON.stringify(t.stats)}`).join(", ")}.`,
    );
  }
  lines.push("");
  return lines.join("\n");
}

const esc = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");

/** Two bar panels, hand-written SVG: hit req/s (with the ratio to limit) and p99, per target. */
function chart(results: Results): string {
  const rows = results.targets.filter((t) => t.hits);
  const rowH = 22;
  const top = 58;
  const labelW = 170;
  const panelW = 330;
  const gap = 70;
  const width = labelW + panelW + gap + panelW + 30;
  const height = top + rows.length * rowH + 40;
  const maxRps = Math.max(...rows.map((t) => t.hits!.rps), 1);
  const maxP99 = Math.max(...rows.map((t) => t.hits!.p99), 0.001);
  const color = (t: TargetResult) =>
    t.info.family === "limit"
      ? "#8c8c8c"
      : t.info.family === "nocache"
        ? "#c8c8c8"
        : t.info.family === "cachet"
          ? "#2f6fb3"
          : "#e08a2e";
  const x2 = labelW + panelW + gap;
  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="system-ui, sans-serif" font-size="12">`,
  );
  out.push(
    `<title>${esc(`Hit throughput (req/s, and the ratio to limit) and p99 latency per target, ${results.mode} run of ${results.machine.date.slice(0, 10)}`)}</title>`,
  );
  out.push(`<rect width="${width}" height="${height}" fill="#ffffff"/>`);
  out.push(
    `<text x="10" y="20" font-size="14" font-weight="bold">${esc(`GET /posts hits: ${results.mode} run, ${results.machine.date.slice(0, 10)}, ${results.machine.cores} cores, ${results.machine.loadGenerator.split(" (")[0]}`)}</text>`,
  );
  out.push(
    `<text x="${labelW}" y="${top - 12}" font-weight="bold">hit req/s (median; × limit in the same round)</text>`,
  );
  out.push(`<text x="${x2}" y="${top - 12}" font-weight="bold">p99 latency, ms (median)</text>`);
  rows.forEach((t, i) => {
    const y = top + i * rowH;
    const h = t.hits!;
    const w1 = Math.max(1, (h.rps / maxRps) * panelW);
    const w2 = Math.max(1, (h.p99 / maxP99) * panelW);
    out.push(`<text x="${labelW - 8}" y="${y + 15}" text-anchor="end">${esc(t.name)}</text>`);
    out.push(
      `<rect x="${labelW}" y="${y + 3}" width="${w1.toFixed(1)}" height="${rowH - 6}" fill="${color(t)}"/>`,
    );
    const l1 = `${int(h.rps)} (${h.ratio.toFixed(2)}×)`;
    const inside1 = w1 > panelW * 0.6;
    out.push(
      `<text x="${(inside1 ? labelW + w1 - 4 : labelW + w1 + 4).toFixed(1)}" y="${y + 15}" text-anchor="${inside1 ? "end" : "start"}" fill="${inside1 ? "#ffffff" : "#222222"}">${esc(l1)}</text>`,
    );
    out.push(
      `<rect x="${x2}" y="${y + 3}" width="${w2.toFixed(1)}" height="${rowH - 6}" fill="${color(t)}" opacity="0.75"/>`,
    );
    const l2 = h.p99 >= 10 ? h.p99.toFixed(0) : h.p99.toFixed(2);
    const inside2 = w2 > panelW * 0.8;
    out.push(
      `<text x="${(inside2 ? x2 + w2 - 4 : x2 + w2 + 4).toFixed(1)}" y="${y + 15}" text-anchor="${inside2 ? "end" : "start"}" fill="${inside2 ? "#ffffff" : "#222222"}">${l2}</text>`,
    );
  });
  const ly = top + rows.length * rowH + 22;
  const legend: [string, string][] = [
    ["#8c8c8c", "limit (constant buffer)"],
    ["#c8c8c8", "no cache"],
    ["#2f6fb3", "cachet"],
    ["#e08a2e", "peers"],
  ];
  let lx = labelW;
  for (const [c, label] of legend) {
    out.push(`<rect x="${lx}" y="${ly - 10}" width="12" height="12" fill="${c}"/>`);
    out.push(`<text x="${lx + 16}" y="${ly}">${esc(label)}</text>`);
    lx += 36 + label.length * 6.5;
  }
  out.push("</svg>");
  return `${out.join("\n")}\n`;
}

/** Write results.json, RESULTS.md and results.svg into `dir`; returns the paths written. */
export function writeReport(results: Results, dir: string): string[] {
  mkdirSync(dir, { recursive: true });
  const json = join(dir, "results.json");
  const md = join(dir, "RESULTS.md");
  const svg = join(dir, "results.svg");
  writeFileSync(json, `${JSON.stringify({ ...results, verdicts: verdicts(results) }, null, 2)}\n`);
  writeFileSync(svg, chart(results));
  writeFileSync(md, markdown(results, "results.svg"));
  formatFiles([md, json]);
  return [md, json, svg].map((p) => relative(process.cwd(), p));
}

/** Format written reports as the rest of the repository (biome), so that `biome check` passes on them. */
export function formatFiles(paths: readonly string[]): void {
  const biome = join(ROOT, "node_modules/.bin/biome");
  if (existsSync(biome)) {
    spawnSync(biome, ["format", "--write", "--no-errors-on-unmatched", ...paths], {
      cwd: ROOT,
      stdio: "ignore",
    });
  }
}
