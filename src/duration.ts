import ms from "ms";
import { InvalidOptionError } from "./errors.js";

/**
 * A length of time: a number of milliseconds, or a string such as `"60s"`, `"5m"`, `"1h"`,
 * `"500ms"` (parsed by the `ms` package). Inside cachet every duration is milliseconds.
 */
export type Duration = number | string;

/**
 * Resolve a duration option to milliseconds, failing with an error that names the option.
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
    out = trimmed === "" ? undefined : (ms(trimmed as ms.StringValue) as number | undefined);
  }
  if (typeof out !== "number" || !Number.isFinite(out) || out < 0 || (!allowZero && out === 0)) {
    throw new InvalidOptionError(
      option,
      `expected a ${allowZero ? "non-negative" : "positive"} number of milliseconds or a duration string such as "60s" or "5m", got ${JSON.stringify(value)}`,
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
