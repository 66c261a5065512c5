import { LRUCache } from "lru-cache";
import type { Clock } from "../clock.js";
import { systemClock } from "../clock.js";
import type { Entry } from "../entry.js";
import { InvalidOptionError } from "../errors.js";
import { isLeaseValue } from "../lease.js";
import { positiveInt } from "../options.js";
import type { Store, StoreEntry } from "../store.js";

/** Options of {@link memoryStore}. */
export interface MemoryStoreOptions {
  /**
   * Upper bound of the store, in bytes (encoded size for bytes, an estimate for values kept
   * decoded). Least recently used entries are evicted to stay under it.
   * @default 67108864 (64 MiB)
   */
  maxSize?: number | undefined;
  /**
   * Largest single entry, in bytes. Larger values are not stored (the caller still gets
   * them). Must not exceed `maxSize`.
   * @default maxSize / 4
   */
  maxEntrySize?: number | undefined;
  /** Optional cap on the number of entries, on top of `maxSize`. */
  maxEntries?: number | undefined;
  /** Time source, for tests. @default Date.now */
  clock?: Clock | undefined;
}

/**
 * An entry held decoded in L1. `tagMark` records the tag registry's mark when the entry's
 * tags were last checked, so that a hit re-checks tags only after an invalidation.
 */
export interface HeldEntry<T = unknown> {
  readonly entry: Entry<T>;
  tagMark: number;
}

interface Slot {
  expiresAt: number;
  size: number;
  bytes: Uint8Array | undefined;
  held: HeldEntry | undefined;
}

const DEFAULT_MAX_SIZE = 64 * 1024 * 1024;

/**
 * The in-process store, on lru-cache, bounded in bytes. It serves two roles: a plain
 * bytes {@link Store} (so it passes the same contract suite as Redis), and the cache's L1,
 * where it keeps entries decoded so that a hit costs a map lookup and no deserialization.
 */
export class MemoryStore implements Store {
  readonly name = "memory";
  readonly local = true;
  readonly maxSize: number;
  readonly maxEntrySize: number;
  readonly #lru: LRUCache<string, Slot>;
  readonly #clock: Clock;
  #evictions = 0;
  readonly #evictListeners = new Set<(key: string, size: number) => void>();

  constructor(options: MemoryStoreOptions = {}) {
    this.maxSize = positiveInt(options.maxSize, "memoryStore.maxSize", DEFAULT_MAX_SIZE);
    this.maxEntrySize = positiveInt(
      options.maxEntrySize,
      "memoryStore.maxEntrySize",
      Math.max(1, Math.floor(this.maxSize / 4)),
    );
    if (this.maxEntrySize > this.maxSize) {
      throw new InvalidOptionError(
        "memoryStore.maxEntrySize",
        `must not exceed maxSize (${this.maxSize}), got ${this.maxEntrySize}`,
      );
    }
    const maxEntries =
      options.maxEntries === undefined
        ? undefined
        : positiveInt(options.maxEntries, "memoryStore.maxEntries", 0);
    this.#clock = options.clock ?? systemClock;
    this.#lru = new LRUCache<string, Slot>({
      maxSize: this.maxSize,
      maxEntrySize: this.maxEntrySize,
      sizeCalculation: (slot) => slot.size,
      ...(maxEntries ? { max: maxEntries } : {}),
      disposeAfter: (slot, key, reason) => {
        if (reason !== "evict") return;
        this.#evictions++;
        for (const listener of this.#evictListeners) {
          try {
            listener(key, slot.size);
          } catch {
            // An observer must never break the store.
          }
        }
      },
    });
  }

  /** Entries currently held (expired ones included until they are touched or evicted). */
  get entries(): number {
    return this.#lru.size;
  }

  /** Bytes currently accounted for. */
  get size(): number {
    return this.#lru.calculatedSize;
  }

  /** Entries evicted to stay within the bounds since the store was created. */
  get evictions(): number {
    return this.#evictions;
  }

  /**
   * Call `listener` with the key and size of every entry evicted to stay within the bounds
   * (not for deletes, expiries or replacements). Returns a function that removes it.
   */
  onEvict(listener: (key: string, size: number) => void): () => void {
    this.#evictListeners.add(listener);
    return () => {
      this.#evictListeners.delete(listener);
    };
  }

  async get(key: string): Promise<Uint8Array | undefined> {
    return this.#live(key)?.bytes;
  }

  async getMany(keys: readonly string[]): Promise<Array<Uint8Array | undefined>> {
    return keys.map((k) => this.#live(k)?.bytes);
  }

  async set(key: string, value: Uint8Array, ttlMs: number): Promise<void> {
    const bytes = Buffer.from(value);
    // lru-cache needs a positive size: an empty value still counts as one byte.
    const size = Math.max(1, bytes.length);
    this.#put(key, { expiresAt: this.#clock.now() + ttlMs, size, bytes, held: undefined });
  }

  async setIfAbsent(key: string, value: Uint8Array, ttlMs: number): Promise<boolean> {
    if (this.#live(key)) return false;
    await this.set(key, value, ttlMs);
    return true;
  }

  async deleteIfEquals(key: string, value: Uint8Array): Promise<boolean> {
    const slot = this.#live(key);
    if (!slot?.bytes || !Buffer.from(slot.bytes).equals(value)) return false;
    return this.#lru.delete(key);
  }

  async extendIfEquals(key: string, value: Uint8Array, ttlMs: number): Promise<boolean> {
    const slot = this.#live(key);
    if (!slot?.bytes || !Buffer.from(slot.bytes).equals(value)) return false;
    await this.set(key, value, ttlMs);
    return true;
  }

  async extendManyIfEquals(entries: readonly StoreEntry[]): Promise<boolean[]> {
    const out: boolean[] = [];
    for (const { key, value, ttlMs } of entries) {
      out.push(await this.extendIfEquals(key, value, ttlMs));
    }
    return out;
  }

  /** Every value here has an expiry: only the format decides whether a live value is a lease. */
  async takeLease(key: string, value: Uint8Array, ttlMs: number): Promise<boolean> {
    const slot = this.#live(key);
    if (slot && isLeaseValue(slot.bytes)) return false;
    await this.set(key, value, ttlMs);
    return true;
  }

  async delete(key: string): Promise<boolean> {
    return this.#lru.delete(key);
  }

  // ---- batch writes (setMany / deleteMany) ---------------------------------------------------

  async setMany(entries: readonly StoreEntry[]): Promise<void> {
    for (const { key, value, ttlMs } of entries) await this.set(key, value, ttlMs);
  }

  async deleteMany(keys: readonly string[]): Promise<void> {
    for (const key of keys) this.#lru.delete(key);
  }

  async disconnect(): Promise<void> {}

  /**
   * L1: the decoded entry under `key`, if present and not past its expiry at `now` (ms since
   * the epoch; the store's clock when omitted). Synchronous.
   */
  getHeld<T = unknown>(key: string, now?: number): HeldEntry<T> | undefined {
    const slot = this.#lru.get(key);
    if (slot === undefined) return undefined;
    if ((now ?? this.#clock.now()) >= slot.expiresAt) {
      this.#lru.delete(key);
      return undefined;
    }
    return slot.held as HeldEntry<T> | undefined;
  }

  /**
   * L1: keep a decoded entry until `expiresAt` (ms since the epoch), counting `size` bytes.
   * Returns false when the entry is larger than `maxEntrySize` and was not kept.
   */
  setHeld(key: string, held: HeldEntry, size: number, expiresAt: number): boolean {
    return this.#put(key, { expiresAt, size: Math.max(1, size), bytes: undefined, held });
  }

  /** L1: drop a key without waiting. */
  deleteSync(key: string): boolean {
    return this.#lru.delete(key);
  }

  /** Drop everything. */
  clear(): void {
    this.#lru.clear();
  }

  #put(key: string, slot: Slot): boolean {
    if (slot.size > this.maxEntrySize) {
      this.#lru.delete(key);
      return false;
    }
    this.#lru.set(key, slot);
    return true;
  }

  #live(key: string): Slot | undefined {
    const slot = this.#lru.get(key);
    if (slot === undefined) return undefined;
    if (this.#clock.now() >= slot.expiresAt) {
      this.#lru.delete(key);
      return undefined;
    }
    return slot;
  }
}

/** The in-process store, bounded in bytes. See {@link MemoryStoreOptions}. */
export function memoryStore(options?: MemoryStoreOptions): MemoryStore {
  return new MemoryStore(options);
}
