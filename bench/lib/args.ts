/** Command-line options of `npm run bench`. */

export const PHASES = [
  "hits",
  "misses",
  "stampede",
  "redis-kill",
  "memory",
  "micro",
  "demo",
] as const;
export type Phase = (typeof PHASES)[number];

export interface BenchArgs {
  /** `--full`: more rounds, longer runs, more samples. */
  readonly full: boolean;
  /** `--targets a,b`: the targets to run (`limit` and its A/A twin are always added). */
  readonly targets: readonly string[] | undefined;
  /** `--phases hits,micro`: the phases to run (default: all). */
  readonly phases: ReadonlySet<Phase>;
  /** Hit rounds (default 3 quick, 5 full). */
  readonly rounds: number;
  /** Seconds of load per target per round (default 2 quick, 8 full). */
  readonly duration: number;
  /** Seconds of unrecorded load per target before the rounds, to warm the JIT. */
  readonly warmup: number;
  /** Concurrent connections of the load generator. @default 50 */
  readonly connections: number;
  /** Sequential misses timed per target (default 5 quick, 20 full). */
  readonly misses: number;
  /** `--loadgen wrk|autocannon`: force a load generator (default: wrk when installed). */
  readonly loadgen: "wrk" | "autocannon" | undefined;
  /**
   * `--profile <target>[,<reference>]`: run only that target (and the reference) under load
   * with a CPU profile each, summarise, and compare the two per request.
   */
  readonly profile: string[] | undefined;
  /** `--label "…"`: a line printed at the top of RESULTS.md (what this run is). */
  readonly label: string | undefined;
  /** `--out <dir>`: where RESULTS.md, results.json and the chart go. */
  readonly out: string | undefined;
  /** `--no-pin`: leave the CPU placement to the scheduler. */
  readonly noPin: boolean;
  /** `--seed N`: the seed of the per-round target order. */
  readonly seed: number;
  /** `--render FILE`: write RESULTS.md and the chart again from a results.json, without measuring. */
  readonly render: string | undefined;
  /** `--list`: print the targets and exit. */
  readonly list: boolean;
}

const USAGE = `usage: npm run bench -- [options]

  --full                 long run (5 rounds of 8 s per target, 20 misses, …); default: quick
  --targets a,b,…        only these targets (limit and limit-aa are always measured)
  --phases a,b,…         only these phases: ${PHASES.join(", ")}
  --rounds N             hit rounds (quick 3, full 5)
  --duration S           seconds of load per target per round (quick 2, full 8)
  --warmup S             seconds of unrecorded load per target before the rounds (quick 1, full 3)
  --connections N        load generator connections (50)
  --misses N             timed sequential misses per target (quick 5, full 20)
  --loadgen wrk|autocannon   force the load generator (default: wrk when installed)
  --profile T[,REF]      profile target T under load (--cpu-prof) and summarise where time goes;
                         with REF (e.g. cachet-memory,limit-headers), T against REF per request
  --label TEXT           what this run is (printed at the top of RESULTS.md)
  --out DIR              output directory (default: bench/ for a complete run, bench/.tmp/ otherwise)
  --seed N               seed of the per-round target order (default: random, recorded)
  --no-pin               do not pin targets to core 0 and the load generator to core 1
  --render FILE          write RESULTS.md and the chart again from a results.json (no measuring)
  --list                 list the targets and exit`;

export function parseArgs(argv: readonly string[]): BenchArgs {
  const values = new Map<string, string>();
  const flags = new Set<string>();
  const takesValue = new Set([
    "targets",
    "phases",
    "rounds",
    "duration",
    "warmup",
    "connections",
    "misses",
    "loadgen",
    "profile",
    "label",
    "out",
    "seed",
    "render",
  ]);
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === "--help" || arg === "-h") {
      console.log(USAGE);
      process.exit(0);
    }
    const match = /^--([a-z-]+)(?:=(.*))?$/.exec(arg);
    if (!match) throw new Error(`unexpected argument ${JSON.stringify(arg)}\n${USAGE}`);
    const name = match[1]!;
    if (takesValue.has(name)) {
      const value = match[2] ?? argv[++i];
      if (value === undefined) throw new Error(`--${name} needs a value\n${USAGE}`);
      values.set(name, value);
    } else if (name === "full" || name === "list" || name === "no-pin") {
      flags.add(name);
    } else {
      throw new Error(`unknown option --${name}\n${USAGE}`);
    }
  }
  const full = flags.has("full");
  const num = (name: string, fallback: number, lo: number, hi: number): number => {
    const raw = values.get(name);
    if (raw === undefined) return fallback;
    const n = Number(raw);
    if (!Number.isFinite(n) || n < lo || n > hi) {
      throw new Error(`--${name}: expected a number from ${lo} to ${hi}, got ${raw}`);
    }
    return n;
  };
  const list = (name: string) =>
    values
      .get(name)
      ?.split(",")
      .map((s) => s.trim())
      .filter(Boolean);
  const phases = list("phases") ?? [...PHASES];
  for (const p of phases) {
    if (!(PHASES as readonly string[]).includes(p)) {
      throw new Error(`--phases: unknown phase ${p} (known: ${PHASES.join(", ")})`);
    }
  }
  const loadgen = values.get("loadgen");
  if (loadgen !== undefined && loadgen !== "wrk" && loadgen !== "autocannon") {
    throw new Error(`--loadgen: expected wrk or autocannon, got ${loadgen}`);
  }
  return {
    full,
    noPin: flags.has("no-pin"),
    targets: list("targets"),
    phases: new Set(phases as Phase[]),
    rounds: num("rounds", full ? 5 : 3, 1, 100),
    duration: num("duration", full ? 8 : 2, 1, 600),
    warmup: num("warmup", full ? 3 : 1, 0, 600),
    connections: num("connections", 50, 1, 10_000),
    misses: num("misses", full ? 20 : 5, 1, 10_000),
    loadgen,
    profile: values
      .get("profile")
      ?.split(",")
      .map((n) => n.trim())
      .filter(Boolean),
    label: values.get("label"),
    out: values.get("out"),
    seed: num("seed", Math.floor(Math.random() * 2 ** 31), 0, 2 ** 32),
    render: values.get("render"),
    list: flags.has("list"),
  };
}
