import { LRUCache } from "lru-cache";
import { Bus } from "../bus.js";
import type { CacheOptions } from "../cache.js";
import type { Clock } from "../clock.js";
import { systemClock } from "../clock.js";
import { optionalMs } from "../duration.js";
import type { Entry } from "../entry.js";
import { InvalidOptionError } from "../errors.js";
import type { Tier } from "../events.js";
import { CacheEvents } from "../events.js";
import { DEFAULT_THROUGHPUT, GuardedStore, type GuardOptions } from "../guard.js";
import type { Logger } from "../logging.js";
import { attachLogger, isLogger } from "../logging.js";
import type { Policy } from "../options.js";
import { DEFAULT_POLICY, ENTRY_OPTION_NAMES, positiveInt, resolvePolicy } from "../options.js";
import type { Serializer } from "../serializer.js";
import { msgpackSerializer } from "../serializer.js";
import type { Store } from "../store.js";
import { MemoryStore } from "../stores/memory.js";
import { TagRegistry } from "../tags.js";
import { rejectUnknownOptions } from "../validate.js";

/** An entry read from L2, with its encoded size (what it costs to hold in L1). */
export interface Decoded<T = unknown> {
  readonly entry: Entry<T>;
  readonly size: number;
}

export interface Flight {
  readonly promise: Promise<Entry>;
  /** A refresh nobody waits for (stale-while-revalidate, refresh ahead). */
  readonly background: boolean;
}

/**
 * What every namespace of one cache shares: the tiers, the clock, the events, the tag
 * registry, the flights and the bus. Built once by {@link createCore}.
 */
export interface Core {
  readonly clock: Clock;
  readonly events: CacheEvents;
  readonly l1: MemoryStore | undefined;
  readonly l2: GuardedStore | undefined;
  readonly l1MaxTtl: number;
  readonly serializer: Serializer;
  /** Whether an outdated entry (previous format, other serializer) has been reported. */
  outdatedReported: boolean;
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

/** Keys cachet keeps for itself (leases, tag states, the readiness probe). */
export const RESERVED_KEY_PREFIX = "__cachet:";

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
  "storeThroughput",
  "tagSyncInterval",
  "tagTtl",
  "clock",
  "bus",
  "logger",
];

/** Validate `options` and build the tiers, the guard, the bus and the tag registry. */
export function createCore(options: CacheOptions): Core {
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
    throughput:
      positiveInt(options.storeThroughput, "storeThroughput", DEFAULT_THROUGHPUT * 1000) / 1000,
  };
  const events = new CacheEvents();
  let l1: MemoryStore | undefined;
  let l2: GuardedStore | undefined;
  if (store instanceof MemoryStore) {
    l1 = store;
  } else {
    if (options.l1 instanceof MemoryStore) l1 = options.l1;
    else if (options.l1 === true) l1 = new MemoryStore({ clock });
    l2 = guarded(store, guard, clock, events);
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
    serializer: options.serializer ?? msgpackSerializer,
    outdatedReported: false,
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
  if (options.logger) useLogger(core, options.logger);
  return core;
}

/** A remote store behind the guard, its failures and state changes reported as events. */
function guarded(store: Store, guard: GuardOptions, clock: Clock, events: CacheEvents) {
  return new GuardedStore(store, guard, {
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

/**
 * Log through `logger` unless the cache already has one (the Fastify plugin passes
 * `fastify.log` this way). Returns whether it was taken.
 */
export function useLogger(core: Core, logger: Logger): boolean {
  const log = core.log;
  if (log.logger !== undefined) return false;
  if (!isLogger(logger)) {
    throw new InvalidOptionError("logger", "expected an object with error, warn, info and debug");
  }
  log.logger = logger;
  log.detach = attachLogger(core.events, logger, core.clock);
  return true;
}

/** Release the stores' connections, once however many times it is asked. */
export function closeCore(core: Core): Promise<void> {
  core.closing ??= (async () => {
    const { l1, l2, bus, disposers } = core;
    for (const dispose of disposers.splice(0)) dispose();
    await bus?.close();
    l1?.clear();
    await l2?.store.disconnect?.();
  })();
  return core.closing;
}
