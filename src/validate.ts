import { InvalidOptionError } from "./errors.js";

/**
 * Fail on an option name `known` does not list, naming it and the closest known name: in
 * plain JavaScript, `{ tll: 60 }` or an ioredis-style `{ host, port }` would otherwise be
 * accepted and silently do nothing. Called once, at construction.
 */
export function rejectUnknownOptions(
  options: object,
  known: readonly string[],
  where: string,
  hints: Readonly<Record<string, string>> = {},
): void {
  for (const name of Object.keys(options)) {
    if (known.includes(name)) continue;
    if ((options as Record<string, unknown>)[name] === undefined) continue;
    const hint = hints[name] ?? suggestion(name, known);
    throw new InvalidOptionError(
      `${where}.${name}`,
      `unknown option${hint ? `: ${hint}` : ""} (known: ${known.join(", ")})`,
    );
  }
}

function suggestion(name: string, known: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = 3;
  for (const candidate of known) {
    const d = distance(name.toLowerCase(), candidate.toLowerCase());
    if (d < bestDistance) {
      best = candidate;
      bestDistance = d;
    }
  }
  return best === undefined ? undefined : `did you mean \`${best}\`?`;
}

/** Levenshtein distance, for short option names. */
function distance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let previous = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const current = row[j]!;
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, previous + (a[i - 1] === b[j - 1] ? 0 : 1));
      previous = current;
    }
  }
  return row[b.length]!;
}
