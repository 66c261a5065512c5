import type { Duration } from "./duration.js";
import { MAX_DURATION_MS, optionalMs, toMs } from "./duration.js";
import { InvalidOptionError } from "./errors.js";

/**
 * How long a value lives and how it may be served once it is no longer fresh. These options
 * are accepted by `createCache` (as defaults), `getOrSet`, `set`, `wrap` and `@cached`.
 */
export interface EntryOptions {
  /**
   * How long a value is fresh: milliseconds or a duration string (`"60s"`, `"5m"`), or
   * `"never"` for a value that stays until it is deleted, invalidated or evicted (stored with
   * the longest expiry cachet gives, 100 years, which every store accepts).
   * @default the cache's `ttl` (itself defaulting to `"1m"`)
   */
  ttl?: Duration | "never" | undefined;
  /**
   * After `ttl`, for this long, a read returns the stale value at once and one background
   * refresh runs (RFC 5861's stale-while-revalidate, applied to function results).
   * @default 0 (off)
   */
  staleWhileRevalidate?: Duration | undefined;
  /**
   * After `ttl`, for this long, a failing or timed-out factory yields the stale value instead
   * of the error ("grace").
   * @default 0 (off)
   */
  staleIfError?: Duration | undefined;
  /**
   * After a failed refresh of a key that has a stale value within `staleIfError` or
   * `staleWhileRevalidate`, serve the stale value for this long without calling the factory
   * again.
   * @default "5s"
   */
  graceBackoff?: Duration | undefined;
  /**
   * Soft timeout: when a stale value is at hand (within `staleIfError`) and the factory has
   * not answered within this time, return the stale value and let the factory finish in the
   * background. Without a stale value the caller waits for the factory.
   * @default 0 (off)
   */
  timeout?: Duration | undefined;
  /**
   * Hard timeout: give up on the factory after this long, abort its `signal`, and reject with
   * `FactoryHardTimeoutError` (code `E_FACTORY_HARD_TIMEOUT`), or serve the stale value when
   * one is within `staleIfError`.
   * @default 0 (off)
   */
  hardTimeout?: Duration | undefined;
  /** Tags for the entry, to invalidate it with `invalidateTags`. @default [] */
  tags?: readonly string[] | undefined;
  /**
   * Single-flight across every instance sharing the remote store: the first instance to miss
   * takes a lease (a value in the lease format: a magic prefix and a random token, released
   * only by its owner) and runs the factory; the others wait for the value to land (woken by
   * the bus, else by polling the store) and run the factory themselves only when `wait` runs
   * out. A waiter holding a stale value (within `staleIfError`) serves it instead of waiting.
   *
   * - `ttl`: the life of the lease, in ms or a duration string. While the factory runs, its
   *   holder renews the lease every `ttl / 3` (a heartbeat), so a holder that dies is noticed
   *   within about `ttl` and a waiter takes over; a slow factory keeps its lease however long
   *   it runs. Default 1 s; at least 30 ms. On a store without `extendIfEquals` (no heartbeat)
   *   the lease is not renewed and lives, unless `ttl` is given, `hardTimeout` + 1 s, else
   *   10 s.
   * - `wait`: how long a waiter waits for the holder's value at most before running the
   *   factory itself. Default `hardTimeout` + 1 s, else 10 s.
   *
   * A value under the lease key that is not in the lease format, or (on Redis) has no expiry,
   * is not waited on: it is replaced at once. Needs a remote store with `setIfAbsent` or
   * `takeLease`; ignored otherwise.
   * @default false
   */
  lease?: boolean | { ttl?: Duration | undefined; wait?: Duration | undefined } | undefined;
  /**
   * Probabilistic early refresh (XFetch, Vattani et al. 2015): on a fresh hit, refresh in the
   * background with a probability that grows as expiry nears and with how long the value took
   * to compute. `beta` > 1 favours earlier refreshes; 1 is the classic choice.
   * @default 0 (off)
   */
  earlyRefresh?: number | undefined;
  /**
   * Shorten each entry's ttl by a random fraction up to this (0–1), so that keys written
   * together do not all expire together.
   * @default 0 (off)
   */
  jitter?: number | undefined;
}

/** A resolved lease policy. */
export interface LeasePolicy {
  /** How long the lease lives unless renewed (every `ttl / 3` by its holder) or released. */
  readonly ttl: number;
  /** The life of a lease on a store that cannot renew it (no `extendIfEquals`). */
  readonly unrenewedTtl: number;
  /** How long a waiter waits for the holder's value before running the factory itself. */
  readonly wait: number;
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
  readonly lease: LeasePolicy | undefined;
  readonly early: number;
  readonly jitter: number;
}

export const DEFAULT_POLICY: Policy = {
  ttl: 60_000,
  swr: 0,
  grace: 0,
  graceBackoff: 5_000,
  timeout: 0,
  hardTimeout: 0,
  tags: [],
  lease: undefined,
  early: 0,
  jitter: 0,
};

/**
 * The ttl of `"never"`: the longest duration cachet accepts. Stale windows added to it stay
 * within what every store takes (Redis up to 2^63 ms, Memcached's 32-bit Unix time falls back
 * to "no expiry", DynamoDB's TTL attribute in seconds).
 */
const NEVER_MS = MAX_DURATION_MS;

/** Default life of a renewed lease (its holder renews it every third of it). */
const DEFAULT_LEASE_TTL = 1_000;
/** Shortest lease life: renewals every ttl/3 must stay well above a store round trip. */
const MIN_LEASE_TTL = 30;
/** Default wait, and life of an unrenewed lease, when `hardTimeout` does not say otherwise. */
const DEFAULT_LEASE_WAIT = 10_000;

/** Namespace tags are reserved: users cannot set or invalidate them directly. */
export const NAMESPACE_TAG_PREFIX = "@ns:";

/** Tags starting with `@` are cachet's own (namespaces, HTTP paths). */
export const RESERVED_TAG_PREFIX = "@";

/** Resolve `options` on top of `base`, validating each option and naming it on failure. */
export function resolvePolicy(
  options: EntryOptions | undefined,
  base: Policy,
  where = "options",
  /** A factory's `setOptions` may store a value already stale (ttl 0) for its stale windows. */
  zeroTtl = false,
): Policy {
  if (options === undefined) return base;
  if (options === null || typeof options !== "object") {
    throw new InvalidOptionError(where, `expected an object, got ${JSON.stringify(options)}`);
  }
  const hardTimeout = optionalMs(options.hardTimeout, `${where}.hardTimeout`, base.hardTimeout);
  return {
    ttl:
      options.ttl === undefined
        ? base.ttl
        : options.ttl === "never"
          ? NEVER_MS
          : toMs(options.ttl, `${where}.ttl`, zeroTtl),
    swr: optionalMs(options.staleWhileRevalidate, `${where}.staleWhileRevalidate`, base.swr),
    grace: optionalMs(options.staleIfError, `${where}.staleIfError`, base.grace),
    graceBackoff: optionalMs(options.graceBackoff, `${where}.graceBackoff`, base.graceBackoff),
    timeout: optionalMs(options.timeout, `${where}.timeout`, base.timeout),
    hardTimeout,
    tags: options.tags === undefined ? base.tags : validateTags(options.tags, `${where}.tags`),
    lease:
      options.lease === undefined ? base.lease : resolveLease(options.lease, hardTimeout, where),
    early:
      options.earlyRefresh === undefined
        ? base.early
        : nonNegative(options.earlyRefresh, `${where}.earlyRefresh`, Number.POSITIVE_INFINITY),
    jitter:
      options.jitter === undefined
        ? base.jitter
        : nonNegative(options.jitter, `${where}.jitter`, 1),
  };
}

function resolveLease(
  value: NonNullable<EntryOptions["lease"]>,
  hardTimeout: number,
  where: string,
): LeasePolicy | undefined {
  if (value === false) return undefined;
  const o = value === true ? {} : value;
  if (o === null || typeof o !== "object") {
    throw new InvalidOptionError(
      `${where}.lease`,
      `expected true, false or { ttl, wait }, got ${JSON.stringify(value)}`,
    );
  }
  const ttl = optionalMs(o.ttl, `${where}.lease.ttl`, DEFAULT_LEASE_TTL, false);
  if (ttl < MIN_LEASE_TTL) {
    throw new InvalidOptionError(
      `${where}.lease.ttl`,
      `expected at least ${MIN_LEASE_TTL} ms (the holder renews it every third), got ${JSON.stringify(o.ttl)}`,
    );
  }
  // Without a heartbeat, a lease must outlive the factory it guards, or a second instance
  // would start another run.
  const long = hardTimeout > 0 ? hardTimeout + 1_000 : DEFAULT_LEASE_WAIT;
  const unrenewedTtl = o.ttl === undefined ? long : ttl;
  const wait = optionalMs(o.wait, `${where}.lease.wait`, long, false);
  return { ttl, unrenewedTtl, wait };
}

function nonNegative(value: number, option: string, max: number): number {
  if (typeof value !== "number" || !Number.isFinite(value) || value < 0 || value > max) {
    throw new InvalidOptionError(
      option,
      `expected a number from 0${max === Number.POSITIVE_INFINITY ? "" : ` to ${max}`}, got ${JSON.stringify(value)}`,
    );
  }
  return value;
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

/** A positive safe integer option, `fallback` when absent; fails naming the option otherwise. */
export function positiveInt(value: number | undefined, option: string, fallback: number): number {
  if (value === undefined) return fallback;
  if (!Number.isSafeInteger(value) || value <= 0) {
    throw new InvalidOptionError(
      option,
      `expected a positive integer, got ${JSON.stringify(value)}`,
    );
  }
  return value;
}

/** Every option of {@link EntryOptions}, for the checks that refuse unknown option names. */
export const ENTRY_OPTION_NAMES: readonly string[] = [
  "ttl",
  "staleWhileRevalidate",
  "staleIfError",
  "graceBackoff",
  "timeout",
  "hardTimeout",
  "tags",
  "lease",
  "earlyRefresh",
  "jitter",
];
