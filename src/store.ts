/**
 * The store contract: bytes in, bytes out, TTL in milliseconds. A store needs only `get`,
 * `set` and `delete`; everything else is optional and the cache detects it (a store without
 * `getMany` gets parallel `get`s, a store without `publish` gets no bus, and so on).
 *
 * Stores may throw or reject on failure: the cache wraps remote stores in a guard that bounds
 * every call by a timeout, counts failures into a circuit breaker, and turns failures into
 * misses (reads) and no-ops (writes).
 */
export interface Store {
  /** Names the store in errors and events, e.g. `"memory"` or `"redis"`. */
  readonly name: string;
  /**
   * True for a store inside this process (no network, no timeouts needed). The cache does not
   * guard local stores.
   */
  readonly local?: boolean | undefined;
  /**
   * The largest value `set`/`setIfAbsent` accept, in bytes, when the backend has a limit
   * (Memcached's item size, DynamoDB's 400 KB item). A larger value is rejected with an error
   * before any I/O, never stored truncated; inside a cache that write becomes a no-op (the
   * value is still returned to the caller and kept in L1). Absent: no limit of the store's own.
   */
  readonly maxValueSize?: number | undefined;

  /** The bytes under `key`, or `undefined` when there are none (or they expired). */
  get(key: string): Promise<Uint8Array | undefined>;
  /** Store `value` under `key` for `ttlMs` milliseconds (a positive integer). */
  set(key: string, value: Uint8Array, ttlMs: number): Promise<void>;
  /** Remove `key`; resolves `true` when something was removed. */
  delete(key: string): Promise<boolean>;

  /** Read several keys in one round trip; the result is aligned with `keys`. */
  getMany?(keys: readonly string[]): Promise<Array<Uint8Array | undefined>>;
  /**
   * Store several entries in one round trip (one per hash slot on a Redis Cluster). Each entry
   * has its own TTL. A store without it gets parallel `set`s.
   */
  setMany?(entries: readonly StoreEntry[]): Promise<void>;
  /**
   * Remove several keys in one round trip (one per hash slot on a Redis Cluster; DynamoDB's
   * batches of 25). A store without it gets parallel `delete`s.
   */
  deleteMany?(keys: readonly string[]): Promise<void>;
  /** Store only when `key` is absent; resolves whether it stored. Used for leases. */
  setIfAbsent?(key: string, value: Uint8Array, ttlMs: number): Promise<boolean>;
  /** Delete `key` only while it still holds `value`. Used to release leases. */
  deleteIfEquals?(key: string, value: Uint8Array): Promise<boolean>;
  /**
   * Give `key` a new life of `ttlMs` only while it still holds `value`; resolves whether it
   * did. Used to renew a lease while its factory runs (a heartbeat), so that a lease can be
   * short and a dead holder is noticed quickly. A store without it gets long leases.
   */
  extendIfEquals?(key: string, value: Uint8Array, ttlMs: number): Promise<boolean>;
  /**
   * {@link extendIfEquals} for several keys in one call: each `key` gets a new life of its
   * `ttlMs` only while it still holds its `value`. Resolves with one answer per entry, aligned
   * with `entries`. Each key is compared and renewed atomically on its own; the batch as a
   * whole is not a transaction. Used by the cache's lease renewer, which renews every lease
   * this process holds with one call per beat instead of one call per lease (see
   * docs/failure-modes.md, "A process dies holding the lease"). The cache sends at most
   * 1,000 entries a call. A store without it gets `extendIfEquals` per key.
   */
  extendManyIfEquals?(entries: readonly StoreEntry[]): Promise<boolean[]>;
  /**
   * Atomically store `value` under `key` for `ttlMs` unless `key` holds a live lease: a value
   * in the lease format (see `isLeaseValue` in src/lease.ts) that has an expiry. Absent keys,
   * values in another format and values without an expiry are replaced. Resolves whether it
   * stored. A store without it gets `setIfAbsent` (and the cache replaces a foreign value
   * itself, with `deleteIfEquals`).
   */
  takeLease?(key: string, value: Uint8Array, ttlMs: number): Promise<boolean>;
  /**
   * Publish `message` to every subscriber of `channel`, in this process and others (the bus
   * that keeps in-process tiers coherent).
   */
  publish?(channel: string, message: Uint8Array): Promise<void>;
  /**
   * Receive what is published on `channel`. `onReset` must be called whenever messages may
   * have been missed (the subscription was re-established after a disconnection). `onLost`,
   * when the store can tell, as soon as the subscription is lost (until `onReset`, nothing is
   * received). Resolves with a function that ends the subscription.
   */
  subscribe?(
    channel: string,
    onMessage: (message: Buffer) => void,
    onReset: () => void,
    onLost?: () => void,
  ): Promise<() => Promise<void>>;
  /** Release connections and timers. The store must not keep the process alive after this. */
  disconnect?(): Promise<void>;
}

/** One entry of {@link Store.setMany}: `value` under `key` for `ttlMs` milliseconds. */
export interface StoreEntry {
  readonly key: string;
  readonly value: Uint8Array;
  readonly ttlMs: number;
}
