// Small doubles for unit tests of the core: a clock the test advances, a "remote" store over
// a Map (the cache guards any store that is not a MemoryStore, so this exercises the L2 code
// paths without a server), an event recorder, and promise plumbing. Real stores are tested
// against real servers elsewhere.
import type { Cache, CacheEventMap, CacheEventName, Clock, Store } from "../../src/index.js";

/** A clock that only moves when the test says so. */
export interface ManualClock extends Clock {
  readonly t: number;
  advance(ms: number): void;
  set(t: number): void;
}

export function manualClock(start = 1_700_000_000_000): ManualClock {
  let t = start;
  return {
    now: () => t,
    get t() {
      return t;
    },
    advance(ms: number) {
      t += ms;
    },
    set(value: number) {
      t = value;
    },
  };
}

interface Stored {
  bytes: Buffer;
  expiresAt: number;
}

/**
 * A remote-store double over a Map. `failWith` makes every call reject; `hang` makes every
 * call never settle; `calls` counts calls by operation (failed ones included).
 */
export class MapStore implements Store {
  readonly name = "fake-remote";
  readonly data = new Map<string, Stored>();
  readonly calls = { get: 0, set: 0, delete: 0 };
  failWith: Error | undefined;
  hang = false;
  readonly #clock: Clock;

  constructor(clock: Clock) {
    this.#clock = clock;
  }

  async get(key: string): Promise<Uint8Array | undefined> {
    this.calls.get++;
    await this.#check();
    const stored = this.data.get(key);
    if (!stored) return undefined;
    if (this.#clock.now() >= stored.expiresAt) {
      this.data.delete(key);
      return undefined;
    }
    return stored.bytes;
  }

  async set(key: string, value: Uint8Array, ttlMs: number): Promise<void> {
    this.calls.set++;
    await this.#check();
    if (!Number.isSafeInteger(ttlMs) || ttlMs <= 0) {
      throw new RangeError(`ttlMs must be a positive integer, got ${ttlMs}`);
    }
    this.data.set(key, { bytes: Buffer.from(value), expiresAt: this.#clock.now() + ttlMs });
  }

  async delete(key: string): Promise<boolean> {
    this.calls.delete++;
    await this.#check();
    return this.data.delete(key);
  }

  /** Raw bytes under `key`, bypassing expiry and failure injection. */
  raw(key: string): Buffer | undefined {
    return this.data.get(key)?.bytes;
  }

  /** Put raw bytes under `key` (corrupt, foreign, truncated …) for `ttlMs`. */
  put(key: string, bytes: Uint8Array, ttlMs = 3_600_000): void {
    this.data.set(key, { bytes: Buffer.from(bytes), expiresAt: this.#clock.now() + ttlMs });
  }

  /** Keys of entries (tag states excluded). */
  entryKeys(): string[] {
    return [...this.data.keys()].filter((k) => !k.startsWith("__cachet:")).sort();
  }

  #check(): Promise<void> {
    if (this.hang) return new Promise<void>(() => {});
    if (this.failWith) return Promise.reject(this.failWith);
    return Promise.resolve();
  }
}

const EVENT_NAMES: readonly CacheEventName[] = [
  "hit",
  "miss",
  "stale",
  "set",
  "delete",
  "invalidate",
  "factory-error",
  "error",
  "breaker",
];

export interface EventLog {
  readonly log: Array<{ name: CacheEventName; payload: unknown }>;
  names(): CacheEventName[];
  of<E extends CacheEventName>(name: E): Array<CacheEventMap[E]>;
  reset(): void;
}

/** Record every event a cache emits, in order. */
export function recordEvents(cache: Cache): EventLog {
  const log: Array<{ name: CacheEventName; payload: unknown }> = [];
  for (const name of EVENT_NAMES) {
    cache.on(name, ((payload: unknown) => log.push({ name, payload })) as never);
  }
  return {
    log,
    names: () => log.map((e) => e.name),
    of: <E extends CacheEventName>(name: E) =>
      log.filter((e) => e.name === name).map((e) => e.payload as CacheEventMap[E]),
    reset: () => {
      log.length = 0;
    },
  };
}

export interface Deferred<T> {
  readonly promise: Promise<T>;
  resolve(value: T): void;
  reject(error: unknown): void;
}

export function deferred<T>(): Deferred<T> {
  let resolve!: (value: T) => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** Let pending promise callbacks and I/O callbacks run (setImmediate is never mocked here). */
export async function flush(rounds = 5): Promise<void> {
  for (let i = 0; i < rounds; i++) await new Promise<void>((resolve) => setImmediate(resolve));
}

/** Whether `promise` has settled yet (after letting pending callbacks run). */
export async function isSettled(promise: Promise<unknown>): Promise<boolean> {
  let settled = false;
  promise.then(
    () => {
      settled = true;
    },
    () => {
      settled = true;
    },
  );
  await flush();
  return settled;
}
