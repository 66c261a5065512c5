/**
 * `npm run bench:scale`: how cachet's costs grow with the work, on the memory store and on
 * Redis. Three measurements, each step in a fresh process (bench/scale-worker.ts):
 *
 * 1. hit cost and memory per entry for 1k, 10k, 100k and 1M entries (`--sizes`);
 * 2. tag and namespace invalidation with 1k and 1M tagged entries (the largest and smallest
 *    of `--sizes`): it must not grow, tags being versions read lazily;
 * 3. 10,000 distinct cold keys requested at once (`--cold N`): one origin call per key, and
 *    every call settles.
 *
 * Writes `scale.md`, `scale.json` and `scale.svg` into bench/.tmp/ (or `--out DIR`). The
 * recorded run is bench/runs/2026-12-05-scale.md. See bench/README.md, "How cost grows".
 */
import { spawn, spawnSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { loadavg } from "node:os";
import { join } from "node:path";
import type { RedisServer } from "../test/helpers/redis.js";
import { startRedis } from "../test/helpers/redis.js";
import { ensureBuilt } from "./lib/build.js";
import { machine } from "./lib/machine.js";
import { numberOption, parseCount, parseCounts, parseOptions, shellQuote } from "./lib/options.js";
import { ROOT } from "./lib/procs.js";
import { formatFiles } from "./lib/report.js";
import { renderScale, renderScaleSvg, type ScaleReport } from "./lib/scale-report.js";
import type { ScaleJob, ScaleResult, ScaleStore } from "./scale-worker.js";

const USAGE = `usage: npm run bench:scale -- [options]

  --sizes 1k,10k,100k,1M   entry counts for the hit and memory steps (default 1k,10k,100k,1M)
  --quick                  sizes 1k,10k,100k, 2 rounds, fewer hits (about 3 minutes)
  --stores memory,redis    stores to measure (default both)
  --rounds N               measured hit rounds per size (default 3; quick 2)
  --hits N                 hits per round (default 200k on memory, 50k on Redis; quick a quarter)
  --cold N                 distinct cold keys requested at once (default 10k)
  --label TEXT             what this run is (top of the report)
  --out DIR                output directory (default bench/.tmp/)
  --name NAME              file names NAME.md, NAME.json, NAME.svg (default scale); the recorded
                           run: --out bench/runs --name 2026-12-05-scale`;

const log = (line: string) => console.log(`[scale] ${line}`);
const WORKER = join(ROOT, "bench/scale-worker.ts");
/** Heap of a worker: a million decoded entries need more than node's default. */
const WORKER_HEAP_MB = 8192;

let redis: RedisServer | undefined;
const running = new Set<ReturnType<typeof spawn>>();
async function cleanUp(): Promise<void> {
  for (const child of running) child.kill("SIGKILL");
  await redis?.stop().catch(() => {});
  redis = undefined;
}

function runWorker(job: ScaleJob, what: string): Promise<ScaleResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      [
        "--expose-gc",
        `--max-old-space-size=${WORKER_HEAP_MB}`,
        "--import",
        "tsx",
        WORKER,
        JSON.stringify(job),
      ],
      { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] },
    );
    running.add(child);
    let json: string | undefined;
    let pending = "";
    let errors = "";
    child.stdout.on("data", (d: Buffer) => {
      pending += d.toString();
      const lines = pending.split("\n");
      pending = lines.pop() ?? "";
      for (const line of lines) {
        if (line.startsWith("SCALE_JSON ")) json = line.slice("SCALE_JSON ".length);
        else if (line.startsWith("progress ")) log(`  ${what}: ${line.slice("progress ".length)}`);
      }
    });
    child.stderr.on("data", (d: Buffer) => {
      errors = (errors + d.toString()).slice(-3000);
    });
    child.once("error", reject);
    child.once("exit", (code) => {
      running.delete(child);
      if (json) resolve(JSON.parse(json) as ScaleResult);
      else reject(new Error(`${what}: worker exited ${code}\n${errors}`));
    });
  });
}

/** Empty the bench's Redis between steps, so that every step measures its own entries. */
async function flush(): Promise<void> {
  if (!redis) return;
  const r = spawnSync("redis-cli", ["-p", String(redis.port), "FLUSHALL"], { encoding: "utf8" });
  if (r.status !== 0 || !/OK/.test(r.stdout))
    throw new Error(`FLUSHALL failed: ${r.stderr}${r.stdout}`);
}

async function main(): Promise<void> {
  const { values, flags, help } = parseOptions(process.argv.slice(2), {
    values: ["sizes", "stores", "rounds", "hits", "cold", "label", "out", "name"],
    flags: ["quick"],
    usage: USAGE,
  });
  if (help) {
    console.log(USAGE);
    return;
  }
  const quick = flags.has("quick");
  const sizes = parseCounts(
    values.get("sizes") ?? (quick ? "1k,10k,100k" : "1k,10k,100k,1M"),
    "--sizes",
    1,
    10_000_000,
  ).sort((a, b) => a - b);
  const stores = (values.get("stores") ?? "memory,redis")
    .split(",")
    .map((s) => s.trim()) as ScaleStore[];
  for (const s of stores) {
    if (s !== "memory" && s !== "redis")
      throw new Error(`--stores: expected memory and/or redis, got ${s}`);
  }
  const rounds = numberOption(values, "rounds", quick ? 2 : 3, 1, 50);
  const hitsOverride = values.has("hits") ? parseCount(values.get("hits")!, "--hits") : undefined;
  const hitsFor = (store: ScaleStore) =>
    hitsOverride ?? (store === "memory" ? 200_000 : 50_000) / (quick ? 4 : 1);
  const cold = values.has("cold") ? parseCount(values.get("cold")!, "--cold") : 10_000;
  const invalidationSizes = [...new Set([sizes[0]!, sizes.at(-1)!])];

  ensureBuilt(ROOT, log);
  const started = performance.now();
  const facts = machine(ROOT, "none (in-process calls)");
  if (stores.includes("redis")) {
    redis = await startRedis();
    log(`redis-server on port ${redis.port}`);
  }
  const port = redis?.port ?? 0;
  const report: ScaleReport = {
    label: values.get("label"),
    command: `npm run bench:scale${process.argv.length > 2 ? ` -- ${process.argv.slice(2).map(shellQuote).join(" ")}` : ""}`,
    machine: facts,
    settings: {
      sizes,
      stores,
      rounds,
      hits: Object.fromEntries(stores.map((s) => [s, hitsFor(s)])),
      cold,
      invalidationSizes,
    },
    hits: [],
    invalidate: [],
    cold: [],
    loadAtEnd: [],
    elapsedSeconds: 0,
  };

  for (const store of stores) {
    for (const n of sizes) {
      await flush();
      const what = `hits ${store} ${n.toLocaleString("en-US")}`;
      log(
        `${what}: filling, then ${rounds} rounds of ${hitsFor(store).toLocaleString("en-US")} random-key hits`,
      );
      const r = await runWorker(
        {
          kind: "hits",
          store,
          n,
          hits: hitsFor(store),
          rounds,
          // Memory: one caller (a call's own cost). Redis: 50 callers, as a loaded server has.
          concurrency: store === "memory" ? 1 : 50,
          redisPort: port,
        },
        what,
      );
      report.hits.push(r as ScaleReport["hits"][number]);
    }
  }
  for (const store of stores) {
    for (const n of invalidationSizes) {
      await flush();
      const what = `invalidate ${store} ${n.toLocaleString("en-US")}`;
      log(`${what}: filling ${n.toLocaleString("en-US")} tagged entries in one namespace`);
      const r = await runWorker(
        { kind: "invalidate", store, n, repeats: 20, redisPort: port },
        what,
      );
      report.invalidate.push(r as ScaleReport["invalidate"][number]);
    }
  }
  for (const store of stores) {
    await flush();
    const what = `cold ${store} ${cold.toLocaleString("en-US")}`;
    log(`${what}: ${cold.toLocaleString("en-US")} distinct keys at once, 100 ms origin`);
    const r = await runWorker(
      { kind: "cold", store, n: cold, originMs: 100, deadlineMs: 60_000, redisPort: port },
      what,
    );
    report.cold.push(r as ScaleReport["cold"][number]);
  }
  report.loadAtEnd = loadavg().map((l) => Math.round(l * 100) / 100);
  report.elapsedSeconds = Math.round((performance.now() - started) / 1000);
  const out = values.get("out") ?? join(ROOT, "bench/.tmp");
  mkdirSync(out, { recursive: true });
  const name = values.get("name") ?? "scale";
  writeFileSync(join(out, `${name}.json`), `${JSON.stringify(report, null, 2)}\n`);
  writeFileSync(join(out, `${name}.svg`), renderScaleSvg(report));
  writeFileSync(join(out, `${name}.md`), renderScale(report, `${name}.svg`));
  formatFiles([join(out, `${name}.md`), join(out, `${name}.json`)]);
  log(
    `done in ${report.elapsedSeconds} s; wrote ${join(out, `${name}.md`)}, ${name}.json, ${name}.svg`,
  );
}

let interrupted = false;
for (const [signal, code] of [
  ["SIGINT", 130],
  ["SIGTERM", 143],
] as const) {
  process.once(signal, () => {
    interrupted = true;
    log(`${signal}: stopping the workers and redis-server`);
    void cleanUp().finally(() => process.exit(code));
  });
}
main().then(
  () => cleanUp().then(() => process.exit(0)),
  (error: unknown) => {
    if (interrupted) return;
    console.error(`[scale] failed: ${error instanceof Error ? error.stack : String(error)}`);
    void cleanUp().finally(() => process.exit(1));
  },
);
