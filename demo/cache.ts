import type { Cache, Store } from "cachet";
import { createCache, memoryStore } from "cachet";
import type { RedisStore, RedisStoreStatus } from "cachet/redis";
import type { CacheStoreKind, DemoConfig } from "./config.js";

/**
 * The remote store as `/health` reports it: `up` (answering), `down` (not connected or failing;
 * requests go to L1 or the upstream), `breaker-open` (skipped until a probe succeeds).
 */
export type RemoteState = "up" | "down" | "breaker-open";

/**
 * The invalidation bus (tiered only): `up` (other instances' invalidations arrive), `down` (its
 * subscription is lost; in-process copies live at most `CACHE_L1_MAX_TTL`), `idle` or
 * `connecting` before it first subscribed.
 */
export type BusHealthState = "idle" | "connecting" | "up" | "down";

/** What `/health` reports about the cache. */
export interface CacheHealth {
  /** The store in use (`none` when caching is off). */
  readonly store: CacheStoreKind;
  /** `ok`, or `degraded` while a remote store fails (requests then go to the upstream). */
  readonly state: "ok" | "degraded";
  /** The remote store (Redis), with `CACHE_STORE=redis` or `tiered`. */
  readonly redis?: RemoteState;
  /** The remote store, whichever it is (Redis, Memcached, DynamoDB). */
  readonly remote?: RemoteState;
  /** The remote store's circuit breaker, when there is a remote store. */
  readonly breaker?: "closed" | "open" | "half-open";
  /**
   * The remote store's connection: Redis's states, or for Memcached and DynamoDB `idle`,
   * `ready` (the last call reached it), `failing` or `closed`.
   */
  readonly connection?: RedisStoreStatus | "failing";
  /** The fleet-wide lease, when there is a remote store. */
  readonly lease?: boolean;
  /** The invalidation bus, with `CACHE_STORE=tiered`. */
  readonly bus?: BusHealth;
  /** What is degraded and what it means, one sentence each (from `cache.health()`). */
  readonly problems?: readonly string[];
}

export interface BusHealth {
  readonly state: BusHealthState;
  /**
   * How many times this instance dropped its in-process tier because bus messages may have
   * been lost (a resubscription after a disconnection, or a gap in a sender's messages).
   */
  readonly resets: number;
  /** Why the last reset happened. */
  readonly lastReset?: "reconnected" | "gap";
}

/** The demo's cache, built from the configuration; `cache` is undefined when caching is off. */
export interface DemoCache {
  readonly kind: CacheStoreKind;
  readonly cache: Cache | undefined;
  /** Touch the store once, so that an unreachable store is reported at start-up. */
  probe(): Promise<void>;
  health(): CacheHealth;
  close(): Promise<void>;
}

/**
 * Build the cache the demo runs on: an in-process memory store, Redis, both as two tiers,
 * Memcached, DynamoDB, or nothing. Store failures never stop the service: the cache turns them into misses and the
 * upstream answers.
 */
export async function createDemoCache(config: DemoConfig): Promise<DemoCache> {
  if (config.cacheStore === "none") {
    return {
      kind: "none",
      cache: undefined,
      probe: async () => {},
      health: () => ({ store: "none", state: "ok" }),
      close: async () => {},
    };
  }

  let redis: RedisStore | undefined;
  let remote: Store | undefined;
  /** Run before the first probe: create the DynamoDB table on a local endpoint. */
  let prepare: (() => Promise<void>) | undefined;
  if (config.cacheStore === "redis" || config.cacheStore === "tiered") {
    // Imported only when used: the memory-only demo never loads the Redis client.
    const { redisStore } = await import("cachet/redis");
    redis = redisStore({ url: config.redisUrl });
    remote = redis;
  } else if (config.cacheStore === "memcached") {
    const { memcachedStore } = await import("cachet/memcached");
    remote = memcachedStore({ servers: config.memcachedServers, ...storeTimeouts(config) });
  } else if (config.cacheStore === "dynamodb" && config.dynamodb) {
    const { dynamodbStore, createDynamoTable } = await import("cachet/dynamodb");
    const { table, endpoint, region, localCredentials } = config.dynamodb;
    const clientConfig = {
      ...(endpoint ? { endpoint } : {}),
      ...(region ? { region } : {}),
      ...(localCredentials
        ? { credentials: { accessKeyId: "cachet-local", secretAccessKey: "cachet-local" } }
        : {}),
    };
    remote = dynamodbStore({ table, clientConfig, ...storeTimeouts(config) });
    if (endpoint) {
      // A local DynamoDB starts empty: make the table (a no-op when it exists). Never on AWS,
      // where tables are infrastructure (docs/stores.md has the AWS CLI command). A failure
      // leaves the store failing, which /health and the cache's logs report.
      prepare = () =>
        createDynamoTable({ table, clientConfig, wait: 5_000 }).then(
          () => {},
          () => {},
        );
    }
  }
  const tiered = config.cacheStore === "tiered";
  const cache = createCache({
    store: remote ?? memoryStore(),
    l1: tiered,
    l1MaxTtl: config.cacheL1MaxTtlMs,
    storeTimeout: config.cacheStoreTimeoutMs,
    // Only the tiered store has in-process copies to keep coherent.
    bus: tiered,
    ttl: config.cacheTtlMs,
  });

  // Store outages, breaker changes and bus resets are logged by the cache itself, through
  // the Fastify plugin (fastify.log): one line per change of state, never one per request.
  let resets = 0;
  let lastReset: "reconnected" | "gap" | undefined;
  cache.on("bus", ({ state }) => {
    resets++;
    lastReset = state;
  });

  return {
    kind: config.cacheStore,
    cache,
    async probe() {
      await prepare?.();
      await cache.get("cachet-demo:probe");
    },
    health() {
      const health = cache.health();
      const l2 = health.l2;
      if (!l2) return { store: config.cacheStore, state: health.status };
      const remote: RemoteState =
        l2.breaker !== "closed" ? "breaker-open" : l2.reachable ? "up" : "down";
      return {
        store: config.cacheStore,
        state: health.status,
        ...(redis ? { redis: remote } : {}),
        remote,
        breaker: l2.breaker,
        ...(l2.connection ? { connection: l2.connection as RedisStoreStatus | "failing" } : {}),
        lease: config.cacheLease,
        ...(health.bus
          ? { bus: { state: health.bus.state, resets, ...(lastReset ? { lastReset } : {}) } }
          : {}),
        ...(health.problems.length > 0 ? { problems: health.problems } : {}),
      };
    },
    close: () => cache.close(),
  };
}

/**
 * The Memcached and DynamoDB stores' own timeouts: never shorter than the cache's
 * (`CACHE_STORE_TIMEOUT`), so that the cache's guard is what decides when a call took too long.
 */
function storeTimeouts(config: DemoConfig): { timeout: number; connectTimeout: number } {
  const ms = Math.max(1_000, config.cacheStoreTimeoutMs);
  return { timeout: ms, connectTimeout: ms };
}
