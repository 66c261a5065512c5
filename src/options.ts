import type { Duration } from "./duration.js";
import { optionalMs, toMs } from "./duration.js";
import { InvalidOptionError } from "./errors.js";

/**
 * How long a value lives and how it may be served once it is no longer fresh. These options
 * are accepted by `createCache` (as defaults), `getOrSet`, `set`, `wrap` and `@cached`.
 */
export interface EntryOptions {
  /**
   * How long a value is fresh: milliseconds or a duration string (`"60s"`, `"5m"`).
   * @default the cache's `ttl` (itself defaulting to `"1m"`)
   */
  ttl?: Duration;
  /**
   * After `ttl`, for this long, a read returns the stale value at once and one background
   * refresh runs (RFC 5861's stale-while-revalidate, applied to function results).
   * @default 0 (off)
   */
  staleWhileRevalidate?: Duration;
  /**
   * After `ttl`, for this long, a failing or timed-out factory yields the stale value instead
   * of the error ("grace").
   * @default 0 (off)
   */
  staleIfError?: Duration;
  /**
   * After a failed refresh of a key that has a stale value within `staleIfError` or
   * `staleWhileRevalidate`, serve the stale value for this long without calling the factory
   * again.
   * @default "5s"
   */
  graceBackoff?: Duration;
  /**
   * Soft timeout: when a stale value is at hand (within `staleIfError`) and the factory has
   * not answered within this time, return the stale value and let the factory finish in the
   * background. Without a stale value the caller waits for the factory.
   * @default 0 (off)
   */
  timeout?: Duration;
  /**
   * Hard timeout: give up on the factory after this long, abort its `signal`, and reject with
   * `FactoryHardTimeoutError` (code `E_FACTORY_HARD_TIMEOUT`), or serve the stale value when
   * one is within `staleIfError`.
   * @default 0 (off)
   */
  hardTimeout?: Duration;
  /** Tags for the entry, to invalidate it with `invalidateTags`. @default [] */
  tags?: readonly string[];
}

/** {@link EntryOptions} resolved to milliseconds. `0` means off. */
export interface Policy {
  readonly ttl: number;
  readonly swr: number;
  readonly grace: number;
  readonly graceBackoff: number;
  readonly timeout: number;
  readonly hardTimeout: number;
  readonly tags: readonly string[];
}

export const DEFAULT_POLICY: Policy = {
  ttl: 60_000,
  swr: 0,
  grace: 0,
  graceBackoff: 5_000,
  timeout: 0,
  hardTimeout: 0,
  tags: [],
};

/** Namespace tags are reserved: users cannot set or invalidate them directly. */
export const NAMESPACE_TAG_PREFIX = "@ns:";

/** Tags starting with `@` are cachet's own (namespaces, HTTP paths). */
export const RESERVED_TAG_PREFIX = "@";

/** Resolve `options` on top of `base`, validating each option and naming it on failure. */
export function resolvePolicy(
  options: EntryOptions | undefined,
  base: Policy,
  where = "options",
): Policy {
  if (options === undefined) return base;
  if (options === null || typeof options !== "object") {
    throw new InvalidOptionError(where, `expected an object, got ${JSON.stringify(options)}`);
  }
  return {
    ttl: options.ttl === undefined ? base.ttl : toMs(options.ttl, `${where}.ttl`, false),
    swr: optionalMs(options.staleWhileRevalidate, `${where}.staleWhileRevalidate`, base.swr),
    grace: optionalMs(options.staleIfError, `${where}.staleIfError`, base.grace),
    graceBackoff: optionalMs(options.graceBackoff, `${where}.graceBackoff`, base.graceBackoff),
    timeout: optionalMs(options.timeout, `${where}.timeout`, base.timeout),
    hardTimeout: optionalMs(options.hardTimeout, `${where}.hardTimeout`, base.hardTimeout),
    tags: options.tags === undefined ? base.tags : validateTags(options.tags, `${where}.tags`),
  };
}

/** Tags must be non-empty strings, and not in the reserved namespace-tag space. */
export function validateTags(tags: readonly string[], option: string): readonly string[] {
  if (!Array.isArray(tags)) {
    throw new InvalidOptionError(
      option,
      `expected an array of strings, got ${JSON.stringify(tags)}`,
    );
  }
  for (const tag of tags) {
    if (typeof tag !== "string" || tag.length === 0) {
      throw new InvalidOptionError(
        option,
        `every tag must be a non-empty string, got ${JSON.stringify(tag)}`,
      );
    }
    if (tag.startsWith(RESERVED_TAG_PREFIX)) {
      throw new InvalidOptionError(
        option,
        `tags starting with "${RESERVED_TAG_PREFIX}" are reserved for cachet (namespaces use namespace(...).clear(), paths invalidatePaths)`,
      );
    }
  }
  return [...new Set(tags)];
}
