import type { Cache } from "cachet";
import { createCache, memoryStore } from "cachet";
import type { RedisStore, RedisStoreStatus } from "cachet/redis";
import type { FastifyBaseLogger } from "fastify";
import type { CacheStoreKind, DemoConfig } from "./config.js";
import { redact } from "./config.js";

/** What `/health` reports about the cache. */
export interface CacheHealth {
  /** The store in use (`none` when caching is off). */
  readonly store: CacheStoreKind;
  /** `ok`, or `degraded` while a remote store fails (requests then go to the upstream). */
  readonly state: "ok" | "degraded";
  /** The remote store's circuit breaker, when there is a remote store. */
  readonly breaker?: "closed" | "open" | "half-open";
  /** The Redis connection, with `CACHE_STORE=redis`. */
  readonly connection?: RedisStoreStatus;
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
 * Build the cache the demo runs on: an in-process memory store, Redis, or nothing. Store
 * failures are logged (once per outage) and never stop the service: the cache turns them into
 * misses and the upstream answers.
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
  if (config.cacheStore === "redis") {
    // Imported only when used: the memory-only demo never loads the Redis client.
    const { redisStore } = await import("cachet/redis");
    redis = redisStore({ url: config.redisUrl });
  }
  const cache = createCache({ store: redis ?? memoryStore(), ttl: config.cacheTtlMs });

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

  return {
    kind: config.cacheStore,
    cache,
    async probe() {
      await cache.get("cachet-demo:probe");
    },
    health() {
      const breaker = cache.storeState;
      const connection = redis?.status;
      const degraded =
        (breaker !== undefined && breaker !== "closed") ||
        (connection !== undefined && connection !== "ready" && connection !== "idle");
      return {
        store: config.cacheStore,
        state: degraded ? "degraded" : "ok",
        ...(breaker ? { breaker } : {}),
        ...(connection ? { connection } : {}),
      };
    },
    close: () => cache.close(),
  };
}
