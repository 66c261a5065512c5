import { randomBytes } from "node:crypto";
import { LRUCache } from "lru-cache";
import { Bus } from "./bus.js";
import type { Clock } from "./clock.js";
import { systemClock } from "./clock.js";
import type { Duration } from "./duration.js";
import { optionalMs, toMs } from "./duration.js";
import type { Entry } from "./entry.js";
import { decodeEntry, deepFreeze, encodeEntry } from "./entry.js";
import {
  FactoryHardTimeoutError,
  InvalidOptionError,
  SerializeError,
  StoreError,
} from "./errors.js";
import type {
  CacheEventListener,
  CacheEventName,
  InvalidationKind,
  StaleReason,
  Tier,
} from "./events.js";
import { CacheEvents } from "./events.js";
import type { BreakerState, GuardOptions } from "./guard.js";
import { GuardedStore } from "./guard.js";
import { argsKey } from "./keys.js";
import type { Logger } from "./logging.js";
import { attachLogger, isLogger } from "./logging.js";
import type { EntryOptions, LeasePolicy, Policy } from "./options.js";
import {
  DEFAULT_POLICY,
  ENTRY_OPTION_NAMES,
  NAMESPACE_TAG_PREFIX,
  positiveInt,
  resolvePolicy,
  validateTags,
} from "./options.js";
import type { Serializer } from "./serializer.js";
import { jsonSerializer } from "./serializer.js";
import { estimateSize } from "./size.js";
import type { Store } from "./store.js";
import type { HeldEntry } from "./stores/memory.js";
import { MemoryStore } from "./stores/memory.js";
import { causeText } from "./stores/util.js";
import { TagRegistry } from "./tags.js";
import { rejectUnknownOptions } from "./validate.js";

/** Options of {@link createCache}. Every duration is milliseconds or a string like `"60s"`. */
export interface CacheOptions extends EntryOptions {
  /**
   * Where entries live. A `memoryStore()` makes an in-process cache; a remote store (Redis,
   * …) makes a shared one, guarded by timeouts and a circuit breaker.
   * @default memoryStore()
   */
  store?: Store | undefined;
  /**
   * An in-process tier in front of a remote `store`: `true` for a default `memoryStore()`, or
   * your own. Ignored when `store` is itself a memory store.
   * @default false
   */
  l1?: boolean | MemoryStore | undefined;
  /**
   * Longest time an entry stays in the in-process tier when there is a remote tier behind it,
   * so that a lost invalidation cannot keep a stale copy alive for long.
   * @default "1m"
   */
  l1MaxTtl?: Duration | undefined;
  /** Encodes values for remote stores. @default JSON */
  serializer?: Serializer | undefined;
  /**
   * Freeze values kept decoded in memory (deeply), so that a caller mutating a returned object
   * cannot change what later hits return. Mutating a frozen value throws a TypeError in strict
   * code. Turn off only if you never mutate results.
   * @default true
   */
  freeze?: boolean | undefined;
  /** Longest wait for one remote-store call before it counts as failed. @default 50 */
  storeTimeout?: Duration | undefined;
  /** Consecutive remote-store failures that open the circuit breaker. @default 5 */
  breakerThreshold?: number | undefined;
  /** How long the breaker stays open before one probe call. @default "1s" */
  breakerCooldown?: Duration | undefined;
  /**
   * How long a tag state read from the remote store is trusted before it is read again, when
   * no bus pushes invalidations: the longest an invalidation made by another instance takes
   * to be seen by reads that go to the remote tier. In-process (L1) copies are judged against
   * the states this instance knows; without a bus they can outlive another instance's
   * invalidation by up to `l1MaxTtl`. With the bus up, states are pushed and not re-read.
   * @default "1s"
   */
  tagSyncInterval?: Duration | undefined;
  /** How long tag states are kept in the remote store; must outlive every entry. @default "30d" */
  tagTtl?: Duration | undefined;
  /** Time source, for tests. @default Date.now */
  clock?: Clock | undefined;
  /**
   * Keep other instances coherent through the store's pub/sub (Redis): writes, deletes and
   * invalidations are announced (keys and tag states, never values), and every instance
   * drops its in-process copies accordingly; a lost message or a reconnection drops the whole
   * in-process tier. On by default when the store supports it; `true` insists (and fails at
   * construction when the store cannot).
   * @default true when the store has publish/subscribe
   */
  bus?: boolean | undefined;
  /**
   * Where the cache reports changes of state an operator must know about: the remote store
   * going down and coming back, the circuit breaker opening, corrupt entries, the bus losing
   * messages. pino-compatible (`fastify.log`, `pino()`); each change is logged once, never
   * once per request. The Fastify plugin uses `fastify.log` when this is not set. The cache
   * never prints otherwise.
   * @default none
   */
  logger?: Logger | undefined;
}

/** The state of a cache's tiers and bus, from {@link Cache.health}. */
export interface CacheHealth {
  /**
   * `ok`, or `degraded` when a tier or the bus is not working. A degraded cache still answers
   * every request (misses go to the origin): it is a warning, not an outage.
   */
  readonly status: "ok" | "degraded";
  /** What is degraded and what it means, one sentence each; empty when `ok`. */
  readonly problems: readonly string[];
  /** The in-process tier, when there is one. */
  readonly l1?: {
    readonly store: string;
    readonly entries: number;
    /** Bytes held, and the bound. */
    readonly bytes: number;
    readonly maxBytes: number;
    /** Entries evicted to stay within the bound since start. */
    readonly evictions: number;
  };
  /** The remote tier, when there is one. */
  readonly l2?: {
    readonly store: string;
    /** Whether calls to it succeed now (no failure since a cooldown, breaker closed). */
    readonly reachable: boolean;
    /** Its connection state when the store reports one (Redis: `ready`, `reconnecting`, …). */
    readonly connection?: string | undefined;
    readonly breaker: BreakerState;
    /** When it became unreachable (ISO 8601), while it is. */
    readonly downSince?: string | undefined;
    /** The last store error seen (kept after recovery). */
    readonly lastError?: string | undefined;
  };
  /** The cross-instance bus, when there is one: `up` receives other instances' changes. */
  readonly bus?: { readonly state: "idle" | "connecting" | "up" | "down" } | undefined;
}

/** What a factory receives. */
export interface FactoryContext<T = unknown> {
  /** The entry's key, namespace included. */
  readonly key: string;
  /** Aborted when `hardTimeout` passes. Pass it to `fetch` and friends. */
  readonly signal: AbortSignal;
  /**
   * The stale entry this call refreshes when one is usable within `staleIfError` (it is what
   * callers get if this call fails or times out).
   */
  readonly stale: Entry<T> | undefined;
  /**
   * True when every caller has already been answered with a stale value
   * (stale-while-revalidate) and this call only refreshes the entry.
   */
  readonly background: boolean;
  /**
   * Override the entry options (ttl, tags, stale windows) for the value being produced. A
   * `ttl` of 0 stores the value already stale: usable only within its stale windows (the HTTP
   * cache keeps a response that must be revalidated this way).
   */
  setOptions(
    options: Pick<EntryOptions, "ttl" | "staleWhileRevalidate" | "staleIfError" | "tags">,
  ): void;
}

export type Factory<T> = (context: FactoryContext<T>) => T | Promise<T>;

/** How a lookup was answered, for callers that need more than the value (the HTTP cache). */
export interface Resolution<T> {
  readonly entry: Entry<T>;
  readonly outcome: "hit" | "miss" | "stale";
  readonly tier: Tier | undefined;
  /** Why a stale entry was returned, when `outcome` is `"stale"`. */
  readonly reason?: StaleReason | undefined;
  /** For `"stale"` with reason `"error"`: what the factory failed with. */
  readonly error?: unknown | undefined;
}

/** Options of {@link Cache.wrap}. */
export interface WrapOptions<A extends unknown[]> extends EntryOptions {
  /** Key prefix for the wrapped function. @default the function's `name` */
  name?: string | undefined;
  /**
   * Build the key part for a call yourself. The result is used as-is when it is a string and
   * serialized like arguments otherwise.
   * @default a canonical serialization of the arguments
   */
  key?: ((...args: A) => unknown) | undefined;
}

/** Options of {@link Cache.cached} (and of the standalone `@cached`). */
export interface CachedMethodOptions<This = unknown, A extends unknown[] = unknown[]>
  extends WrapOptions<A> {
  /**
   * What of the instance goes into the key, so that two instances whose results can differ
   * never share an entry:
   * - `"instance"` (default): the instance's own enumerable data fields — strings, numbers,
   *   booleans, and plain objects and arrays of them (`this.tenant`, `this.options`). Objects
   *   of a class (database clients, pools, loggers) and functions are left out, so a service
   *   that holds only clients shares its entries across instances and processes. Fields that
   *   change on every call (a counter) make every call a miss; `#private` fields are invisible:
   *   in either case say what matters with a function.
   * - `"shared"`: nothing — every instance shares the entries (results depend on the arguments
   *   alone).
   * - a function of the instance: its result goes into the key (`(repo) => repo.tenant`).
   * @default "instance"
   */
  scope?: ("instance" | "shared" | ((self: This) => unknown)) | undefined;
}

/** What `cached(...)` returns: a TC39 method decorator that also works as a legacy one. */
export interface CachedMethodDecorator<This, A extends unknown[], R> {
  (
    method: (this: This, ...args: A) => Promise<R>,
    context: ClassMethodDecoratorContext<This, (this: This, ...args: A) => Promise<R>>,
  ): (this: This, ...args: A) => Promise<R>;
  (
    target: object,
    propertyKey: string | symbol,
    descriptor: TypedPropertyDescriptor<(this: This, ...args: A) => Promise<R>>,
  ): TypedPropertyDescriptor<(this: This, ...args: A) => Promise<R>>;
}

/** The scope of a method whose results do not depend on its instance. */
const SHARED = Symbol("shared");

/** The default scope: the instance's data, or {@link SHARED} when it holds none. */
function instanceScope(self: unknown): unknown {
  const state = instanceState(self);
  return state !== null && typeof state === "object" && Object.keys(state).length === 0
    ? SHARED
    : state;
}

/**
 * An instance's own data, as a key part: primitives, and plain objects and arrays of them
 * (recursively, to a small depth); objects of a class stand for a dependency (a client), not
 * for state that selects results, and are left out, as are functions. `undefined` for a
 * receiver that is not an object (a static method's class gives its static data).
 */
function instanceState(self: unknown, depth = 0): unknown {
  if (self === null || (typeof self !== "object" && typeof self !== "function")) return self;
  if (depth > 4) return "…";
  if (Array.isArray(self)) return self.map((v) => instanceState(v, depth + 1));
  if (self instanceof Date) return self.toISOString();
  const proto = Object.getPrototypeOf(self);
  const plain = proto === Object.prototype || proto === null;
  if (depth > 0 && !plain) return undefined;
  const out: Record<string, unknown> = {};
  for (const name of Object.keys(self)) {
    const v = (self as Record<string, unknown>)[name];
    if (v === undefined || typeof v === "function" || typeof v === "symbol") continue;
    if (v !== null && typeof v === "object") {
      const state = instanceState(v, depth + 1);
      if (state !== undefined) out[name] = state;
    } else {
      out[name] = typeof v === "bigint" ? `${v}n` : v;
    }
  }
  return out;
}

/** An entry read from L2, with its encoded size (what it costs to hold in L1). */
interface Decoded<T = unknown> {
  readonly entry: Entry<T>;
  readonly size: number;
}

interface Flight {
  readonly promise: Promise<Entry>;
}

interface Core {
  readonly clock: Clock;
  readonly events: CacheEvents;
  readonly l1: MemoryStore | undefined;
  readonly l2: GuardedStore | undefined;
  readonly l1MaxTtl: number;
  readonly serializer: Serializer;
  readonly freeze: boolean;
  readonly tags: TagRegistry;
  readonly defaults: Policy;
  readonly flights: Map<string, Flight>;
  readonly reads: Map<string, Promise<Decoded | undefined>>;
  /** Keys whose last refresh failed, until when they back off. */
  readonly backoff: LRUCache<string, number>;
  /** Lease waiters by key, woken when the bus says a value landed. */
  readonly landed: Map<string, Set<() => void>>;
  /** Cross-instance coherence of L1 and tag states, when the store has pub/sub. */
  readonly bus: Bus | undefined;
  /** The logger in use (see `CacheOptions.logger`), and how to detach it. */
  readonly log: { logger: Logger | undefined; detach: (() => void) | undefined };
  /** Listeners the cache put on its stores, removed by `close()`. */
  readonly disposers: Array<() => void>;
  /** Set by the first `close()`: later calls wait for the same one. */
  closing: Promise<void> | undefined;
}

const TIMED_OUT = Symbol("timed-out");
const RESERVED_KEY_PREFIX = "__cachet:";
/**
 * Namespaced keys are `@<path>:<key>` and root keys may not start with `@`, so that no root key
 * can land in a namespace (a root `users:1` would otherwise be a `users` namespace's `1`, and
 * survive that namespace's `clear()`).
 */
const NAMESPACE_KEY_MARK = "@";
const NAMESPACE_NAME = /^[A-Za-z0-9_.-]+$/;

/** Every option `createCache` takes (checked at construction, so that a typo fails loudly). */
const CACHE_OPTION_NAMES = [
  ...ENTRY_OPTION_NAMES,
  "store",
  "l1",
  "l1MaxTtl",
  "serializer",
  "freeze",
  "storeTimeout",
  "breakerThreshold",
  "breakerCooldown",
  "tagSyncInterval",
  "tagTtl",
  "clock",
  "bus",
  "logger",
];

/**
 * The cache. Create one with {@link createCache}; scope it with {@link Cache.namespace}.
 *
 * Reads go L1 (in-process) → L2 (remote) → factory; writes and deletes reach both tiers. All
 * remote failures degrade to misses: the cache never fails a request because a store did.
 */
export class Cache {
  readonly #core: Core;
  readonly #prefix: string;
  readonly #nsTags: readonly string[];
  readonly #nsPath: string;
  readonly #serializer: Serializer;

  /** @internal use {@link createCache}. */
  constructor(core: Core, nsPath: string, nsTags: readonly string[], serializer: Serializer) {
    this.#core = core;
    this.#nsPath = nsPath;
    this.#prefix = nsPath === "" ? "" : `${NAMESPACE_KEY_MARK}${nsPath}:`;
    this.#nsTags = nsTags;
    this.#serializer = serializer;
  }

  /** The namespace path (`""` for the root cache, `"users"`, `"users/admins"`, …). */
  get namespacePath(): string {
    return this.#nsPath;
  }

  /** Typed events; see `CacheEventMap`. Returns a function that removes the listener. */
  on<E extends CacheEventName>(name: E, listener: CacheEventListener<E>): () => void {
    return this.#core.events.on(name, listener);
  }

  off<E extends CacheEventName>(name: E, listener: CacheEventListener<E>): void {
    this.#core.events.off(name, listener);
  }

  /** The cache's event emitter (the HTTP cache emits through it). @internal */
  get events(): CacheEvents {
    return this.#core.events;
  }

  /**
   * Log through `logger` unless the cache already has one (the Fastify plugin passes
   * `fastify.log` this way). Returns whether it was taken. @internal
   */
  useLogger(logger: Logger): boolean {
    const log = this.#core.log;
    if (log.logger !== undefined) return false;
    if (!isLogger(logger)) {
      throw new InvalidOptionError("logger", "expected an object with error, warn, info and debug");
    }
    log.logger = logger;
    log.detach = attachLogger(this.#core.events, logger, this.#core.clock);
    return true;
  }

  /**
   * The state of the tiers and the bus, for a health endpoint. A `degraded` cache still
   * answers (from the tiers that work, or the origin): report it, do not fail on it.
   *
   * @example
   * app.get("/health", () => ({ status: "ok", cache: cache.health() }));
   */
  health(): CacheHealth {
    const { l1, l2, bus } = this.#core;
    const problems: string[] = [];
    let l2Health: CacheHealth["l2"];
    if (l2) {
      const connection = (l2.store as { status?: unknown }).status;
      const since = l2.degradedSince;
      const connected =
        typeof connection !== "string" ||
        connection === "ready" ||
        connection === "idle" ||
        connection === "connecting";
      const reachable = since === undefined && l2.state === "closed" && connected;
      if (!reachable) {
        const why =
          l2.state === "open"
            ? "circuit breaker open"
            : l2.state === "half-open"
              ? "circuit breaker probing"
              : !connected
                ? `connection ${String(connection)}`
                : "calls failing";
        problems.push(
          `${l2.name} store unreachable (${why}${
            since === undefined ? "" : ` since ${new Date(since).toISOString()}`
          }${l2.lastError ? `: ${l2.lastError.message.replace(/^cachet: /, "")}` : ""}); ` +
            "reads miss and writes are skipped, requests go to the origin",
        );
      }
      l2Health = {
        store: l2.name,
        reachable,
        ...(typeof connection === "string" ? { connection } : {}),
        breaker: l2.state,
        ...(since === undefined ? {} : { downSince: new Date(since).toISOString() }),
        ...(l2.lastError ? { lastError: l2.lastError.message } : {}),
      };
    }
    if (bus?.state === "down") {
      problems.push(
        "bus down: changes made by other instances are not received; in-process copies live at most l1MaxTtl",
      );
    }
    return {
      status: problems.length === 0 ? "ok" : "degraded",
      problems,
      ...(l1
        ? {
            l1: {
              store: l1.name,
              entries: l1.entries,
              bytes: l1.size,
              maxBytes: l1.maxSize,
              evictions: l1.evictions,
            },
          }
        : {}),
      ...(l2Health ? { l2: l2Health } : {}),
      ...(bus ? { bus: { state: bus.state } } : {}),
    };
  }

  /**
   * How this cache judges `entry` now, tag and namespace invalidations included (their states
   * are read from the store first). For tools that inspect entries (the CLI). @internal
   */
  async judge(entry: Entry): Promise<{
    state: "fresh" | "stale" | "expired";
    invalidated: "expired" | "stale" | undefined;
    staleSince: number;
  }> {
    const { tags, clock } = this.#core;
    await tags.sync(entry.tags);
    const verdict = tags.verdict(entry);
    return {
      state: this.#freshness(entry, clock.now()),
      invalidated: verdict === "valid" ? undefined : verdict,
      staleSince: this.#staleSince(entry),
    };
  }

  /** The breaker state of the remote tier, or `undefined` for an in-process cache. */
  get storeState(): "closed" | "open" | "half-open" | undefined {
    return this.#core.l2?.state;
  }

  /**
   * The value under `key`, or the factory's result, stored for next time. Concurrent calls
   * for one key share one factory call; a rejection is handed to those concurrent callers and
   * never stored. `null` and `undefined` results are stored like any other value.
   *
   * @example
   * const user = await cache.getOrSet(`user:${id}`, () => db.users.find(id), { ttl: "5m" });
   */
  getOrSet<T>(key: string, factory: Factory<T>, options?: EntryOptions): Promise<T> {
    if (typeof factory !== "function") {
      return Promise.reject(
        new InvalidOptionError(
          "getOrSet(factory)",
          `expected a function producing the value, got ${factory === null ? "null" : typeof factory}`,
        ),
      );
    }
    const full = this.#key(key);
    const now = this.#core.clock.now();
    const held = this.#core.l1?.getHeld<T>(full, now);
    if (held !== undefined && this.#isFreshHeld(held, now)) {
      this.#hit(full, "l1");
      const beta = options?.earlyRefresh ?? this.#core.defaults.early;
      if (beta > 0) this.#maybeRefreshEarly(full, held.entry, factory, beta, options);
      return Promise.resolve(held.entry.value);
    }
    const policy = resolvePolicy(options, this.#core.defaults);
    return this.#resolve(full, factory, policy, held).then(valueOfResolution);
  }

  /**
   * Like {@link getOrSet}, resolving to the entry and how it was found. Takes a resolved
   * policy so that callers on a hot path (the HTTP cache) resolve options once.
   * @internal
   */
  resolve<T>(
    key: string,
    factory: Factory<T>,
    policy: Policy,
    options?: { force?: boolean; background?: boolean },
  ): Promise<Resolution<T>> {
    const full = this.#key(key);
    if (options?.background) {
      // Refresh ahead (early refresh of a fresh entry): nobody waits for this value.
      return this.#refresh(full, factory, policy, undefined, true).then((entry) => ({
        entry: entry as Entry<T>,
        outcome: "miss",
        tier: undefined,
      }));
    }
    if (options?.force) {
      // The caller wants a fresh value (a client's `no-cache`): skip the lookups, but still
      // share a flight already running for this key.
      return this.#refresh(full, factory, policy, undefined, false).then((entry) => ({
        entry: entry as Entry<T>,
        outcome: "miss",
        tier: undefined,
      }));
    }
    const held = this.#core.l1?.getHeld<T>(full);
    if (held !== undefined && this.#isFreshHeld(held)) {
      this.#hit(full, "l1");
      return Promise.resolve({ entry: held.entry, outcome: "hit", tier: "l1" });
    }
    return this.#resolve(full, factory, policy, held);
  }

  /**
   * XFetch (Vattani et al., "Optimal Probabilistic Cache Stampede Prevention", 2015): whether
   * a fresh entry should be refreshed ahead of its expiry now. @internal
   */
  shouldRefreshEarly(entry: Entry, beta: number): boolean {
    return refreshEarly(entry, this.#core.clock.now(), beta);
  }

  /**
   * The fresh entry under `key` in the in-process tier, synchronously, or `undefined`.
   * Emits `hit` when found. The HTTP cache's fast path.
   * @internal
   */
  peek<T>(key: string): Entry<T> | undefined {
    const full = this.#key(key);
    const now = this.#core.clock.now();
    const held = this.#core.l1?.getHeld<T>(full, now);
    if (held !== undefined && this.#isFreshHeld(held, now)) {
      this.#hit(full, "l1");
      return held.entry;
    }
    return undefined;
  }

  /** The fresh entry under `key` from either tier (backfilling L1), without a factory. @internal */
  lookupEntry<T>(key: string, options?: { quiet?: boolean }): Promise<Entry<T> | undefined> {
    return this.#lookup<T>(this.#key(key), options?.quiet === true);
  }

  /** Whether there is a remote tier (worth a read before setting up a flight). @internal */
  get hasRemote(): boolean {
    return this.#core.l2 !== undefined;
  }

  /** The cache's time source. @internal */
  get clock(): Clock {
    return this.#core.clock;
  }

  /** Resolve entry options against this cache's defaults (validating them). @internal */
  policy(options?: EntryOptions, where?: string): Policy {
    return resolvePolicy(options, this.#core.defaults, where);
  }

  /** The fresh value under `key`, or `undefined` (use {@link has} to tell a stored `undefined`). */
  async get<T = unknown>(key: string): Promise<T | undefined> {
    const entry = await this.#lookup<T>(this.#key(key));
    return entry?.value;
  }

  /** Whether a fresh value is stored under `key`. */
  async has(key: string): Promise<boolean> {
    return (await this.#lookup(this.#key(key))) !== undefined;
  }

  /**
   * Replace the value of entry `from` under `key`, keeping its timestamps and tags, only if it
   * is still the entry stored there (a newer write or a delete wins). Used to upgrade a stored
   * HTTP response with its compressed bodies once they are ready. @internal
   */
  async replaceValue<T>(key: string, from: Entry<T>, value: T): Promise<boolean> {
    const full = this.#key(key);
    const { l1, l2 } = this.#core;
    if (l1) {
      if (l1.getHeld(full)?.entry !== from) return false;
    } else if (l2) {
      const current = await this.#readL2(full);
      if (current?.entry.createdAt !== from.createdAt) return false;
    }
    await this.#write(full, { ...from, value });
    return true;
  }

  /** Store `value` under `key` with a resolved policy (tags unvalidated). @internal */
  async store<T>(key: string, value: T, policy: Policy): Promise<void> {
    const full = this.#key(key);
    await this.#write(full, this.#makeEntry(value, this.#core.tags.stamp(), policy));
  }

  /** Store `value` under `key` in every tier. */
  async set<T>(key: string, value: T, options?: EntryOptions): Promise<void> {
    const full = this.#key(key);
    const policy = resolvePolicy(options, this.#core.defaults);
    await this.#write(full, this.#makeEntry(value, this.#core.tags.stamp(), policy));
  }

  /** Remove `key` from every tier. Resolves whether the remote tier (or L1 alone) confirmed. */
  async delete(key: string): Promise<boolean> {
    const full = this.#key(key);
    const { l1, l2, events } = this.#core;
    l1?.deleteSync(full);
    this.#core.bus?.start();
    const ok = l2 ? await l2.delete(full) : true;
    if (ok) this.#core.bus?.key(full, false);
    if (events.wants("delete")) events.emit("delete", { key: full });
    return ok;
  }

  /**
   * Expire every entry carrying any of `tags`, in one write per tag whatever the number of
   * entries. With `soft`, the entries become stale instead, so that stale-while-revalidate
   * and stale-if-error still apply to them.
   */
  async invalidateTags(tags: readonly string[], options: { soft?: boolean } = {}): Promise<void> {
    const valid = validateTags(tags, "invalidateTags(tags)");
    await this.#invalidate(valid, options.soft === true, "tags");
  }

  /**
   * Like {@link invalidateTags} for cachet's own `@`-prefixed tags (HTTP paths), unvalidated.
   * @internal
   */
  async invalidateReservedTags(
    tags: readonly string[],
    soft = false,
    kind: InvalidationKind = "paths",
  ): Promise<void> {
    await this.#invalidate(tags, soft, kind);
  }

  /**
   * Expire every entry of this namespace (and of namespaces below it) in O(1): one write,
   * no key scan. On the root cache this clears everything.
   */
  async clear(): Promise<void> {
    const own = this.#nsTags[this.#nsTags.length - 1]!;
    if (this.#nsPath === "") this.#core.l1?.clear();
    await this.#invalidate([own], false, "namespace");
  }

  /**
   * A cache scoped to `name`: its keys live under `name:` and `clear()` expires only them.
   * Namespaces nest (`cache.namespace("users").namespace("admins")`). A namespace may use its
   * own serializer for the remote tier (the HTTP cache stores responses this way).
   */
  namespace(name: string, options: { serializer?: Serializer } = {}): Cache {
    if (typeof name !== "string" || !NAMESPACE_NAME.test(name)) {
      throw new InvalidOptionError(
        "namespace(name)",
        `expected letters, digits, "_", "." or "-", got ${JSON.stringify(name)}`,
      );
    }
    const path = this.#nsPath === "" ? name : `${this.#nsPath}/${name}`;
    return new Cache(
      this.#core,
      path,
      [...this.#nsTags, `${NAMESPACE_TAG_PREFIX}${path}`],
      options.serializer ?? this.#serializer,
    );
  }

  /**
   * Wrap a function so that its results are cached under `name:args`, `args` being a
   * canonical serialization of the call's arguments (or your `key(...)`).
   *
   * @example
   * const getPosts = cache.wrap(fetchPosts, { ttl: "60s" });
   * await getPosts({ userId: 1 }); // key "fetchPosts:[{"userId":1}]"
   */
  wrap<A extends unknown[], R>(
    fn: (...args: A) => R | Promise<R>,
    options: WrapOptions<A> = {},
  ): (...args: A) => Promise<Awaited<R>> {
    if (typeof fn !== "function") {
      throw new InvalidOptionError("wrap(fn)", `expected a function, got ${typeof fn}`);
    }
    const name = options.name ?? fn.name;
    if (typeof name !== "string" || name === "") {
      throw new InvalidOptionError(
        "wrap.name",
        "the function has no name; pass { name } so that its keys are stable and distinct",
      );
    }
    const policy = this.policy(options, "wrap");
    const keyOf = options.key;
    const cache = this;
    return function wrapped(this: unknown, ...args: A): Promise<Awaited<R>> {
      let part: string;
      if (keyOf) {
        const custom = keyOf(...args);
        part = typeof custom === "string" ? custom : argsKey([custom]);
      } else {
        part = argsKey(args);
      }
      return cache.#getOrSetWith(
        `${name}:${part}`,
        () => fn.apply(this, args) as Awaited<R> | Promise<Awaited<R>>,
        policy,
      );
    };
  }

  /**
   * A method decorator backed by this cache: `@cache.cached({ ttl: "60s" })`, as a TC39
   * (standard) decorator or a legacy one (`experimentalDecorators`, NestJS's default). The key
   * is `ClassName.method:args`, plus what `scope` takes from the instance: by default its own
   * data fields (so `new Repo("tenant-a")` and `new Repo("tenant-b")` never share an entry,
   * while a service holding only clients shares its entries across instances and processes).
   * See {@link CachedMethodOptions.scope}.
   */
  cached<This, A extends unknown[], R>(
    options: CachedMethodOptions<This, A> = {},
  ): CachedMethodDecorator<This, A, R> {
    const { scope = "instance", ...wrapOptions } = options;
    if (scope !== "instance" && scope !== "shared" && typeof scope !== "function") {
      throw new InvalidOptionError(
        "cached.scope",
        `expected "instance", "shared" or a function of the instance, got ${JSON.stringify(scope)}`,
      );
    }
    this.policy(wrapOptions, "cached");
    const cache = this;
    const userKey = wrapOptions.key;
    const install = (
      method: (this: This, ...args: A) => Promise<R>,
      site: { readonly static: boolean; readonly name: string | symbol },
      ownerOf: (self: unknown) => string | undefined,
    ) => {
      const methodName = String(site.name);
      let wrapped: ((scoped: unknown, ...args: A) => Promise<R>) | undefined;
      const cachedMethod = function cachedMethod(this: This, ...args: A): Promise<R> {
        if (!wrapped) {
          const name = wrapOptions.name ?? `${ownerOf(this) || "anonymous"}.${methodName}`;
          wrapped = cache.wrap(
            function call(this: This, _scoped: unknown, ...rest: A) {
              return method.apply(this, rest);
            },
            {
              ...wrapOptions,
              name,
              key: (scoped: unknown, ...rest: A) => {
                const part = userKey ? userKey(...rest) : undefined;
                const base = userKey
                  ? typeof part === "string"
                    ? part
                    : argsKey([part])
                  : argsKey(rest);
                return scoped === SHARED ? base : [scoped, base];
              },
            } as WrapOptions<[unknown, ...A]>,
          ) as (scoped: unknown, ...args: A) => Promise<R>;
        }
        const scoped =
          scope === "shared"
            ? SHARED
            : scope === "instance"
              ? instanceScope(this)
              : (scope as (self: This) => unknown)(this);
        return wrapped.call(this, scoped, ...args);
      };
      registerDecoratedMethod(cachedMethod, site);
      return cachedMethod;
    };
    function decorator(value: unknown, context: unknown, descriptor?: PropertyDescriptor): unknown {
      if (
        descriptor !== undefined &&
        (typeof context === "string" || typeof context === "symbol")
      ) {
        // Legacy (experimentalDecorators): (prototype or constructor, name, descriptor).
        if (typeof descriptor.value !== "function") {
          throw new InvalidOptionError("@cached", "applies to class methods only");
        }
        const isStatic = typeof value === "function";
        const site = { static: isStatic, name: context };
        const installed = install(descriptor.value, site, (self) => declaringClassName(self, site));
        return { ...descriptor, value: installed };
      }
      const ctx = context as ClassMethodDecoratorContext<
        This,
        (this: This, ...args: A) => Promise<R>
      >;
      if (typeof ctx !== "object" || ctx === null || ctx.kind !== "method") {
        throw new InvalidOptionError("@cached", "applies to class methods only");
      }
      return install(value as (this: This, ...args: A) => Promise<R>, ctx, (self) =>
        declaringClassName(self, ctx),
      );
    }
    return decorator as CachedMethodDecorator<This, A, R>;
  }

  /**
   * Resolves once the remote store answered a command, so that a service can fail fast at
   * start-up on a wrong URL or password, an unreachable host or a frozen server. Rejects with a
   * {@link StoreError} (`E_STORE`, or `E_STORE_TIMEOUT` after `timeout`) whose message says
   * what the store said. Resolves at once without a remote store. Never needed for the cache
   * to work: without it, the first requests are misses until the store answers.
   * @example await cache.ready(); await app.listen({ port: 8000 });
   */
  async ready(options: { timeout?: Duration | undefined } = {}): Promise<void> {
    const l2 = this.#core.l2;
    if (!l2) return;
    const timeout = toMs(options.timeout ?? "5s", "ready(options).timeout", false);
    const store = l2.store;
    let timer: NodeJS.Timeout | undefined;
    const expired = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(
            new StoreError(store.name, "ready", `no answer within ${timeout} ms`, {
              code: "E_STORE_TIMEOUT",
            }),
          ),
        timeout,
      );
      timer.unref?.();
    });
    try {
      await Promise.race([store.get(`${RESERVED_KEY_PREFIX}ready`), expired]);
    } catch (cause) {
      if (cause instanceof StoreError) throw cause;
      throw new StoreError(store.name, "ready", `not reachable: ${causeText(cause)}`, {
        cause,
      });
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * Release the stores' connections (the process can then exit). Safe to call more than once
   * (and from every namespace: they share one core). The cache must not be used afterwards.
   * The framework plugins call it when the app closes (see each guide).
   */
  close(): Promise<void> {
    this.#core.closing ??= this.#closeCore();
    return this.#core.closing;
  }

  async #closeCore(): Promise<void> {
    const { l1, l2, bus, disposers } = this.#core;
    for (const dispose of disposers.splice(0)) dispose();
    await bus?.close();
    l1?.clear();
    await l2?.store.disconnect?.();
  }

  // ---- internals ---------------------------------------------------------------------------

  #getOrSetWith<T>(key: string, factory: Factory<T>, policy: Policy): Promise<T> {
    const full = this.#key(key);
    const now = this.#core.clock.now();
    const held = this.#core.l1?.getHeld<T>(full, now);
    if (held !== undefined && this.#isFreshHeld(held, now)) {
      this.#hit(full, "l1");
      if (policy.early > 0)
        this.#maybeRefreshEarly(full, held.entry, factory, policy.early, policy);
      return Promise.resolve(held.entry.value);
    }
    return this.#resolve(full, factory, policy, held).then(valueOfResolution);
  }

  #key(key: string): string {
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

  #hit(key: string, tier: Tier): void {
    const events = this.#core.events;
    if (events.wants("hit")) events.emit("hit", { key, tier });
  }

  /** Fresh and not invalidated by a tag. Re-checks tags only when the registry moved. */
  #isFreshHeld(held: HeldEntry, now = this.#core.clock.now()): boolean {
    const tags = this.#core.tags;
    if (now >= held.entry.freshUntil) return false;
    if (held.tagMark === tags.mark) return true;
    if (tags.verdict(held.entry) !== "valid") return false;
    held.tagMark = tags.mark;
    return true;
  }

  /** A fresh entry from L1 or L2 (backfilling L1), or `undefined`. No factory. */
  async #lookup<T>(full: string, quiet = false): Promise<Entry<T> | undefined> {
    this.#core.bus?.start();
    const held = this.#core.l1?.getHeld<T>(full);
    if (held !== undefined && this.#isFreshHeld(held)) {
      this.#hit(full, "l1");
      return held.entry;
    }
    const remote = await this.#readL2<T>(full);
    if (remote !== undefined && this.#freshness(remote.entry, this.#core.clock.now()) === "fresh") {
      this.#hold(full, remote.entry, remote.size);
      this.#hit(full, "l2");
      return remote.entry;
    }
    const events = this.#core.events;
    if (!quiet && events.wants("miss")) events.emit("miss", { key: full });
    return undefined;
  }

  async #resolve<T>(
    full: string,
    factory: Factory<T>,
    policy: Policy,
    held: HeldEntry<T> | undefined,
  ): Promise<Resolution<T>> {
    this.#core.bus?.start();
    const { clock } = this.#core;
    let now = clock.now();
    // The best candidate so far: an L1 entry that is stale but not expired.
    let candidate: Entry<T> | undefined;
    let candidateTier: Tier = "l1";
    if (held !== undefined && this.#freshness(held.entry, now) !== "expired") {
      candidate = held.entry;
    }
    if (this.#core.l2) {
      const remote = await this.#readL2<T>(full);
      now = clock.now();
      if (remote !== undefined) {
        const { entry, size } = remote;
        const state = this.#freshness(entry, now);
        if (state === "fresh") {
          this.#hold(full, entry, size);
          this.#hit(full, "l2");
          return { entry, outcome: "hit", tier: "l2" };
        }
        if (state === "stale" && (!candidate || entry.createdAt > candidate.createdAt)) {
          candidate = entry;
          candidateTier = "l2";
        }
      }
    }
    return this.#produce(full, factory, policy, candidate, candidateTier);
  }

  async #produce<T>(
    full: string,
    factory: Factory<T>,
    policy: Policy,
    stale: Entry<T> | undefined,
    staleTier: Tier,
  ): Promise<Resolution<T>> {
    const { clock, events, backoff } = this.#core;
    const now = clock.now();
    let graceable: Entry<T> | undefined;
    if (stale !== undefined) {
      const staleSince = this.#staleSince(stale);
      // A refresh of this key failed recently: serve stale without calling the factory again.
      const until = backoff.get(full);
      const backedOff = until !== undefined && now < until;
      // Stale-while-revalidate: answer now, refresh once in the background.
      // The windows travel with the entry: the writer chose them (or the response did).
      if (now < Math.min(staleSince + (stale.swr ?? policy.swr), stale.staleUntil)) {
        if (!backedOff) this.#refresh(full, factory, policy, stale, true).catch(() => {});
        this.#stale(full, staleTier, backedOff ? "backoff" : "revalidating");
        return {
          entry: stale,
          outcome: "stale",
          tier: staleTier,
          reason: backedOff ? "backoff" : "revalidating",
        };
      }
      if (now < Math.min(staleSince + (stale.grace ?? policy.grace), stale.staleUntil)) {
        graceable = stale;
        if (backedOff) {
          this.#stale(full, staleTier, "backoff");
          return { entry: stale, outcome: "stale", tier: staleTier, reason: "backoff" };
        }
      }
    }
    const flight = this.#refresh(full, factory, policy, graceable, false);
    if (graceable === undefined) {
      if (events.wants("miss")) events.emit("miss", { key: full });
      return flight.then((entry) => ({
        entry: entry as Entry<T>,
        outcome: "miss",
        tier: undefined,
      }));
    }
    // With a stale value to fall back on, the request is a miss only if the fresh value comes;
    // otherwise it is a stale answer: one event either way.
    try {
      const entry = policy.timeout > 0 ? await raceTimeout(flight, policy.timeout) : await flight;
      if (entry === TIMED_OUT) {
        flight.catch(() => {});
        this.#stale(full, staleTier, "timeout");
        return { entry: graceable, outcome: "stale", tier: staleTier, reason: "timeout" };
      }
      if (events.wants("miss")) events.emit("miss", { key: full });
      return { entry: entry as Entry<T>, outcome: "miss", tier: undefined };
    } catch (error) {
      this.#stale(full, staleTier, "error");
      return { entry: graceable, outcome: "stale", tier: staleTier, reason: "error", error };
    }
  }

  /**
   * Run the factory for `full` once, however many callers ask concurrently, store the result,
   * and resolve with the new entry. Rejections are shared by the concurrent callers only.
   */
  #refresh<T>(
    full: string,
    factory: Factory<T>,
    policy: Policy,
    stale: Entry<T> | undefined,
    background: boolean,
  ): Promise<Entry> {
    const { flights } = this.#core;
    const existing = flights.get(full);
    if (existing) return existing.promise;
    const promise = this.#run(full, factory, policy, stale, background);
    const flight: Flight = { promise };
    flights.set(full, flight);
    const done = () => {
      if (flights.get(full) === flight) flights.delete(full);
    };
    promise.then(done, done);
    return promise;
  }

  #maybeRefreshEarly<T>(
    full: string,
    entry: Entry<T>,
    factory: Factory<T>,
    beta: number,
    options: EntryOptions | Policy | undefined,
  ): void {
    if (this.#core.flights.has(full) || !refreshEarly(entry, this.#core.clock.now(), beta)) return;
    const policy = isPolicy(options) ? options : resolvePolicy(options, this.#core.defaults);
    this.#refresh(full, factory, policy, entry, true).catch(() => {});
  }

  /**
   * Take the fleet-wide lease for `full`, or wait for its holder's value to land. Resolves with
   * the landed entry, or with the lease to release (`undefined` when the store could not say,
   * or the wait ran out: run the factory anyway — never fail because of the lease).
   */
  async #lease(
    full: string,
    lease: LeasePolicy,
    l2: GuardedStore,
  ): Promise<{ landed: Entry } | { token: Buffer | undefined }> {
    const { clock, events } = this.#core;
    const key = leaseStoreKey(full);
    const token = randomBytes(16);
    const deadline = clock.now() + lease.wait;
    let delay = 5;
    let waiting = false;
    let waitBegan = 0;
    const waited = () => performance.now() - waitBegan;
    for (;;) {
      const acquired = await l2.setIfAbsent(key, token, lease.ttl);
      if (acquired !== false) {
        if (acquired && waiting) {
          // The holder writes its value, then releases the lease: between this waiter's last
          // read and this SET NX it may have done both. A value that landed wins over a second
          // factory call; the lease just taken is given back.
          const remote = await this.#readL2(full);
          if (remote && this.#freshness(remote.entry, clock.now()) === "fresh") {
            void l2.deleteIfEquals(key, token);
            this.#hold(full, remote.entry, remote.size);
            if (events.wants("lease")) {
              events.emit("lease", { key: full, outcome: "landed", waited: waited() });
            }
            return { landed: remote.entry };
          }
        }
        if (acquired && events.wants("lease")) {
          events.emit(
            "lease",
            waiting
              ? { key: full, outcome: "took-over", waited: waited() }
              : { key: full, outcome: "acquired" },
          );
        }
        return { token: acquired ? token : undefined };
      }
      if (!waiting) {
        waiting = true;
        waitBegan = performance.now();
        if (events.wants("lease")) events.emit("lease", { key: full, outcome: "waiting" });
      }
      await this.#landedOrDelay(full, delay);
      const remote = await this.#readL2(full);
      if (remote && this.#freshness(remote.entry, clock.now()) === "fresh") {
        this.#hold(full, remote.entry, remote.size);
        if (events.wants("lease")) {
          events.emit("lease", { key: full, outcome: "landed", waited: waited() });
        }
        return { landed: remote.entry };
      }
      if (clock.now() >= deadline) {
        if (events.wants("lease")) {
          events.emit("lease", { key: full, outcome: "timed-out", waited: waited() });
        }
        return { token: undefined };
      }
      delay = Math.min(delay * 2, 100);
    }
  }

  /** Wait `ms`, or less when the bus says a value landed for `full`. */
  #landedOrDelay(full: string, ms: number): Promise<void> {
    const { landed } = this.#core;
    return new Promise((resolve) => {
      let waiters = landed.get(full);
      if (!waiters) {
        waiters = new Set();
        landed.set(full, waiters);
      }
      const set = waiters;
      const done = () => {
        clearTimeout(timer);
        set.delete(done);
        if (set.size === 0 && landed.get(full) === set) landed.delete(full);
        resolve();
      };
      const timer = setTimeout(done, ms);
      set.add(done);
    });
  }

  async #run<T>(
    full: string,
    factory: Factory<T>,
    basePolicy: Policy,
    stale: Entry<T> | undefined,
    background: boolean,
  ): Promise<Entry> {
    const { clock, events, backoff, tags } = this.#core;
    const startedAt = tags.stamp();
    let policy = basePolicy;
    const controller = new AbortController();
    const context: FactoryContext<T> = {
      key: full,
      signal: controller.signal,
      stale,
      background,
      setOptions: (options) => {
        policy = resolvePolicy(options, policy, "setOptions", true);
      },
    };
    const l2 = this.#core.l2;
    let token: Buffer | undefined;
    if (policy.lease && l2?.store.setIfAbsent) {
      const outcome = await this.#lease(full, policy.lease, l2);
      if ("landed" in outcome) return outcome.landed;
      token = outcome.token;
    }
    try {
      let value: T;
      const began = clock.now();
      // Timed on a monotonic clock, only when someone listens (metrics, traces).
      const timed = events.wants("factory") ? performance.now() : -1;
      try {
        value = await callFactory(factory, context, policy.hardTimeout, controller, full);
      } catch (error) {
        if (policy.graceBackoff > 0) backoff.set(full, clock.now() + policy.graceBackoff);
        if (events.wants("factory-error")) events.emit("factory-error", { key: full, error });
        if (timed >= 0) {
          events.emit("factory", {
            key: full,
            duration: performance.now() - timed,
            outcome: error instanceof FactoryHardTimeoutError ? "hard-timeout" : "error",
            background,
            error,
          });
        }
        throw error;
      }
      if (timed >= 0) {
        events.emit("factory", {
          key: full,
          duration: performance.now() - timed,
          outcome: "ok",
          background,
        });
      }
      backoff.delete(full);
      const entry = this.#makeEntry(value, startedAt, policy, clock.now() - began);
      await this.#write(full, entry);
      return entry;
    } finally {
      // Only the owner releases: a lease that expired and was taken over is left alone.
      if (token && l2) void l2.deleteIfEquals(leaseStoreKey(full), token);
    }
  }

  #makeEntry<T>(value: T, createdAt: number, policy: Policy, delta = 0): Entry<T> {
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
      tags: policy.tags.length === 0 ? this.#nsTags : [...this.#nsTags, ...policy.tags],
    };
  }

  /** Write an entry to both tiers. Never throws: failures become `error` events. */
  async #write(full: string, entry: Entry): Promise<void> {
    const { l1, l2, clock, events } = this.#core;
    this.#core.bus?.start();
    const serializer = this.#serializer;
    const now = clock.now();
    const lifetime = entry.staleUntil - now;
    if (lifetime <= 0) return;
    let bytes: Buffer | undefined;
    if (l2) {
      try {
        bytes = encodeEntry(entry, serializer);
      } catch (cause) {
        const error = new SerializeError(
          `the ${serializer.name} serializer failed for key "${full}"; the value is not shared`,
          { cause },
        );
        if (events.wants("error"))
          events.emit("error", { key: full, operation: "serialize", error });
      }
    }
    if (l1) this.#hold(full, entry, bytes ? bytes.length : undefined);
    if (l2 && bytes) {
      const stored = await l2.set(full, bytes, Math.ceil(lifetime));
      // Others drop their copies and read the new value from the store (lease waiters too).
      if (stored) this.#core.bus?.key(full, true);
    }
    if (events.wants("set")) {
      events.emit("set", {
        key: full,
        ttl: entry.freshUntil - entry.createdAt,
        size: bytes?.length,
      });
    }
  }

  #hold(full: string, entry: Entry, size: number | undefined): void {
    const { l1, l2, l1MaxTtl, freeze, tags, clock } = this.#core;
    if (!l1) return;
    if (freeze) deepFreeze(entry.value);
    const expiresAt = l2 ? Math.min(entry.staleUntil, clock.now() + l1MaxTtl) : entry.staleUntil;
    // An entry whose production started before an invalidation that has happened since is
    // born invalid: stamping it with the current mark would make hits skip the tag check.
    const tagMark = tags.verdict(entry) === "valid" ? tags.mark : -1;
    const held: HeldEntry = { entry, tagMark };
    const bytes = size ?? estimateSize(entry.value) + 64;
    if (!l1.setHeld(full, held, bytes, expiresAt)) {
      const events = this.#core.events;
      if (events.wants("oversize")) {
        events.emit("oversize", { key: full, size: bytes, limit: l1.maxEntrySize, source: "l1" });
      }
    }
  }

  /** Read and decode an entry from L2; concurrent reads of one key share one store call. */
  #readL2<T>(full: string): Promise<Decoded<T> | undefined> {
    const { l2, reads } = this.#core;
    if (!l2) return Promise.resolve(undefined);
    let pending = reads.get(full);
    if (!pending) {
      pending = this.#fetchL2(full, l2);
      reads.set(full, pending);
      const done = () => reads.delete(full);
      pending.then(done, done);
    }
    return pending as Promise<Decoded<T> | undefined>;
  }

  async #fetchL2(full: string, l2: GuardedStore): Promise<Decoded | undefined> {
    const { events, tags } = this.#core;
    const serializer = this.#serializer;
    const bytes = await l2.get(full);
    if (bytes === undefined) return undefined;
    let entry: Entry;
    try {
      entry = decodeEntry(full, bytes, serializer);
    } catch (error) {
      // A corrupt or foreign value is a miss; the next write overwrites it.
      if (events.wants("error")) events.emit("error", { key: full, operation: "decode", error });
      return undefined;
    }
    if (!tags.isSynced(entry.tags)) await tags.sync(entry.tags);
    return { entry, size: bytes.byteLength };
  }

  /** `fresh`, `stale` (usable within stale windows) or `expired`, tags included. */
  #freshness(entry: Entry, now: number): "fresh" | "stale" | "expired" {
    if (now >= entry.staleUntil) return "expired";
    const verdict = this.#core.tags.verdict(entry);
    if (verdict === "expired") return "expired";
    if (verdict === "stale") return "stale";
    return now < entry.freshUntil ? "fresh" : "stale";
  }

  /** When the entry stopped being fresh: its TTL, or an earlier soft invalidation. */
  #staleSince(entry: Entry): number {
    const soft = this.#core.tags.softInvalidatedAt(entry);
    return soft === undefined ? entry.freshUntil : Math.min(entry.freshUntil, soft);
  }

  #stale(key: string, tier: Tier, reason: StaleReason): void {
    const events = this.#core.events;
    if (events.wants("stale")) events.emit("stale", { key, tier, reason });
  }

  async #invalidate(tags: readonly string[], soft: boolean, kind: InvalidationKind): Promise<void> {
    const { bus } = this.#core;
    bus?.start();
    const states = await this.#core.tags.invalidate(tags, soft);
    if (bus) for (const [tag, hard, softAt] of states) bus.tag(tag, hard, softAt);
    const events = this.#core.events;
    if (events.wants("invalidate")) events.emit("invalidate", { tags, soft, kind });
  }
}

/** Functions installed by `@cached`, with the decorator context each replaces a method for. */
const decoratedMethods = new WeakMap<object, object>();

/**
 * Record that `installed` is what the class holds for the method of `context`, so that a call
 * can find the class that declares it (see {@link declaringClassName}). @internal
 */
export function registerDecoratedMethod(installed: object, context: object): void {
  decoratedMethods.set(installed, context);
}

/**
 * The name of the class that declares a decorated method, found from the receiver of a call
 * by walking its prototype chain to the object holding the decorated function. Not
 * `this.constructor.name`: a subclass calling first (or through `super`) would otherwise name
 * the key, making it depend on call order and collide with the subclass's own method.
 */
function declaringClassName(
  self: unknown,
  context: { readonly static: boolean; readonly name: string | symbol },
): string | undefined {
  if ((typeof self !== "object" && typeof self !== "function") || self === null) return undefined;
  let holder: object | null = context.static ? self : Object.getPrototypeOf(self);
  while (holder !== null) {
    const installed = Object.getOwnPropertyDescriptor(holder, context.name)?.value;
    if (installed !== undefined && decoratedMethods.get(installed) === context) {
      const owner = context.static ? holder : (holder as { constructor?: unknown }).constructor;
      const name = (owner as { name?: unknown } | undefined)?.name;
      return typeof name === "string" ? name : undefined;
    }
    holder = Object.getPrototypeOf(holder);
  }
  // Not found (a private method, or a function moved elsewhere): the receiver's class.
  return context.static
    ? (self as { name?: string }).name
    : (self as { constructor?: { name?: string } }).constructor?.name;
}

/** The store key of the fleet-wide lease for an entry key. */
export function leaseStoreKey(full: string): string {
  return `__cachet:lease:${full}`;
}

/** XFetch: refresh when `now - delta·beta·ln(U) ≥ expiry`, U uniform in (0, 1]. */
function refreshEarly(entry: Entry, now: number, beta: number): boolean {
  const delta = entry.delta ?? 0;
  if (delta <= 0 || beta <= 0) return false;
  return now - delta * beta * Math.log(1 - Math.random()) >= entry.freshUntil;
}

function isPolicy(value: EntryOptions | Policy | undefined): value is Policy {
  return value !== undefined && typeof (value as Policy).swr === "number" && "early" in value;
}

function valueOfResolution<T>(resolution: Resolution<T>): T {
  return resolution.entry.value;
}

async function raceTimeout<T>(promise: Promise<T>, ms: number): Promise<T | typeof TIMED_OUT> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<typeof TIMED_OUT>((resolve) => {
        timer = setTimeout(resolve, ms, TIMED_OUT);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

async function callFactory<T>(
  factory: Factory<T>,
  context: FactoryContext<T>,
  hardTimeout: number,
  controller: AbortController,
  key: string,
): Promise<T> {
  const running = (async () => factory(context))();
  if (hardTimeout <= 0) return running;
  running.catch(() => {});
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      running,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          const error = new FactoryHardTimeoutError(key, hardTimeout);
          controller.abort(error);
          reject(error);
        }, hardTimeout);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Create a cache.
 *
 * @example in-process
 * const cache = createCache({ ttl: "60s" });
 * @example on Redis, with an in-process tier in front
 * const cache = createCache({ store: redisStore({ url: process.env.REDIS_URL }), l1: true });
 */
export function createCache(options: CacheOptions = {}): Cache {
  if (options === null || typeof options !== "object") {
    throw new InvalidOptionError("createCache(options)", "expected an object");
  }
  rejectUnknownOptions(options, CACHE_OPTION_NAMES, "createCache");
  const clock = options.clock ?? systemClock;
  const store = options.store ?? new MemoryStore({ clock });
  if (
    typeof store.get !== "function" ||
    typeof store.set !== "function" ||
    typeof store.delete !== "function"
  ) {
    throw new InvalidOptionError("store", "expected a store with get, set and delete");
  }
  // Remote-store options are validated even on the memory store, where they are unused, so
  // that a mistake fails now rather than on the day the cache moves to Redis.
  if (
    options.l1 !== undefined &&
    typeof options.l1 !== "boolean" &&
    !(options.l1 instanceof MemoryStore)
  ) {
    throw new InvalidOptionError("l1", "expected true, false or a memoryStore()");
  }
  const guard: GuardOptions = {
    timeout: optionalMs(options.storeTimeout, "storeTimeout", 50, false),
    failureThreshold: positiveInt(options.breakerThreshold, "breakerThreshold", 5),
    breakerCooldown: optionalMs(options.breakerCooldown, "breakerCooldown", 1_000, false),
  };
  const events = new CacheEvents();
  let l1: MemoryStore | undefined;
  let l2: GuardedStore | undefined;
  if (store instanceof MemoryStore) {
    l1 = store;
  } else {
    if (options.l1 instanceof MemoryStore) l1 = options.l1;
    else if (options.l1 === true) l1 = new MemoryStore({ clock });
    l2 = new GuardedStore(store, guard, {
      clock,
      onError: (operation, key, error) => {
        if (events.wants("error")) events.emit("error", { key, operation, error });
      },
      onBreaker: (state, error) => {
        if (events.wants("breaker")) {
          events.emit("breaker", { store: store.name, state, ...(error ? { error } : {}) });
        }
      },
      timed: () => events.wants("store"),
      onCall: (operation, key, duration, outcome, error) => {
        events.emit("store", {
          store: store.name,
          operation,
          key,
          duration,
          outcome,
          ...(error ? { error } : {}),
        });
      },
      onDegraded: (error) => {
        if (events.wants("store-health")) {
          events.emit("store-health", { store: store.name, state: "down", error });
        }
      },
      onRecovered: (since, failures) => {
        if (events.wants("store-health")) {
          events.emit("store-health", {
            store: store.name,
            state: "up",
            downFor: clock.now() - since,
            failures,
          });
        }
      },
    });
  }
  const disposers: Array<() => void> = [];
  if (l1) {
    const tier: Tier = "l1";
    disposers.push(
      l1.onEvict((key, size) => {
        if (events.wants("evict")) events.emit("evict", { key, tier, size });
      }),
    );
  }
  if (options.logger !== undefined && !isLogger(options.logger)) {
    throw new InvalidOptionError(
      "logger",
      "expected a pino-compatible logger (an object with error, warn, info and debug)",
    );
  }
  if (options.bus !== undefined && typeof options.bus !== "boolean") {
    throw new InvalidOptionError(
      "bus",
      `expected true or false, got ${JSON.stringify(options.bus)}`,
    );
  }
  // The bus keeps other instances' in-process copies (and tag states) coherent: it needs a
  // remote store with pub/sub.
  let bus: Bus | undefined;
  const remote: Store = store;
  if (l2 && options.bus !== false && remote.publish && remote.subscribe) {
    const pubsub = {
      publish: remote.publish.bind(remote),
      subscribe: remote.subscribe.bind(remote),
    };
    bus = new Bus(pubsub, {
      keys: (keys, landed) => {
        for (const key of keys) {
          l1?.deleteSync(key);
          if (landed) for (const wake of [...(core.landed.get(key) ?? [])]) wake();
        }
      },
      tags: (states) => {
        for (const [tag, hard, soft] of states) core.tags.apply(tag, hard, soft);
      },
      reset: (reason) => {
        l1?.clear();
        core.tags.forget();
        if (events.wants("bus"))
          events.emit("bus", { state: reason === "gap" ? "gap" : "reconnected" });
      },
      error: (operation, error) => {
        if (events.wants("error"))
          events.emit("error", { key: undefined, operation: `bus.${operation}`, error });
      },
    });
  } else if (options.bus === true) {
    throw new InvalidOptionError(
      "bus",
      "needs a remote store with publish and subscribe (such as redisStore())",
    );
  }
  const defaults = resolvePolicy(options, DEFAULT_POLICY, "createCache");
  const tagTtl = optionalMs(options.tagTtl, "tagTtl", 30 * 24 * 3600_000, false);
  const core: Core = {
    clock,
    events,
    l1,
    l2,
    l1MaxTtl: optionalMs(options.l1MaxTtl, "l1MaxTtl", 60_000, false),
    serializer: options.serializer ?? jsonSerializer,
    freeze: options.freeze ?? true,
    tags: new TagRegistry({
      l2,
      clock,
      syncInterval: optionalMs(options.tagSyncInterval, "tagSyncInterval", 1_000),
      tagTtl,
      pushed: () => bus?.up === true,
    }),
    defaults,
    flights: new Map(),
    reads: new Map(),
    backoff: new LRUCache<string, number>({ max: 10_000 }),
    landed: new Map(),
    bus,
    log: { logger: undefined, detach: undefined },
    disposers,
    closing: undefined,
  };
  const cache = new Cache(core, "", [NAMESPACE_TAG_PREFIX], core.serializer);
  if (options.logger) cache.useLogger(options.logger);
  return cache;
}
