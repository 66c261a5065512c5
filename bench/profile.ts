/**
 * Summarise a V8 `.cpuprofile` (from `node --cpu-prof`): where the time went, by area (cachet's
 * dist/, each package, Node internals, GC) and by function, self and inclusive. Used by
 * `npm run bench -- --profile <target>`; also runnable on its own:
 *
 *   node --import tsx bench/profile.ts <file.cpuprofile>
 */
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import type { LoadResult } from "./lib/load.js";

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number; columnNumber: number };
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

/** Which part of the process a frame belongs to. */
function area(url: string, name: string): string {
  if (url === "") {
    if (name.startsWith("(")) return name; // (garbage collector), (idle), (program)
    return "native / V8 builtins";
  }
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (pkg) return pkg[1]!;
  if (url.startsWith("node:")) return `node: ${url.slice(5).split("/").slice(0, 2).join("/")}`;
  if (isCachet(url)) return "cachet (dist/)";
  if (url.includes("/bench/")) return "bench target code";
  return url;
}

/** A frame of cachet's built package (not a dependency's dist/). */
function isCachet(url: string): boolean {
  return url.includes("/dist/") && !url.includes("/node_modules/");
}

function frameName(node: ProfileNode): string {
  const f = node.callFrame;
  const file = f.url
    .replace(/^.*node_modules\//, "")
    .replace(/^file:\/\/.*?\/dist\//, "cachet/dist/")
    .replace(/^file:\/\/.*?\/bench\//, "bench/");
  return `${f.functionName || "(anonymous)"} ${file ? `${file}:${f.lineNumber + 1}` : ""}`.trim();
}

export function summarise(profile: CpuProfile, title: string, load?: LoadResult): string {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const self = new Map<number, number>();
  let total = 0;
  profile.samples.forEach((id, i) => {
    const dt = profile.timeDeltas[i] ?? 0;
    self.set(id, (self.get(id) ?? 0) + dt);
    total += dt;
  });
  const idle = [...self]
    .filter(([id]) => byId.get(id)!.callFrame.functionName === "(idle)")
    .reduce((a, [, t]) => a + t, 0);
  const busy = total - idle;

  const selfByArea = new Map<string, number>();
  const selfByFn = new Map<string, number>();
  const inclusiveByFn = new Map<string, number>();
  let underCachet = 0;
  for (const [id, t] of self) {
    const node = byId.get(id)!;
    if (node.callFrame.functionName === "(idle)") continue;
    const a = area(node.callFrame.url, node.callFrame.functionName);
    selfByArea.set(a, (selfByArea.get(a) ?? 0) + t);
    const name = frameName(node);
    selfByFn.set(name, (selfByFn.get(name) ?? 0) + t);
    // Inclusive: every distinct function on the stack of this sample gets its time.
    const seen = new Set<string>();
    let cachetOnStack = false;
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const n = byId.get(cur)!;
      const fn = frameName(n);
      if (isCachet(n.callFrame.url)) cachetOnStack = true;
      if (seen.has(fn)) continue;
      seen.add(fn);
      inclusiveByFn.set(fn, (inclusiveByFn.get(fn) ?? 0) + t);
    }
    if (cachetOnStack) underCachet += t;
  }
  const pct = (t: number) => `${((t / busy) * 100).toFixed(1)} %`;
  const top = (m: Map<string, number>, n: number, filter: (k: string) => boolean = () => true) =>
    [...m]
      .filter(([k]) => filter(k))
      .sort((a, b) => b[1] - a[1])
      .slice(0, n);

  const lines: string[] = [];
  lines.push(`# CPU profile: ${title}`);
  lines.push("");
  if (load) {
    lines.push(
      `Under load: ${Math.round(load.rps).toLocaleString("en-US")} req/s, p50 ${load.p50.toFixed(2)} ms, p99 ${load.p99.toFixed(2)} ms (${load.requests.toLocaleString("en-US")} requests in ${load.seconds.toFixed(1)} s).`,
    );
  }
  lines.push(
    `Sampled ${(total / 1e6).toFixed(2)} s; busy ${(busy / 1e6).toFixed(2)} s (${((busy / total) * 100).toFixed(0)} %), idle ${((idle / total) * 100).toFixed(0)} %. ` +
      `Percentages below are of busy time. Time with cachet's code (dist/) on the stack: ${pct(underCachet)}.`,
  );
  if (load) {
    lines.push(
      `Busy CPU per request: ${(busy / Math.max(1, load.requests)).toFixed(1)} µs (profiled process, main thread).`,
    );
  }
  lines.push("");
  lines.push("## Self time by area");
  lines.push("");
  lines.push("| area | self | share |");
  lines.push("| --- | ---: | ---: |");
  for (const [a, t] of top(selfByArea, 20))
    lines.push(`| ${a} | ${(t / 1000).toFixed(0)} ms | ${pct(t)} |`);
  lines.push("");
  lines.push("## Functions by self time (top 25)");
  lines.push("");
  lines.push("| function | self | share |");
  lines.push("| --- | ---: | ---: |");
  for (const [f, t] of top(selfByFn, 25))
    lines.push(`| \`${f}\` | ${(t / 1000).toFixed(0)} ms | ${pct(t)} |`);
  lines.push("");
  lines.push("## cachet functions by inclusive time (top 20)");
  lines.push("");
  lines.push("| function | inclusive | share |");
  lines.push("| --- | ---: | ---: |");
  for (const [f, t] of top(inclusiveByFn, 20, (k) => k.includes(" cachet/dist/"))) {
    lines.push(`| \`${f}\` | ${(t / 1000).toFixed(0)} ms | ${pct(t)} |`);
  }
  lines.push("");
  return lines.join("\n");
}

/** A profile with the number of requests it served, for per-request figures. */
export interface ProfiledRun {
  readonly name: string;
  readonly file: string;
  readonly requests: number;
}

/**
 * Where a request's time goes, by phase of the event loop's work: each row is the inclusive
 * time of the frames named (a frame counts once per sample), per request, in µs.
 */
const PHASES: ReadonlyArray<readonly [string, (fn: string, url: string) => boolean]> = [
  [
    "HTTP request parsed, routed, handled (until the first await)",
    (fn, url) => fn === "parserOnHeadersComplete" && url.includes("_http_common"),
  ],
  ["kernel write of the response (`writev`)", (fn) => fn === "writev"],
  [
    "microtasks and ticks (promise continuations, stream callbacks)",
    (fn) => fn === "processTicksAndRejections",
  ],
  [
    "socket reads of the store's replies (incl. protocol decode)",
    (fn, url) => fn === "onStreamRead" && url.includes("stream_base_commons"),
  ],
  ["immediates (clients' batched writes, the guard's turns)", (fn) => fn === "processImmediate"],
  ["timers", (fn) => fn === "processTimers"],
  ["garbage collector (main thread)", (fn) => fn === "(garbage collector)"],
  ["V8/native work outside JS frames (`(program)`)", (fn) => fn === "(program)"],
];

/** Per-request inclusive µs of each phase, of cachet's frames, and busy time. */
function perRequest(profile: CpuProfile, requests: number) {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const phase = new Array<number>(PHASES.length).fill(0);
  const cachetFns = new Map<string, number>();
  let busy = 0;
  let cachet = 0;
  profile.samples.forEach((id, i) => {
    const dt = profile.timeDeltas[i] ?? 0;
    if (byId.get(id)!.callFrame.functionName === "(idle)") return;
    busy += dt;
    const seenPhase = new Set<number>();
    const seenFn = new Set<string>();
    let cachetOnStack = false;
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const n = byId.get(cur)!;
      const { functionName, url } = n.callFrame;
      PHASES.forEach(([, match], k) => {
        if (!seenPhase.has(k) && match(functionName, url)) {
          seenPhase.add(k);
          phase[k]! += dt;
        }
      });
      if (isCachet(url)) {
        cachetOnStack = true;
        const fn = frameName(n);
        if (!seenFn.has(fn)) {
          seenFn.add(fn);
          cachetFns.set(fn, (cachetFns.get(fn) ?? 0) + dt);
        }
      }
    }
    if (cachetOnStack) cachet += dt;
  });
  const us = (t: number) => t / Math.max(1, requests);
  return {
    busy: us(busy),
    cachet: us(cachet),
    phases: phase.map(us),
    cachetFns: new Map([...cachetFns].map(([k, v]) => [k, us(v)])),
  };
}

/**
 * Two profiles side by side, per request: a cachet target against the reference that does the
 * same mandatory work without a cache (`limit-headers` for a memory hit, `limit-redis` for a
 * Redis hit). What differs is what the cache itself costs; what is equal is the floor.
 */
export function compareProfiles(a: ProfiledRun, b: ProfiledRun): string {
  const load = (r: ProfiledRun) => JSON.parse(readFileSync(r.file, "utf8")) as CpuProfile;
  const pa = perRequest(load(a), a.requests);
  const pb = perRequest(load(b), b.requests);
  const f = (x: number) => x.toFixed(1);
  const lines = [
    `# ${a.name} against ${b.name}: CPU per request, main thread`,
    "",
    `Inclusive µs per request (a frame counts once per sample; phases overlap where one runs inside another). ${a.name}: ${a.requests.toLocaleString("en-US")} requests profiled; ${b.name}: ${b.requests.toLocaleString("en-US")}.`,
    "",
    `| | ${a.name} | ${b.name} | difference |`,
    "| --- | ---: | ---: | ---: |",
    `| **busy CPU per request** | **${f(pa.busy)}** | **${f(pb.busy)}** | **${f(pa.busy - pb.busy)}** |`,
    ...PHASES.map(
      ([label], k) =>
        `| ${label} | ${f(pa.phases[k]!)} | ${f(pb.phases[k]!)} | ${f(pa.phases[k]! - pb.phases[k]!)} |`,
    ),
    `| cachet's code on the stack | ${f(pa.cachet)} | ${f(pb.cachet)} | ${f(pa.cachet - pb.cachet)} |`,
    "",
    `## ${a.name}: cachet's functions, inclusive µs per request (top 15)`,
    "",
    "| function | µs per request |",
    "| --- | ---: |",
    ...[...pa.cachetFns]
      .sort((x, y) => y[1] - x[1])
      .slice(0, 15)
      .map(([fn, t]) => `| \`${fn}\` | ${f(t)} |`),
    "",
  ];
  return lines.join("\n");
}

/**
 * When two runs were profiled, write their comparison to `dir/<prefix><a>-vs-<b>.md` and
 * print it; returns the file written, or `undefined` for a single run.
 */
export function writeComparison(
  runs: readonly ProfiledRun[],
  dir: string,
  prefix = "",
): string | undefined {
  const [a, b] = runs;
  if (a === undefined || b === undefined) return undefined;
  const file = join(dir, `${prefix}${a.name}-vs-${b.name}.md`);
  const text = compareProfiles(a, b);
  writeFileSync(file, text);
  console.log(text);
  return file;
}

/** Summarise a `.cpuprofile` file. */
export function summariseFile(file: string, title: string, load?: LoadResult): string {
  const profile = JSON.parse(readFileSync(file, "utf8")) as CpuProfile;
  return `${summarise(profile, title, load)}\nProfile: ${file} (open it in Chrome DevTools → Performance, or speedscope)\n`;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const file = process.argv[2];
  if (!file) {
    console.error("usage: node --import tsx bench/profile.ts <file.cpuprofile>");
    process.exit(1);
  }
  console.log(summariseFile(file, file));
}
