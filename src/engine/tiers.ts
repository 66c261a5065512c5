import type { Clock } from "../clock.js";
import type { Entry } from "../entry.js";
import { decodeEntry, deepFreeze, encodeEntry } from "../entry.js";
import {
  InvalidOptionError,
  OutdatedEntryError,
  SerializeError,
  UnsupportedValueError,
} from "../errors.js";
import type { CacheEvents, InvalidationKind, StaleReason, Tier } from "../events.js";
import type { GuardedStore } from "../guard.js";
import type { EntryOptions, Policy } from "../options.js";
import { resolvePolicy } from "../options.js";
import { checksWhileEncoding, type Serializer } from "../serializer.js";
import { estimateSize } from "../size.js";
import type { StoreEntry } from "../store.js";
import type { HeldEntry } from "../stores/memory.js";
import type { Core, Decoded } from "./core.js";
import { RESERVED_KEY_PREFIX } from "./core.js";

/**
 * Namespaced keys are `@<path>:<key>` and root keys may not start with `@`, so that no root key
 * can land in a namespace (a root `users:1` would otherwise be a `users` namespace's `1`, and
 * survive that namespace's `clear()`).
 */
const NAMESPACE_KEY_MARK = "@";

/**
 * The read path and the tiers, seen from one namespace: key scoping, L1 → L2 lookups with
 * backfill, entry construction, writes to both tiers, freshness judged with tags, and tag
 * invalidation. No factory runs here (that is the {@link Coordinator}'s job). Methods taking
 * `full` take a key already scoped by {@link Tiers.key}.
 */
export class Tiers {
  readonly core: Core;
  /** The namespace path (`""` for the root cache, `"users"`, `"users/admins"`, …). */
  readonly path: string;
  /** The namespace tags every entry of this namespace carries (the root's first). */
  readonly nsTags: readonly string[];
  readonly serializer: Serializer;
  readonly #prefix: string;
  /** Pair reads under way ({@link lookupWith}), shared by concurrent callers of one pair. */
  readonly #pairs = new Map<string, Promise<[Decoded | undefined, Decoded | undefined]>>();

  constructor(core: Core, path: string, nsTags: readonly string[], serializer: Serializer) {
    this.core = core;
    this.path = path;
    this.#prefix = path === "" ? "" : `${NAMESPACE_KEY_MARK}${path}:`;
    this.nsTags = nsTags;
    this.serializer = serializer;
  }

  get clock(): Clock {
    return this.core.clock;
  }

  get events(): CacheEvents {
    return this.core.events;
  }

  /** Whether there is a remote tier (worth a read before setting up a flight). */
  get hasRemote(): boolean {
    return this.core.l2 !== undefined;
  }

  /** Resolve entry options against the cache's defaults (validating them). */
  policy(options?: EntryOptions, where?: string): Policy {
    return resolvePolicy(options, this.core.defaults, where);
  }

  /** The store key of `key` in this namespace; throws on empty and reserved keys. */
  key(key: string): string {
    // Fast path: a non-empty string that starts with neither "_" nor "@" needs no more checks.
    if (typeof key === "string" && key.length > 0) {
      const first = key.charCodeAt(0);
      if (first !== 95 && first !== 64) return this.#prefix + key;
    }
    if (typeof key !== "string" || key.length === 0) {
      throw new InvalidOptionError(
        "key",
        `expected a non-empty string, got ${JSON.stringify(key)}`,
      );
    }
    if (key.startsWith(RESERVED_KEY_PREFIX)) {
      throw new InvalidOptionError(
        "key",
        `keys starting with "${RESERVED_KEY_PREFIX}" are reserved`,
      );
    }
    if (this.#prefix === "" && key.startsWith(NAMESPACE_KEY_MARK)) {
      throw new InvalidOptionError(
        "key",
        `keys starting with "${NAMESPACE_KEY_MARK}" are reserved for namespaces; use namespace(name)`,
      );
    }
    return this.#prefix + key;
  }

  /** A fresh L1 entry held under `full`, or `undefined`. Synchronous; emits nothing. */
  freshHeld<T>(full: string, now = this.core.clock.now()): HeldEntry<T> | undefined {
    const held = this.core.l1?.getHeld<T>(full, now);
    return held !== undefined && this.isFreshHeld(held, now) ? held : undefined;
  }

  /**
   * The fresh entry under `key` in the in-process tier, synchronously, or `undefined`.
   * Emits `hit` when found. The HTTP cache's fast path.
   */
  peek<T>(key: string): Entry<T> | undefined {
    const full = this.key(key);
    const held = this.freshHeld<T>(full);
    if (held === undefined) return undefined;
    this.hit(full, "l1");
    return held.entry;
  }

  /** The fresh entry under `key` from either tier (backfilling L1), without a factory. */
  lookupEntry<T>(key: string, options?: { quiet?: boolean }): Promise<Entry<T> | undefined> {
    return this.lookup<T>(this.key(key), options?.quiet === true);
  }

  /**
   * The fresh entry under `key` from either tier (backfilling L1), and the fresh one under
   * `extra` read with it: from L1 when `key` is there, else in the same round trip to L2 (one
   * `getMany`: one `MGET` on Redis). Events (`hit`, `miss`) are about `key` only; `extra` is
   * a part of its value kept apart (an HTTP response's compressed body).
   */
  async lookupWith<T, U>(
    key: string,
    extra: string,
  ): Promise<[Entry<T> | undefined, Entry<U> | undefined]> {
    const full = this.key(key);
    const fullExtra = this.key(extra);
    this.core.bus?.start();
    const now = this.core.clock.now();
    const held = this.freshHeld<T>(full, now);
    if (held !== undefined) {
      this.hit(full, "l1");
      return [held.entry, this.freshHeld<U>(fullExtra, now)?.entry];
    }
    const l2 = this.core.l2;
    let pair: [Decoded | undefined, Decoded | undefined] = [undefined, undefined];
    if (l2) {
      const id = `${full}\n${fullExtra}`;
      let pending = this.#pairs.get(id);
      if (!pending) {
        pending = this.#fetchPair(full, fullExtra, l2);
        this.#pairs.set(id, pending);
        const done = () => this.#pairs.delete(id);
        pending.then(done, done);
      }
      pair = await pending;
    }
    const [head, part] = pair;
    const at = this.core.clock.now();
    if (head !== undefined && this.freshness(head.entry, at) === "fresh") {
      this.hold(full, head.entry, head.size);
      this.hit(full, "l2");
      const fresh = part !== undefined && this.freshness(part.entry, at) === "fresh";
      if (fresh) this.hold(fullExtra, part.entry, part.size);
      return [head.entry as Entry<T>, fresh ? (part.entry as Entry<U>) : undefined];
    }
    const events = this.core.events;
    if (events.wants("miss")) events.emit("miss", { key: full });
    return [undefined, undefined];
  }

  async #fetchPair(
    full: string,
    fullExtra: string,
    l2: GuardedStore,
  ): Promise<[Decoded | undefined, Decoded | undefined]> {
    const replies = (await l2.getMany([full, fullExtra])) ?? [];
    const [a, b] = replies;
    return Promise.all([
      a === undefined ? undefined : this.#decode(full, a),
      b === undefined ? undefined : this.#decode(fullExtra, b),
    ]);
  }

  /**
   * Write `entry` under `key` to the remote tier only (a part of a value this process already
   * holds whole, such as an HTTP response's compressed body). Nothing is announced: such parts
   * are only used with the value they belong to. Never throws.
   */
  async storeRemote(key: string, entry: Entry): Promise<void> {
    const l2 = this.core.l2;
    if (!l2) return;
    const lifetime = entry.staleUntil - this.core.clock.now();
    if (lifetime <= 0) return;
    const full = this.key(key);
    let bytes: Buffer;
    try {
      bytes = encodeEntry(entry, this.serializer);
    } catch (cause) {
      const events = this.core.events;
      const error = new SerializeError(
        `the ${this.serializer.name} serializer failed for key "${full}"; the value is not shared`,
        { cause },
      );
      if (events.wants("error")) events.emit("error", { key: full, operation: "serialize", error });
      return;
    }
    await l2.set(full, bytes, Math.ceil(lifetime));
  }

  /** Store `value` under `key` with a resolved policy. */
  async store<T>(key: string, value: T, policy: Policy): Promise<void> {
    await this.write(this.key(key), this.makeEntry(value, this.core.tags.stamp(), policy));
  }

  /**
   * Replace the value of entry `from` under `key`, keeping its timestamps and tags, only if it
   * is still the entry stored there (a newer write or a delete wins). Used to upgrade a stored
   * HTTP response with its compressed bodies once they are ready.
   */
  async replaceValue<T>(key: string, from: Entry<T>, value: T): Promise<boolean> {
    const full = this.key(key);
    const { l1, l2 } = this.core;
    if (l1) {
      if (l1.getHeld(full)?.entry !== from) return false;
    } else if (l2) {
      const current = await this.readL2(full);
      if (current?.entry.createdAt !== from.createdAt) return false;
    }
    await this.write(full, { ...from, value });
    return true;
  }

  /**
   * How this cache judges `entry` now, tag and namespace invalidations included (their states
   * are read from the store first). For tools that inspect entries (the CLI).
   */
  async judge(entry: Entry): Promise<{
    state: "fresh" | "stale" | "expired";
    invalidated: "expired" | "stale" | undefined;
    staleSince: number;
  }> {
    const { tags, clock } = this.core;
    await tags.sync(entry.tags);
    const verdict = tags.verdict(entry);
    return {
      state: this.freshness(entry, clock.now()),
      invalidated: verdict === "valid" ? undefined : verdict,
      staleSince: this.staleSince(entry),
    };
  }

  hit(key: string, tier: Tier): void {
    const events = this.core.events;
    if (events.wants("hit")) events.emit("hit", { key, tier });
  }

  stale(key: string, tier: Tier, reason: StaleReason): void {
    const events = this.core.events;
    if (events.wants("stale")) events.emit("stale", { key, tier, reason });
  }

  /** Fresh and not invalidated by a tag. Re-checks tags only when the registry moved. */
  isFreshHeld(held: HeldEntry, now = this.core.clock.now()): boolean {
    const tags = this.core.tags;
    if (now >= held.entry.freshUntil) return false;
    if (held.tagMark === tags.mark) return true;
    if (tags.verdict(held.entry) !== "valid") return false;
    held.tagMark = tags.mark;
    return true;
  }

  /** A fresh entry from L1 or L2 (backfilling L1), or `undefined`. No factory. */
  lookup<T>(full: string, quiet = false): Promise<Entry<T> | undefined> {
    this.core.bus?.start();
    const held = this.freshHeld<T>(full);
    if (held !== undefined) {
      this.hit(full, "l1");
      return Promise.resolve(held.entry);
    }
    // A continuation rather than an `await`: one frame less kept while the store answers.
    return this.readL2<T>(full).then((remote) => {
      if (remote !== undefined && this.freshness(remote.entry, this.core.clock.now()) === "fresh") {
        this.hold(full, remote.entry, remote.size);
        this.hit(full, "l2");
        return remote.entry;
      }
      const events = this.core.events;
      if (!quiet && events.wants("miss")) events.emit("miss", { key: full });
      return undefined;
    });
  }

  /** A new entry for `value`, produced from `createdAt` on, in this namespace. */
  makeEntry<T>(value: T, createdAt: number, policy: Policy, delta = 0): Entry<T> {
    // Jitter only ever shortens the ttl, so an entry never outlives what was asked.
    const ttl = policy.jitter > 0 ? policy.ttl * (1 - policy.jitter * Math.random()) : policy.ttl;
    const freshUntil = createdAt + ttl;
    return {
      value,
      createdAt,
      freshUntil,
      staleUntil: freshUntil + Math.max(policy.swr, policy.grace),
      swr: policy.swr,
      grace: policy.grace,
      delta: Math.max(0, delta),
      tags: policy.tags.length === 0 ? this.nsTags : [...this.nsTags, ...policy.tags],
    };
  }

  /**
   * Write an entry to both tiers. Throws {@link UnsupportedValueError} (before touching either
   * tier) for a value the serializer cannot store faithfully, memory-only included; other
   * failures become `error` events.
   */
  async write(full: string, entry: Entry): Promise<void> {
    const { l1, l2, clock, events } = this.core;
    const serializer = this.serializer;
    // With a remote tier, the built-in serializers run the same check while encoding (one walk,
    // not two); memory-only walks without encoding, and so does any serializer of yours.
    if (
      serializer.unsupported !== undefined &&
      entry.value !== undefined &&
      (!l2 || !checksWhileEncoding(serializer))
    ) {
      const found = serializer.unsupported(entry.value);
      if (found) throw new UnsupportedValueError(full, found.path, found.reason, serializer.name);
    }
    this.core.bus?.start();
    const now = clock.now();
    const lifetime = entry.staleUntil - now;
    if (lifetime <= 0) return;
    let bytes: Buffer | undefined;
    if (l2) {
      try {
        bytes = encodeEntry(entry, serializer);
      } catch (cause) {
        if (cause instanceof UnsupportedValueError) {
          throw new UnsupportedValueError(full, cause.path, cause.reason, cause.serializer);
        }
        const error = new SerializeError(
          `the ${serializer.name} serializer failed for key "${full}"; the value is not shared`,
          { cause },
        );
        if (events.wants("error"))
          events.emit("error", { key: full, operation: "serialize", error });
      }
    }
    if (l1) this.hold(full, entry, bytes ? bytes.length : undefined);
    if (l2 && bytes) {
      const stored = await l2.set(full, bytes, Math.ceil(lifetime));
      // Others drop their copies and read the new value from the store (lease waiters too).
      if (stored) this.core.bus?.key(full, true);
    }
    if (events.wants("set")) {
      events.emit("set", {
        key: full,
        ttl: entry.freshUntil - entry.createdAt,
        size: bytes?.length,
      });
    }
  }

  /** Keep `entry` in L1 (when there is one), frozen, its life capped by `l1MaxTtl`. */
  hold(full: string, entry: Entry, size: number | undefined): void {
    const { l1, l2, l1MaxTtl, freeze, tags, clock } = this.core;
    if (!l1) return;
    if (freeze) deepFreeze(entry.value);
    const expiresAt = l2 ? Math.min(entry.staleUntil, clock.now() + l1MaxTtl) : entry.staleUntil;
    // An entry whose production started before an invalidation that has happened since is
    // born invalid: stamping it with the current mark would make hits skip the tag check.
    const tagMark = tags.verdict(entry) === "valid" ? tags.mark : -1;
    const held: HeldEntry = { entry, tagMark };
    const bytes = size ?? estimateSize(entry.value) + 64;
    if (!l1.setHeld(full, held, bytes, expiresAt)) {
      const events = this.core.events;
      if (events.wants("oversize")) {
        events.emit("oversize", { key: full, size: bytes, limit: l1.maxEntrySize, source: "l1" });
      }
    }
  }

  /** Remove `full` from both tiers; resolves whether the remote tier (or L1 alone) confirmed. */
  async remove(full: string): Promise<boolean> {
    const { l1, l2, events, bus } = this.core;
    l1?.deleteSync(full);
    bus?.start();
    const ok = l2 ? await l2.delete(full) : true;
    if (ok) bus?.key(full, false);
    if (events.wants("delete")) events.emit("delete", { key: full });
    return ok;
  }

  /** Read and decode an entry from L2; concurrent reads of one key share one store call. */
  readL2<T>(full: string): Promise<Decoded<T> | undefined> {
    const { l2, reads } = this.core;
    if (!l2) return Promise.resolve(undefined);
    let pending = reads.get(full);
    if (!pending) {
      pending = this.#fetchL2(full, l2);
      reads.set(full, pending);
    }
    return pending as Promise<Decoded<T> | undefined>;
  }

  /** One read of `full` from L2, shared by the reads of it meanwhile (see {@link readL2}). */
  #fetchL2(full: string, l2: GuardedStore): Promise<Decoded | undefined> {
    // The guard never rejects (a failure is a miss), so the read is over when its answer
    // comes: later reads of the key make a call of their own, after this answer's decode.
    return l2.get(full).then((bytes) => {
      this.core.reads.delete(full);
      return bytes === undefined ? undefined : this.#decode(full, bytes);
    });
  }

  /** Synchronous unless the entry's tag states must be read first (not once per read). */
  #decode(full: string, read: Uint8Array): Decoded | undefined | Promise<Decoded | undefined> {
    const { events, tags, l1 } = this.core;
    // Values may keep views into the bytes read (HTTP bodies do: no copy on a hit). A value
    // that L1 will keep must not keep a much larger buffer alive with them (a socket read of
    // which the reply is a part): it gets bytes of its own. Without L1, nothing outlives the
    // request, and nothing is copied.
    const bytes =
      l1 !== undefined && read.buffer.byteLength > read.byteLength * 2 ? Buffer.from(read) : read;
    let entry: Entry;
    try {
      entry = decodeEntry(full, bytes, this.serializer);
    } catch (error) {
      // A corrupt or foreign value is a miss; the next write overwrites it. Entries of the
      // previous format (or another serializer's) are expected after an upgrade: reported once.
      if (error instanceof OutdatedEntryError) {
        if (this.core.outdatedReported) return undefined;
        this.core.outdatedReported = true;
      }
      if (events.wants("error")) events.emit("error", { key: full, operation: "decode", error });
      return undefined;
    }
    const decoded: Decoded = { entry, size: bytes.byteLength };
    return tags.isSynced(entry.tags) ? decoded : tags.sync(entry.tags).then(() => decoded);
  }

  // ---- batches (getMany / setMany / deleteMany) and remaining life -------------------------

  /**
   * The fresh entries under `fulls`, aligned: L1 first, then one L2 batch (`getMany`, one round
   * trip) for the keys L1 did not have, backfilling L1. A failing L2 makes them misses.
   */
  async lookupMany<T>(fulls: readonly string[]): Promise<Array<Entry<T> | undefined>> {
    const { l2, events, clock } = this.core;
    this.core.bus?.start();
    const out = new Array<Entry<T> | undefined>(fulls.length).fill(undefined);
    const missing: number[] = [];
    const now = clock.now();
    for (let i = 0; i < fulls.length; i++) {
      const held = this.freshHeld<T>(fulls[i]!, now);
      if (held !== undefined) {
        this.hit(fulls[i]!, "l1");
        out[i] = held.entry;
      } else missing.push(i);
    }
    if (missing.length > 0 && l2) {
      const keys = [...new Set(missing.map((i) => fulls[i]!))];
      const replies = (await l2.getMany(keys)) ?? [];
      const found = new Map<string, Decoded<T>>();
      await Promise.all(
        keys.map(async (full, j) => {
          const bytes = replies[j];
          const decoded = bytes === undefined ? undefined : await this.#decode(full, bytes);
          if (decoded && this.freshness(decoded.entry, this.core.clock.now()) === "fresh") {
            found.set(full, decoded as Decoded<T>);
            this.hold(full, decoded.entry, decoded.size);
          }
        }),
      );
      for (const i of missing) {
        const decoded = found.get(fulls[i]!);
        if (decoded) {
          this.hit(fulls[i]!, "l2");
          out[i] = decoded.entry;
        }
      }
    }
    if (events.wants("miss")) {
      for (let i = 0; i < fulls.length; i++)
        if (out[i] === undefined) events.emit("miss", { key: fulls[i]! });
    }
    return out;
  }

  /**
   * Write entries to both tiers: L1 at once, L2 in one batch (`setMany`, one round trip); the
   * keys are announced on the bus (one message for the batch). Never throws.
   */
  async writeMany(items: ReadonlyArray<{ full: string; entry: Entry }>): Promise<void> {
    const { l1, l2, clock, events, bus } = this.core;
    bus?.start();
    const now = clock.now();
    const batch: StoreEntry[] = [];
    const sizes: Array<number | undefined> = [];
    for (const { full, entry } of items) {
      const lifetime = entry.staleUntil - now;
      let bytes: Buffer | undefined;
      if (lifetime > 0 && l2) {
        try {
          bytes = encodeEntry(entry, this.serializer);
          batch.push({ key: full, value: bytes, ttlMs: Math.ceil(lifetime) });
        } catch (cause) {
          const error = new SerializeError(
            `the ${this.serializer.name} serializer failed for key "${full}"; the value is not shared`,
            { cause },
          );
          if (events.wants("error"))
            events.emit("error", { key: full, operation: "serialize", error });
        }
      }
      if (lifetime > 0 && l1) this.hold(full, entry, bytes?.length);
      sizes.push(lifetime > 0 ? (bytes?.length ?? -1) : undefined);
    }
    if (l2 && batch.length > 0) {
      const stored = await l2.setMany(batch);
      if (stored && bus) for (const { key } of batch) bus.key(key, true);
    }
    if (events.wants("set")) {
      items.forEach(({ full, entry }, i) => {
        const size = sizes[i];
        if (size === undefined) return;
        events.emit("set", {
          key: full,
          ttl: entry.freshUntil - entry.createdAt,
          size: size < 0 ? undefined : size,
        });
      });
    }
  }

  /**
   * Remove keys from both tiers: L2 in one batch (`deleteMany`), announced on the bus in one
   * message. Resolves whether the remote tier (or L1 alone) confirmed.
   */
  async removeMany(fulls: readonly string[]): Promise<boolean> {
    const { l1, l2, events, bus } = this.core;
    for (const full of fulls) l1?.deleteSync(full);
    bus?.start();
    const ok = l2 ? await l2.deleteMany(fulls) : true;
    if (ok && bus) for (const full of fulls) bus.key(full, false);
    if (events.wants("delete")) for (const full of fulls) events.emit("delete", { key: full });
    return ok;
  }

  /**
   * The remaining life of the entry under `full`, in ms: until it stops being fresh, or with
   * `stale`, until it can no longer be served stale (its swr/grace window). `undefined` when
   * there is no entry that is fresh (or, with `stale`, servable at all).
   */
  async remaining(full: string, stale: boolean): Promise<number | undefined> {
    const { l1, clock } = this.core;
    let entry = l1?.getHeld(full, clock.now())?.entry;
    if (entry === undefined || this.freshness(entry, clock.now()) !== "fresh") {
      const remote = await this.readL2(full);
      if (remote !== undefined) entry = remote.entry;
    }
    if (entry === undefined) return undefined;
    const now = clock.now();
    const state = this.freshness(entry, now);
    if (state === "expired") return undefined;
    if (!stale) return state === "fresh" ? entry.freshUntil - now : undefined;
    return entry.staleUntil - now;
  }

  /** `fresh`, `stale` (usable within stale windows) or `expired`, tags included. */
  freshness(entry: Entry, now: number): "fresh" | "stale" | "expired" {
    if (now >= entry.staleUntil) return "expired";
    const verdict = this.core.tags.verdict(entry);
    if (verdict === "expired") return "expired";
    if (verdict === "stale") return "stale";
    return now < entry.freshUntil ? "fresh" : "stale";
  }

  /** When the entry stopped being fresh: its TTL, or an earlier soft invalidation. */
  staleSince(entry: Entry): number {
    const soft = this.core.tags.softInvalidatedAt(entry);
    return soft === undefined ? entry.freshUntil : Math.min(entry.freshUntil, soft);
  }

  /** Invalidate `tags` (validated or reserved), announce it on the bus, emit `invalidate`. */
  async invalidate(tags: readonly string[], soft: boolean, kind: InvalidationKind): Promise<void> {
    const { bus } = this.core;
    bus?.start();
    const states = await this.core.tags.invalidate(tags, soft);
    if (bus) for (const [tag, hard, softAt] of states) bus.tag(tag, hard, softAt);
    const events = this.core.events;
    if (events.wants("invalidate")) events.emit("invalidate", { tags, soft, kind });
  }
}
