import type { Clock } from "./clock.js";
import { methodDecorator } from "./decorators.js";
import type { Duration } from "./duration.js";
import { toMs } from "./duration.js";
import { Coordinator } from "./engine/coordinator.js";
import { closeCore, createCore, RESERVED_KEY_PREFIX } from "./engine/core.js";
import { healthOf } from "./engine/health.js";
import { bindEngine } from "./engine/registry.js";
import { Tiers } from "./engine/tiers.js";
import type { Entry } from "./entry.js";
import { InvalidOptionError, StoreError } from "./errors.js";
import type { CacheEventListener, CacheEventName, StaleReason, Tier } from "./events.js";
import type { BreakerState } from "./guard.js";
import { argsKey } from "./keys.js";
import type { Logger } from "./logging.js";
import type { EntryOptions } from "./options.js";
import { NAMESPACE_TAG_PREFIX, validateTags } from "./options.js";
import type { Serializer } from "./serializer.js";
import type { Store } from "./store.js";
import type { MemoryStore } from "./stores/memory.js";
import { causeText } from "./stores/util.js";

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
  /** Encodes values for remote stores; its rules decide what every tier accepts. @default msgpackSerializer */
  serializer?: Serializer | undefined;
  /**
   * Freeze values kept decoded in memory (deeply), so that a caller mutating a returned object
   * cannot change what later hits return. Mutating a frozen value throws a TypeError in strict
   * code. Turn off only if you never mutate results.
   * @default true
   */
  freeze?: boolean | undefined;
  /**
   * How long the remote store may stay silent towards a call before the call counts as
   * failed: a window in which the store answers neither the call nor any call made before it.
   * The window opens when the call can be on the wire and is judged after the process has
   * read what arrived, so a busy event loop is not taken for a slow store; a call whose
   * predecessors are being answered waits in line, 20 windows at most. A frozen store fails
   * a call at the end of its first window (the second when the timer fired late).
   * See docs/failure-modes.md. @default 50
   */
  storeTimeout?: Duration | undefined;
  /** Consecutive remote-store failures that open the circuit breaker. @default 5 */
  breakerThreshold?: number | undefined;
  /** How long the breaker stays open before one probe call. @default "1s" */
  breakerCooldown?: Duration | undefined;
  /**
   * The slowest rate the remote store is assumed to move bytes at, in bytes per second: a call
   * carrying a large value (64 KiB or more), and calls queued behind one, get `storeTimeout`
   * plus the time that value takes at this rate, so that a large value is not taken for a
   * failing store. @default 16777216 (16 MiB/s)
   */
  storeThroughput?: number | undefined;
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
  /**
   * Do not store what this call returns: the value still answers this call and the calls
   * that share its flight, but no tier keeps it, so the next call runs the factory again (an
   * upstream answer you do not want to keep, such as an empty or partial result).
   *
   * @example
   * await cache.getOrSet("search:" + q, async (ctx) => {
   *   const hits = await search(q);
   *   if (hits.length === 0) ctx.skip();
   *   return hits;
   * });
   */
  skip(): void;
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

const NAMESPACE_NAME = /^[A-Za-z0-9_.-]+$/;

/**
 * The cache. Create one with {@link createCache}; scope it with {@link Cache.namespace}.
 *
 * Reads go L1 (in-process) → L2 (remote) → factory; writes and deletes reach both tiers. All
 * remote failures degrade to misses: the cache never fails a request because a store did.
 * This class is the public API only; the engine behind it (tiers and coordinator, in
 * `src/engine/`) is what the HTTP cache and the CLI drive.
 */
export class Cache {
  readonly #engine: Coordinator;
  readonly #tiers: Tiers;

  /** Use {@link createCache}; a `Cache` is never constructed directly. */
  constructor(engine: Coordinator) {
    if (!(engine instanceof Coordinator)) {
      throw new InvalidOptionError("new Cache()", "use createCache(options) to make a cache");
    }
    this.#engine = engine;
    this.#tiers = engine.tiers;
    bindEngine(this, engine);
  }

  /** The namespace path (`""` for the root cache, `"users"`, `"users/admins"`, …). */
  get namespacePath(): string {
    return this.#tiers.path;
  }

  /** Typed events; see `CacheEventMap`. Returns a function that removes the listener. */
  on<E extends CacheEventName>(name: E, listener: CacheEventListener<E>): () => void {
    return this.#tiers.events.on(name, listener);
  }

  off<E extends CacheEventName>(name: E, listener: CacheEventListener<E>): void {
    this.#tiers.events.off(name, listener);
  }

  /**
   * The state of the tiers and the bus, for a health endpoint. A `degraded` cache still
   * answers (from the tiers that work, or the origin): report it, do not fail on it.
   *
   * @example
   * app.get("/health", () => ({ status: "ok", cache: cache.health() }));
   */
  health(): CacheHealth {
    return healthOf(this.#tiers.core);
  }

  /** The breaker state of the remote tier, or `undefined` for an in-process cache. */
  get storeState(): "closed" | "open" | "half-open" | undefined {
    return this.#tiers.core.l2?.state;
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
    return this.#engine.getOrSet(key, factory, options);
  }

  /** The fresh value under `key`, or `undefined` (use {@link has} to tell a stored `undefined`). */
  async get<T = unknown>(key: string): Promise<T | undefined> {
    const entry = await this.#tiers.lookup<T>(this.#tiers.key(key));
    return entry?.value;
  }

  /** Whether a fresh value is stored under `key`. */
  async has(key: string): Promise<boolean> {
    return (await this.#tiers.lookup(this.#tiers.key(key))) !== undefined;
  }

  /** Store `value` under `key` in every tier. */
  async set<T>(key: string, value: T, options?: EntryOptions): Promise<void> {
    const tiers = this.#tiers;
    const full = tiers.key(key);
    const policy = tiers.policy(options);
    await tiers.write(full, tiers.makeEntry(value, tiers.core.tags.stamp(), policy));
  }

  /** Remove `key` from every tier. Resolves whether the remote tier (or L1 alone) confirmed. */
  delete(key: string): Promise<boolean> {
    return this.#tiers.remove(this.#tiers.key(key));
  }

  // ---- batches and remaining life -----------------------------------------------------------

  /**
   * The fresh values under `keys`, in the same order (`undefined` for a miss). In-process hits
   * first, then one remote round trip for the rest (one per hash slot on a Redis Cluster),
   * kept in-process for next time. A failing remote store makes its keys misses.
   *
   * @example
   * const [a, b] = await cache.getMany<User>(["user:1", "user:2"]);
   */
  async getMany<T = unknown>(keys: readonly string[]): Promise<Array<T | undefined>> {
    const tiers = this.#tiers;
    const fulls = arrayArg(keys, "getMany(keys)").map((key) => tiers.key(key));
    const entries = await tiers.lookupMany<T>(fulls);
    return entries.map((entry) => entry?.value);
  }

  /**
   * Store several values in every tier, each with its own options (`ttl`, `tags`, …, as for
   * {@link set}): one remote round trip (one per hash slot on a Redis Cluster).
   *
   * @example
   * await cache.setMany([
   *   { key: "user:1", value: alice, ttl: "5m" },
   *   { key: "user:2", value: bob, tags: ["team:7"] },
   * ]);
   */
  async setMany<T>(entries: ReadonlyArray<CacheEntryInput<T>>): Promise<void> {
    const tiers = this.#tiers;
    const stamp = tiers.core.tags.stamp();
    const items = arrayArg(entries, "setMany(entries)").map((item, i) => {
      if (item === null || typeof item !== "object") {
        throw new InvalidOptionError(
          `setMany(entries[${i}])`,
          "expected { key, value, ...options }",
        );
      }
      const { key, value, ...options } = item;
      const full = tiers.key(key);
      const policy = tiers.policy(options, `setMany(entries[${i}])`);
      return { full, entry: tiers.makeEntry(value, stamp, policy) };
    });
    await tiers.writeMany(items);
  }

  /**
   * Remove several keys from every tier: one remote round trip (one per hash slot on a Redis
   * Cluster), one bus message for other instances. Resolves whether the remote tier (or L1
   * alone) confirmed.
   */
  deleteMany(keys: readonly string[]): Promise<boolean> {
    const tiers = this.#tiers;
    let fulls: string[];
    try {
      fulls = arrayArg(keys, "deleteMany(keys)").map((key) => tiers.key(key));
    } catch (error) {
      return Promise.reject(error);
    }
    return tiers.removeMany(fulls);
  }

  /**
   * How long the value under `key` stays fresh, in milliseconds; `undefined` when no fresh
   * value is stored. With `{ stale: true }`: how long it can still be served at all (stale
   * within its `swr`/`grace` window), `undefined` once it cannot.
   *
   * @example
   * const ms = await cache.ttl("user:1"); // e.g. 299_412, or undefined
   */
  async ttl(key: string, options: { stale?: boolean } = {}): Promise<number | undefined> {
    return this.#tiers.remaining(this.#tiers.key(key), options?.stale === true);
  }

  /**
   * Expire every entry carrying any of `tags`, in one write per tag whatever the number of
   * entries. With `soft`, the entries become stale instead, so that stale-while-revalidate
   * and stale-if-error still apply to them.
   */
  async invalidateTags(tags: readonly string[], options: { soft?: boolean } = {}): Promise<void> {
    const valid = validateTags(tags, "invalidateTags(tags)");
    await this.#tiers.invalidate(valid, options.soft === true, "tags");
  }

  /**
   * Expire every entry of this namespace (and of namespaces below it) in O(1): one write,
   * no key scan. On the root cache this clears everything.
   */
  async clear(): Promise<void> {
    const tiers = this.#tiers;
    const own = tiers.nsTags[tiers.nsTags.length - 1]!;
    if (tiers.path === "") tiers.core.l1?.clear();
    await tiers.invalidate([own], false, "namespace");
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
    const tiers = this.#tiers;
    const path = tiers.path === "" ? name : `${tiers.path}/${name}`;
    const scoped = new Tiers(
      tiers.core,
      path,
      [...tiers.nsTags, `${NAMESPACE_TAG_PREFIX}${path}`],
      options.serializer ?? tiers.serializer,
    );
    return new Cache(new Coordinator(scoped));
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
    const policy = this.#tiers.policy(options, "wrap");
    const keyOf = options.key;
    const engine = this.#engine;
    return function wrapped(this: unknown, ...args: A): Promise<Awaited<R>> {
      let part: string;
      if (keyOf) {
        const custom = keyOf(...args);
        part = typeof custom === "string" ? custom : argsKey([custom]);
      } else {
        part = argsKey(args);
      }
      return engine.getOrSet(
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
    return methodDecorator<This, A, R>(this, options);
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
    const l2 = this.#tiers.core.l2;
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
    return closeCore(this.#tiers.core);
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
/** One entry of {@link Cache.setMany}: a key, its value, and the options of {@link Cache.set}. */
export interface CacheEntryInput<T = unknown> extends EntryOptions {
  key: string;
  value: T;
}

function arrayArg<T>(value: readonly T[], where: string): readonly T[] {
  if (!Array.isArray(value)) {
    throw new InvalidOptionError(
      where,
      `expected an array, got ${value === null ? "null" : typeof value}`,
    );
  }
  return value;
}

export function createCache(options: CacheOptions = {}): Cache {
  const core = createCore(options);
  return new Cache(new Coordinator(new Tiers(core, "", [NAMESPACE_TAG_PREFIX], core.serializer)));
}

/** The store key of the fleet-wide lease for an entry key. */
export { leaseStoreKey } from "./engine/coordinator.js";
