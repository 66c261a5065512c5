import type { Cache } from "cachet";
import { createCache, memoryStore } from "cachet";
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

  const cache =
    config.cacheStore === "redis"
      ? await redisCache(config)
      : createCache({ store: memoryStore(), ttl: config.cacheTtlMs });

  let failing = false;
  const where =
    config.cacheStore === "redis" ? `redis at ${redact(config.redisUrl ?? "")}` : "memory";
  cache.on("error", ({ operation, error }) => {
    if (failing) return; // one log line per outage, not one per request
    failing = true;
    log.warn(
      { err: error, operation },
      `cache store unavailable (${where}): serving from the upstream until it recovers`,
    );
  });
  cache.on("breaker", ({ state }) => {
    if (state === "closed" && failing) {
      failing = false;
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
      const degraded = breaker !== undefined && breaker !== "closed";
      return {
        store: config.cacheStore,
        state: degraded || failing ? "degraded" : "ok",
        ...(breaker ? { breaker } : {}),
      };
    },
    close: () => cache.close(),
  };
}

async function redisCache(config: DemoConfig): Promise<Cache> {
  throw new Error(
    `CACHE_STORE=redis (REDIS_URL=${redact(config.redisUrl ?? "")}): the Redis store is not available in this build yet`,
  );
}
