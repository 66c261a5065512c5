import type { Cache } from "cachet";
import { createCache, memoryStore } from "cachet";
import type { RedisStore, RedisStoreStatus } from "cachet/redis";
import type { FastifyBaseLogger } from "fastify";
import type { CacheStoreKind, DemoConfig } from "./config.js";
import { redact } from "./config.js";

/**
 * The remote store as `/health` reports it: `up` (answering), `down` (not connected or failing;
 * requests go to L1 or the upstream), `breaker-open` (skipped until a probe succeeds).
 */
export type RemoteState = "up" | "down" | "breaker-open";

/**
 * The invalidation bus (tiered only): `up` (other instances' invalidations arrive), `down` (its
 * subscription is lost; in-process copies live at most `CACHE_L1_MAX_TTL`).
 */
export type BusHealthState = "up" | "down";

/** What `/health` reports about the cache. */
export interface CacheHealth {
  /** The store in use (`none` when caching is off). */
  readonly store: CacheStoreKind;
  /** `ok`, or `degraded` while a remote store fails (requests then go to the upstream). */
  readonly state: "ok" | "degraded";
  /** The remote store (Redis), with `CACHE_STORE=redis` or `tiered`. */
  readonly redis?: RemoteState;
  /** The remote store's circuit breaker, when there is a remote store. */
  readonly breaker?: "closed" | "open" | "half-open";
  /** The Redis connection, with `CACHE_STORE=redis` or `tiered`. */
  readonly connection?: RedisStoreStatus;
  /** The fleet-wide lease, when there is a remote store. */
  readonly lease?: boolean;
  /** The invalidation bus, with `CACHE_STORE=tiered`. */
  readonly bus?: BusHealth;
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

const ERROR_LOG_INTERVAL_MS = 30_000;

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
 * Build the cache the demo runs on: an in-process memory store, Redis, both as two tiers, or
 * nothing. Store failures are logged (once per outage) and never stop the service: the cache
 * turns them into misses and the upstream answers.
 */
export async function createDemoCache(
  config: DemoConfig,
  log: FastifyBaseLogger,
): Promise<DemoCache> {
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
  if (config.cacheStore === "redis" || config.cacheStore === "tiered") {
    // Imported only when used: the memory-only demo never loads the Redis client.
    const { redisStore } = await import("cachet/redis");
    redis = redisStore({ url: config.redisUrl });
  }
  const tiered = config.cacheStore === "tiered";
  const cache = createCache({
    store: redis ?? memoryStore(),
    l1: tiered,
    l1MaxTtl: config.cacheL1MaxTtlMs,
    // Only the tiered store has in-process copies to keep coherent.
    bus: tiered,
    ttl: config.cacheTtlMs,
  });

  const where = redis ? `redis at ${redact(config.redisUrl ?? "")}` : "memory";
  let lastReport = Number.NEGATIVE_INFINITY;
  let breakerOpen = false;
  cache.on("error", ({ operation, error }) => {
    // One line per outage (or per half minute of one), not one per request.
    const now = Date.now();
    if (now - lastReport < ERROR_LOG_INTERVAL_MS) return;
    lastReport = now;
    log.warn(
      // The message says it all; a stack trace per outage would be noise.
      { operation, error: error instanceof Error ? error.message : String(error) },
      `cache store unavailable (${where}): requests go to the upstream until it recovers`,
    );
  });
  cache.on("breaker", ({ state }) => {
    if (state === "open" && !breakerOpen) {
      breakerOpen = true;
      log.warn(`cache store circuit open (${where}): skipping it until a probe succeeds`);
    } else if (state === "closed" && breakerOpen) {
      breakerOpen = false;
      lastReport = Number.NEGATIVE_INFINITY;
      log.info(`cache store recovered (${where})`);
    }
  });

  // The bus's health, from what the cache tells: a subscription that failed or was lost is
  // `down` until the next resubscription (which drops the in-process tier: a `bus` event).
  let busLost = false;
  let resets = 0;
  let lastReset: "reconnected" | "gap" | undefined;
  if (tiered) {
    cache.on("bus", ({ state }) => {
      if (state === "reconnected" || state === "gap") {
        resets++;
        lastReset = state;
        if (state === "reconnected") busLost = false;
        log.info(
          `cache bus ${state === "gap" ? "lost a message" : "resubscribed"}: in-process tier dropped`,
        );
      } else {
        busLost = true;
      }
    });
    cache.on("error", ({ operation }) => {
      if (operation === "bus.subscribe") busLost = true;
    });
  }

  return {
    kind: config.cacheStore,
    cache,
    async probe() {
      await cache.get("cachet-demo:probe");
    },
    health() {
      const breaker = cache.storeState;
      const connection = redis?.status;
      if (!redis) return { store: config.cacheStore, state: "ok" };
      const remote: RemoteState =
        breaker !== undefined && breaker !== "closed"
          ? "breaker-open"
          : connection === "ready" || connection === "idle"
            ? "up"
            : "down";
      const bus: BusHealth | undefined = tiered
        ? {
            state: !busLost && remote === "up" && connection === "ready" ? "up" : "down",
            resets,
            ...(lastReset ? { lastReset } : {}),
          }
        : undefined;
      return {
        store: config.cacheStore,
        state: remote === "up" ? "ok" : "degraded",
        redis: remote,
        ...(breaker ? { breaker } : {}),
        ...(connection ? { connection } : {}),
        lease: config.cacheLease,
        ...(bus ? { bus } : {}),
      };
    },
    close: () => cache.close(),
  };
}
