/**
 * Command-line parsing shared by the bench's smaller scripts (`working-set.ts`, `scale.ts`):
 * `--name value`, `--name=value` and boolean `--flag`, checked against a spec so that a typo
 * fails with the usage text instead of being ignored; and counts written `1k`, `10k`, `1M`.
 */

export interface OptionSpec {
  /** Options that take a value. */
  readonly values: readonly string[];
  /** Boolean flags. */
  readonly flags: readonly string[];
  readonly usage: string;
}

export interface ParsedOptions {
  readonly values: ReadonlyMap<string, string>;
  readonly flags: ReadonlySet<string>;
  /** Whether `--help` or `-h` was given (the caller prints the usage and exits). */
  readonly help: boolean;
}

export function parseOptions(argv: readonly string[], spec: OptionSpec): ParsedOptions {
  const values = new Map<string, string>();
  const flags = new Set<string>();
  let help = false;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === "--help" || arg === "-h") {
      help = true;
      continue;
    }
    const match = /^--([a-z][a-z0-9-]*)(?:=(.*))?$/.exec(arg);
    if (!match) throw new Error(`unexpected argument ${JSON.stringify(arg)}\n${spec.usage}`);
    const name = match[1]!;
    if (spec.values.includes(name)) {
      const value = match[2] ?? argv[++i];
      if (value === undefined) throw new Error(`--${name} needs a value\n${spec.usage}`);
      values.set(name, value);
    } else if (spec.flags.includes(name) && match[2] === undefined) {
      flags.add(name);
    } else {
      throw new Error(`unknown option --${name}\n${spec.usage}`);
    }
  }
  return { values, flags, help };
}

/**
 * A count written as digits with an optional `k` (×1,000) or `M` (×1,000,000) suffix:
 * `1000`, `10k`, `1M`, `2.5k`. Underscores and commas between digits are allowed
 * (`100_000`, `1,000`). Must be a whole number from `lo` to `hi`.
 */
export function parseCount(raw: string, what: string, lo = 1, hi = 100_000_000): number {
  const m = /^(\d[\d_,]*(?:\.\d+)?)([kKmM]?)$/.exec(raw.trim());
  const n = m
    ? Number(m[1]!.replace(/[_,]/g, "")) *
      (m[2] === "" ? 1 : m[2]!.toLowerCase() === "k" ? 1_000 : 1_000_000)
    : Number.NaN;
  if (!Number.isInteger(n) || n < lo || n > hi) {
    throw new Error(
      `${what}: expected a whole count from ${lo} to ${hi} (e.g. 1000, 10k, 1M), got ${JSON.stringify(raw)}`,
    );
  }
  return n;
}

/** A comma-separated list of counts (`1k,10k,100k,1M`), in the order given, duplicates dropped. */
export function parseCounts(raw: string, what: string, lo = 1, hi = 100_000_000): number[] {
  const parts = raw
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);
  if (parts.length === 0)
    throw new Error(`${what}: expected at least one count, got ${JSON.stringify(raw)}`);
  return [...new Set(parts.map((p) => parseCount(p, what, lo, hi)))];
}

/** `1000` → `1k`, `1000000` → `1M`, otherwise the digits grouped (`12,345`). */
export function formatCount(n: number): string {
  if (n >= 1_000_000 && n % 1_000_000 === 0) return `${n / 1_000_000}M`;
  if (n >= 1_000 && n % 1_000 === 0) return `${n / 1_000}k`;
  return n.toLocaleString("en-US");
}

/** A number option from `values`, within `lo`..`hi`, or `fallback` when absent. */
export function numberOption(
  values: ReadonlyMap<string, string>,
  name: string,
  fallback: number,
  lo: number,
  hi: number,
): number {
  const raw = values.get(name);
  if (raw === undefined) return fallback;
  const n = Number(raw);
  if (!Number.isFinite(n) || n < lo || n > hi) {
    throw new Error(`--${name}: expected a number from ${lo} to ${hi}, got ${raw}`);
  }
  return n;
}

/** An argument as a shell would need it written (for the command line printed in reports). */
export function shellQuote(arg: string): string {
  return /^[\w.,=/:@%+-]+$/.test(arg) ? arg : `'${arg.replace(/'/g, "'\\''")}'`;
}
