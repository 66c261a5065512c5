import type { Clock } from "./clock.js";
import type { Entry } from "./entry.js";
import type { GuardedStore } from "./guard.js";

/**
 * Invalidation by versioning, not by scanning. A tag's state is the time it was last
 * invalidated (`hard`) and last soft-invalidated (`soft`). An entry whose `createdAt` is at or
 * before a tag's `hard` time is expired; at or before its `soft` time, stale. Invalidating a
 * tag is one write whatever the number of entries carrying it, and namespaces are cleared the
 * same way through an implicit namespace tag.
 */
export interface TagState {
  hard: number;
  soft: number;
  /** When this state was read from (or written to) the shared store; 0 for local-only. */
  syncedAt: number;
}

export type TagVerdict = "valid" | "stale" | "expired";

/** The store key under which a tag's state lives. */
export function tagStoreKey(tag: string): string {
  return `__cachet:tag:${tag}`;
}

/** At most this many tag states are kept in memory; older ones are re-read when needed. */
const MAX_STATES = 100_000;

/**
 * Spacing of this process's invalidation times within one millisecond (a power of two, so
 * that `t + STEP` is exact for any wall-clock `t` until the year 2500).
 */
const STEP = 2 ** -8;

export class TagRegistry {
  /** Changes whenever any known state changes; L1 hits re-check tags only when it moved. */
  mark = 0;
  readonly #states = new Map<string, TagState>();
  readonly #l2: GuardedStore | undefined;
  readonly #clock: Clock;
  readonly #syncInterval: number;
  readonly #tagTtl: number;
  readonly #inflight = new Map<string, Promise<void>>();
  /** The latest invalidation among evicted states: unknown tags are judged against it. */
  #floor = 0;
  /** The time of this process's latest invalidation (see {@link stamp}). */
  #lastInvalidation = 0;

  constructor(options: {
    l2: GuardedStore | undefined;
    clock: Clock;
    /** How long a state read from the shared store is trusted before it is read again. */
    syncInterval: number;
    /** How long a tag's state is kept in the shared store. Must outlive every entry. */
    tagTtl: number;
    /**
     * Whether invalidations made elsewhere are pushed to this process now (the bus is up):
     * then a known state stays current and is not read again.
     */
    pushed?: (() => boolean) | undefined;
  }) {
    this.#l2 = options.l2;
    this.#clock = options.clock;
    this.#syncInterval = options.syncInterval;
    this.#tagTtl = options.tagTtl;
    this.#pushed = options.pushed ?? (() => false);
  }

  readonly #pushed: () => boolean;

  /** Whether a known state can be trusted without reading it again. */
  #current(state: TagState, now: number): boolean {
    return now - state.syncedAt < this.#syncInterval || this.#pushed();
  }

  /**
   * The verdict for an entry from the states known now. A tag with no known state counts as
   * never invalidated: callers that read from the shared store call {@link sync} first.
   */
  verdict(entry: Entry): TagVerdict {
    let verdict: TagVerdict = "valid";
    for (const tag of entry.tags) {
      const state = this.#states.get(tag);
      if (state === undefined) {
        // A forgotten state may have held an invalidation: be conservative.
        if (entry.createdAt <= this.#floor) return "expired";
        continue;
      }
      if (entry.createdAt <= state.hard) return "expired";
      if (entry.createdAt <= state.soft) verdict = "stale";
    }
    return verdict;
  }

  /**
   * The creation time for an entry whose production starts now. Entries created at or before
   * a tag's invalidation time are invalid, and clocks tick in milliseconds: an entry produced
   * right after an invalidation, in the same millisecond, would be taken for one produced
   * before it and be born expired. So an entry started after this process's latest
   * invalidation is stamped just after it, and each invalidation is stamped after the
   * previous one ({@link invalidate}).
   */
  stamp(): number {
    const now = this.#clock.now();
    return now > this.#lastInvalidation ? now : this.#lastInvalidation + STEP / 2;
  }

  /** When a soft invalidation made the entry stale, the time it happened. */
  softInvalidatedAt(entry: Entry): number | undefined {
    let at: number | undefined;
    for (const tag of entry.tags) {
      const state = this.#states.get(tag);
      if (state && entry.createdAt <= state.soft) at = Math.min(at ?? state.soft, state.soft);
    }
    return at;
  }

  /** Whether `tags` all have states recent enough to judge an entry read from the store. */
  isSynced(tags: readonly string[]): boolean {
    if (!this.#l2) return true;
    const now = this.#clock.now();
    for (const tag of tags) {
      const state = this.#states.get(tag);
      if (!state || !this.#current(state, now)) return false;
    }
    return true;
  }

  /** Read the states of `tags` that are unknown or older than `syncInterval`, in one call. */
  async sync(tags: readonly string[]): Promise<void> {
    const l2 = this.#l2;
    if (!l2 || tags.length === 0) return;
    const now = this.#clock.now();
    const missing: string[] = [];
    const waits: Promise<void>[] = [];
    for (const tag of tags) {
      const state = this.#states.get(tag);
      if (state && this.#current(state, now)) continue;
      const pending = this.#inflight.get(tag);
      if (pending) waits.push(pending);
      else missing.push(tag);
    }
    if (missing.length > 0) {
      const read = l2.getMany(missing.map(tagStoreKey)).then((values) => {
        // A failed read leaves the states unknown rather than pretending they are zero.
        if (values === undefined) return;
        const syncedAt = this.#clock.now();
        missing.forEach((tag, i) => {
          const stored = parseTagState(values[i]);
          this.#merge(tag, stored.hard, stored.soft, syncedAt);
        });
      });
      const done = read.then(
        () => {
          for (const tag of missing) this.#inflight.delete(tag);
        },
        () => {
          for (const tag of missing) this.#inflight.delete(tag);
        },
      );
      for (const tag of missing) this.#inflight.set(tag, done);
      waits.push(done);
    }
    await Promise.all(waits);
  }

  /**
   * Invalidate `tags` now: every entry created at or before this instant becomes expired, or
   * stale with `soft`. One write per tag to the shared store.
   */
  async invalidate(
    tags: readonly string[],
    soft: boolean,
  ): Promise<Array<readonly [string, number, number]>> {
    // Strictly after the previous invalidation, so that a second one in the same millisecond
    // still expires the entries stamped between the two.
    const now = Math.max(this.#clock.now(), this.#lastInvalidation + STEP);
    this.#lastInvalidation = now;
    const writes: Promise<boolean>[] = [];
    const states: Array<readonly [string, number, number]> = [];
    for (const tag of tags) {
      const prev = this.#states.get(tag);
      const hard = soft ? (prev?.hard ?? 0) : now;
      this.#merge(tag, hard, now, now);
      const state = this.#states.get(tag)!;
      states.push([tag, state.hard, state.soft]);
      if (this.#l2) {
        writes.push(
          this.#l2.set(tagStoreKey(tag), Buffer.from(`${state.hard},${state.soft}`), this.#tagTtl),
        );
      }
    }
    await Promise.all(writes);
    return states;
  }

  /** Apply a state learned elsewhere (another instance, the store). Keeps the latest times. */
  apply(tag: string, hard: number, soft: number): void {
    this.#merge(tag, hard, soft, this.#clock.now());
  }

  /** Forget every state (after a bus gap), so that the next reads go to the store. */
  forget(): void {
    this.#states.clear();
    this.mark++;
  }

  #merge(tag: string, hard: number, soft: number, syncedAt: number): void {
    const prev = this.#states.get(tag);
    if (prev) {
      if (hard > prev.hard || soft > prev.soft) this.mark++;
      prev.hard = Math.max(prev.hard, hard);
      prev.soft = Math.max(prev.soft, soft, prev.hard);
      prev.syncedAt = syncedAt;
      return;
    }
    if (this.#states.size >= MAX_STATES) {
      const oldest = this.#states.entries().next().value;
      if (oldest !== undefined) {
        this.#states.delete(oldest[0]);
        this.#floor = Math.max(this.#floor, oldest[1].hard);
      }
      this.mark++;
    }
    this.#states.set(tag, { hard, soft: Math.max(soft, hard), syncedAt });
    if (hard > 0 || soft > 0) this.mark++;
  }
}

function parseTagState(bytes: Uint8Array | undefined): { hard: number; soft: number } {
  if (!bytes) return { hard: 0, soft: 0 };
  const [h, s] = Buffer.from(bytes).toString("latin1").split(",");
  const hard = Number(h);
  const soft = Number(s);
  return {
    hard: Number.isFinite(hard) ? hard : 0,
    soft: Number.isFinite(soft) ? soft : 0,
  };
}
