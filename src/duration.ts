import ms from "ms";
import { InvalidOptionError } from "./errors.js";

/**
 * A length of time: a number of milliseconds, or a string such as `"60s"`, `"5m"`, `"1h"`,
 * `"500ms"` (parsed by the `ms` package). Inside cachet every duration is milliseconds.
 */
export type Duration = number | string;

/**
 * The longest duration accepted: about 100 years. Longer ones are refused rather than sent to
 * a store that would refuse them silently (Redis rejects an expiry past 2^63 ms with an error
 * a write path only logs).
 */
export const MAX_DURATION_MS = 100 * 365 * 24 * 3600 * 1000;

/**
 * Resolve a duration option to milliseconds, failing with an error that names the option.
 * A string must carry its unit (`"60s"`, `"500ms"`): a bare number in a string (`"60"`) is
 * refused, since one reader takes it for seconds and `ms` for milliseconds.
 *
 * @param value the option's value
 * @param option the option's name, used in the error message
 * @param allowZero whether `0` is acceptable
 */
export function toMs(value: Duration, option: string, allowZero = true): number {
  let out: number | undefined;
  if (typeof value === "number") {
    out = value;
  } else if (typeof value === "string") {
    const trimmed = value.trim();
    if (/^[-+]?(\d+\.?\d*|\.\d+)$/.test(trimmed)) {
      throw new InvalidOptionError(
        option,
        `a number in a string is ambiguous (${JSON.stringify(value)}): give milliseconds as a number (${trimmed}) or a string with its unit ("${trimmed}s", "${trimmed}ms")`,
      );
    }
    out = trimmed === "" ? undefined : (ms(trimmed as ms.StringValue) as number | undefined);
  }
  const shown = typeof value === "number" ? String(value) : JSON.stringify(value);
  if (value === Number.POSITIVE_INFINITY) {
    throw new InvalidOptionError(
      option,
      'Infinity is not a duration: for a value that does not expire, give ttl: "never"',
    );
  }
  if (typeof out !== "number" || !Number.isFinite(out) || out < 0 || (!allowZero && out === 0)) {
    throw new InvalidOptionError(
      option,
      `expected a ${allowZero ? "non-negative" : "positive"} number of milliseconds or a duration string such as "60s" or "5m", got ${shown}`,
    );
  }
  if (out > MAX_DURATION_MS) {
    throw new InvalidOptionError(
      option,
      `${shown} is longer than cachet accepts (100 years, ${MAX_DURATION_MS} ms): stores refuse expiries that far`,
    );
  }
  return Math.round(out);
}

/** Like {@link toMs}, but `undefined` gives `fallback`. */
export function optionalMs(
  value: Duration | undefined,
  option: string,
  fallback: number,
  allowZero = true,
): number {
  return value === undefined ? fallback : toMs(value, option, allowZero);
}
