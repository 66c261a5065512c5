/**
 * Issue 15, items 2 and 4: hits on a working set of distinct URLs, side by side, in one run.
 *
 *   node --import tsx bench/hitpath-workset.ts [--keys 1000] [--rounds 3] [--duration 5]
 *     [--targets limit-headers,cachet-memory,cachet-tiered,cachet-redis] [--profile <target>]
 *
 * Every target runs in its own process (bench/targets/child.ts, pinned to core 0 like the
 * bench), wrk (one thread, 50 connections, core 1) cycles over `/posts?k=1..N`
 * (bench/hitpath-workset.lua; `--keys 1` loads `/posts?round=1`, the pinned bench's key), each
 * key warmed once before. Each round loads `limit`, then a target, then `limit` again, …;
 * `× limit` is a target's req/s over the mean of the `limit` runs around it. CPU per hit is the
 * target process's (all threads, `process.cpuUsage()` over IPC) and Redis's (`INFO cpu`) over
 * the requests; Redis commands per hit from `INFO commandstats`. Also prints the bytes one
 * entry takes in Redis (`STRLEN`/`MEMORY USAGE` of its keys). `--profile` records a CPU
 * profile of one target's main thread under the same load and summarises it (bench/profile.ts).
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdirSync } from "node:fs";
import { availableParallelism, cpus, loadavg } from "node:os";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { createClient } from "redis";
import { startRedis } from "../test/helpers/redis.js";
import { ensureBuilt } from "./lib/build.js";
import { loadCommand, pinningDescription, pinTarget } from "./lib/cpu.js";
import { ROOT, startTarget, startUpstream, type TargetProcess } from "./lib/procs.js";
import { median } from "./lib/stats.js";
import { summariseFile } from "./profile.js";
import type { TargetConfig } from "./targets/common.js";

const { values } = parseArgs({
  options: {
    keys: { type: "string", default: "1000" },
    rounds: { type: "string", default: "3" },
    duration: { type: "string", default: "5" },
    connections: { type: "string", default: "50" },
    targets: { type: "string", default: "limit-headers,cachet-memory,cachet-tiered,cachet-redis" },
    profile: { type: "string" },
    /** `bench`: bench/targets/child.ts as the bench runs it; `hitpath`: bench/hitpath-child.ts. */
    child: { type: "string", default: "hitpath" },
    "store-timeout": { type: "string", default: "1000" },
  },
});
const KEYS = Number(values.keys);
const ROUNDS = Number(values.rounds);
const DURATION = Number(values.duration);
const CONNECTIONS = Number(values.connections);
const LUA = fileURLToPath(new URL("./hitpath-workset.lua", import.meta.url));

interface Run {
  rps: number;
  requests: number;
  cpuUs: number;
  redisUs: number;
  commands: Record<string, number>;
}

function wrk(
  port: number,
  seconds: number,
): Promise<{ requests: number; rps: number; non2xx: number }> {
  return new Promise((resolve, reject) => {
    const args = [
      "-t1",
      `-c${CONNECTIONS}`,
      `-d${seconds}s`,
      "-s",
      LUA,
      `http://127.0.0.1:${port}`,
    ];
    const [cmd, cmdArgs] = loadCommand("wrk", args);
    const proc = spawn(cmd, cmdArgs, {
      env: { ...process.env, HITPATH_KEYS: String(KEYS) },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    proc.stdout.on("data", (d) => (out += d));
    proc.stderr.on("data", (d) => (out += d));
    proc.once("exit", (code) => {
      const line = out.split("\n").find((l) => l.startsWith("BENCH_JSON "));
      if (code !== 0 || !line) return reject(new Error(`wrk failed: ${out}`));
      const j = JSON.parse(line.slice(11));
      resolve({
        requests: j.requests,
        rps: j.requests / (j.duration_us / 1e6),
        non2xx: j.errors.status,
      });
    });
  });
}

const CHILD = fileURLToPath(new URL("./hitpath-child.ts", import.meta.url));

/** A target in bench/hitpath-child.ts, pinned like the bench's. */
async function startMine(config: TargetConfig): Promise<TargetProcess> {
  const proc: ChildProcess = spawn(process.execPath, ["--import", "tsx", CHILD], {
    cwd: ROOT,
    env: {
      ...process.env,
      NODE_ENV: "production",
      BENCH_CONFIG: JSON.stringify(config),
      HITPATH_STORE_TIMEOUT: values["store-timeout"],
    },
    stdio: ["ignore", "inherit", "inherit", "ipc"],
  });
  const port = await new Promise<number>((resolve, reject) => {
    proc.once("exit", (c) => reject(new Error(`${config.name} exited ${c}`)));
    proc.on("message", (m: { type?: string; port?: number }) => {
      if (m?.type === "ready") resolve(m.port!);
    });
  });
  proc.removeAllListeners("exit");
  pinTarget(proc.pid!);
  let id = 0;
  const ask = <T>(message: object, type: string) =>
    new Promise<T>((resolve) => {
      const on = (m: { type?: string }) => {
        if (m?.type === type) {
          proc.off("message", on);
          resolve(m as T);
        }
      };
      proc.on("message", on);
      proc.send(message);
    });
  return {
    name: config.name,
    pid: proc.pid!,
    port,
    url: `http://127.0.0.1:${port}`,
    usage: () => ask({ type: "usage", id: ++id }, "usage"),
    profileStart: () => ask({ type: "profile-start" }, "profile-started"),
    profileStop: (file) => ask({ type: "profile-stop", file }, "profile-stopped"),
    stop: () =>
      new Promise<void>((resolve) => {
        proc.once("exit", () => resolve());
        proc.kill("SIGTERM");
      }),
    alive: () => proc.exitCode === null,
    output: () => "",
  };
}

const url = (i: number) => (KEYS === 1 ? "/posts?round=1" : `/posts?k=${i}`);

async function warm(target: TargetProcess): Promise<void> {
  for (let start = 1; start <= KEYS; start += 100) {
    const batch: Promise<unknown>[] = [];
    for (let i = start; i < Math.min(start + 100, KEYS + 1); i++) {
      batch.push(fetch(target.url + url(i)).then((r) => r.arrayBuffer()));
    }
    await Promise.all(batch);
  }
  // Compressed copies are stored off the request path: let them land.
  await new Promise((r) => setTimeout(r, 1500));
}

async function main(): Promise<void> {
  ensureBuilt(ROOT, (l) => console.error(l));
  const redis = await startRedis();
  const upstream = await startUpstream(100);
  const client = createClient({ url: redis.url });
  await client.connect();
  const commandstats = async () => {
    const text = (await client.sendCommand(["INFO", "commandstats"])) as string;
    const out: Record<string, number> = {};
    for (const m of text.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) out[m[1]!] = Number(m[2]);
    return out;
  };
  const redisCpu = async () => {
    const text = (await client.sendCommand(["INFO", "cpu"])) as string;
    const f = (n: string) => Number(new RegExp(`^${n}:([\\d.]+)`, "m").exec(text)?.[1]);
    return (f("used_cpu_sys") + f("used_cpu_user")) * 1e6;
  };
  const names = ["limit", ...values.targets!.split(",").filter((t) => t && t !== "limit")];
  const config = (name: string): TargetConfig => ({
    name,
    upstreamUrl: upstream.url,
    redisUrl: redis.url,
    redisPort: redis.port,
    clusterNodes: [],
    memcachedServers: "",
    ttlMs: 600_000,
  });
  const procs = new Map<string, TargetProcess>();
  try {
    for (const name of names) {
      const t =
        values.child === "bench" ? await startTarget(config(name)) : await startMine(config(name));
      procs.set(name, t);
      await warm(t);
      // A second pass: each key read once more (a two-tier L1 fills from the first).
      await warm(t);
    }
    // Bytes per entry in Redis, for each Redis target.
    const bytes: Record<string, string> = {};
    for (const name of names) {
      const keys = (await client.keys(`cachet:${name}:*k=1`)) as string[];
      const all = (await client.keys(`cachet:${name}:*k=1*`)) as string[];
      if (keys.length === 0) continue;
      let strlen = 0;
      let usage = 0;
      for (const k of all.filter((k) => /k=1(\D|$)/.test(k))) {
        const type = await client.type(k);
        strlen += type === "string" ? await client.strLen(k) : 0;
        usage += Number(await client.memoryUsage(k));
      }
      bytes[name] =
        `${all.filter((k) => /k=1(\D|$)/.test(k)).length} key(s), value ${strlen} B, MEMORY USAGE ${usage} B`;
    }
    console.log(
      `machine: ${cpus()[0]?.model} × ${availableParallelism()}, load ${loadavg()
        .map((l) => l.toFixed(2))
        .join(" ")}; ${pinningDescription()}`,
    );
    console.log(
      `child ${values.child}, store timeout ${values["store-timeout"]} ms (hitpath child only)`,
    );
    console.log(`keys ${KEYS}, ${ROUNDS} rounds × ${DURATION} s, ${CONNECTIONS} connections`);
    for (const [n, b] of Object.entries(bytes)) console.log(`redis entry (${n}, /posts?k=1): ${b}`);

    if (values.profile) {
      const t = procs.get(values.profile)!;
      await wrk(t.port, 2);
      mkdirSync(`${ROOT}bench/.tmp/profiles`, { recursive: true });
      const file = `${ROOT}bench/.tmp/profiles/hitpath-${values.profile}-${KEYS}.cpuprofile`;
      await t.profileStart();
      const c0 = (await t.usage()).cpu;
      const load = await wrk(t.port, DURATION);
      const c1 = (await t.usage()).cpu;
      await t.profileStop(file);
      const cpu = (c1.user + c1.system - c0.user - c0.system) / load.requests;
      console.log(
        summariseFile(file, `${values.profile}, ${KEYS} keys`, {
          requests: load.requests,
          seconds: DURATION,
          rps: load.rps,
          p50: 0,
          p90: 0,
          p99: 0,
          max: 0,
          non2xx: 0,
          errors: 0,
          bytes: 0,
        }),
      );
      console.log(`all-thread CPU per request (profiler on): ${cpu.toFixed(1)} µs`);
      return;
    }

    const measure = async (t: TargetProcess): Promise<Run> => {
      const u0 = (await t.usage()).cpu;
      const r0 = await redisCpu();
      const s0 = await commandstats();
      const load = await wrk(t.port, DURATION);
      const u1 = (await t.usage()).cpu;
      const r1 = await redisCpu();
      const s1 = await commandstats();
      if (load.non2xx > 0) throw new Error(`${t.name}: ${load.non2xx} non-2xx responses`);
      const commands: Record<string, number> = {};
      for (const [k, v] of Object.entries(s1)) {
        if (k === "info") continue;
        const d = v - (s0[k] ?? 0);
        if (d > 0) commands[k] = d / load.requests;
      }
      return {
        rps: load.rps,
        requests: load.requests,
        cpuUs: (u1.user + u1.system - u0.user - u0.system) / load.requests,
        redisUs: (r1 - r0) / load.requests,
        commands,
      };
    };
    // Short unrecorded load for the JIT.
    for (const t of procs.values()) await wrk(t.port, 2);
    const results = new Map<
      string,
      {
        ratio: number[];
        cpu: number[];
        redis: number[];
        rps: number[];
        cmds: Record<string, number>[];
        cpuRatio: number[];
      }
    >();
    for (const n of names)
      results.set(n, { ratio: [], cpu: [], redis: [], rps: [], cmds: [], cpuRatio: [] });
    const limit = procs.get("limit")!;
    for (let round = 0; round < ROUNDS; round++) {
      let before = await measure(limit);
      results.get("limit")!.cpu.push(before.cpuUs);
      results.get("limit")!.rps.push(before.rps);
      const order = names.slice(1);
      if (round % 2 === 1) order.reverse();
      for (const name of order) {
        const run = await measure(procs.get(name)!);
        const after = await measure(limit);
        const r = results.get(name)!;
        r.ratio.push(run.rps / ((before.rps + after.rps) / 2));
        r.cpuRatio.push(run.cpuUs / ((before.cpuUs + after.cpuUs) / 2));
        r.cpu.push(run.cpuUs);
        r.redis.push(run.redisUs);
        r.rps.push(run.rps);
        r.cmds.push(run.commands);
        results.get("limit")!.cpu.push(after.cpuUs);
        results.get("limit")!.rps.push(after.rps);
        before = after;
      }
    }
    const ref = "limit-headers";
    console.log("");
    console.log(
      `| target | req/s (median) | × limit (median, min–max) | × ${ref} (median) | CPU µs/hit server (median, min–max) | CPU ÷ limit's | Redis µs/hit | Redis commands/hit |`,
    );
    console.log("| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |");
    const lim = results.get("limit")!;
    console.log(
      `| limit | ${Math.round(median(lim.rps))} | 1 | | ${median(lim.cpu).toFixed(1)} (${Math.min(...lim.cpu).toFixed(1)}–${Math.max(...lim.cpu).toFixed(1)}) | 1 | | |`,
    );
    const refR = results.get(ref);
    for (const name of names.slice(1)) {
      const r = results.get(name)!;
      const cmds = new Map<string, number[]>();
      for (const c of r.cmds)
        for (const [k, v] of Object.entries(c)) cmds.set(k, [...(cmds.get(k) ?? []), v]);
      const vsRef = refR && name !== ref ? r.ratio.map((x, i) => x / refR.ratio[i]!) : undefined;
      console.log(
        `| ${name} | ${Math.round(median(r.rps))} | ${median(r.ratio).toFixed(2)} (${Math.min(...r.ratio).toFixed(2)}–${Math.max(...r.ratio).toFixed(2)}) | ${vsRef ? `${median(vsRef).toFixed(2)} (${Math.min(...vsRef).toFixed(2)}–${Math.max(...vsRef).toFixed(2)})` : ""} | ${median(r.cpu).toFixed(1)} (${Math.min(...r.cpu).toFixed(1)}–${Math.max(...r.cpu).toFixed(1)}) | ${median(r.cpuRatio).toFixed(2)} | ${median(r.redis).toFixed(1)} | ${[...cmds].map(([k, v]) => `${k} ${median(v).toFixed(2)}`).join(", ")} |`,
      );
    }
  } finally {
    for (const t of procs.values()) await t.stop();
    await client.quit().catch(() => {});
    await upstream.stop();
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
