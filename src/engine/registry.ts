import type { Cache } from "../cache.js";
import type { Coordinator } from "./coordinator.js";

/**
 * The engine behind each public `Cache` (a namespace view). Kept outside the class so that
 * the public type shows only the public API; the HTTP cache, the CLI and the decorators reach
 * the engine through {@link engineOf}.
 */
const engines = new WeakMap<Cache, Coordinator>();

export function bindEngine(cache: Cache, engine: Coordinator): void {
  engines.set(cache, engine);
}

/** Whether `value` is a cache made by `createCache` (or one of its namespaces). */
export function isCache(value: unknown): value is Cache {
  return typeof value === "object" && value !== null && engines.has(value as Cache);
}

/** The engine of `cache`; throws for an object that is not a cache made by `createCache`. */
export function engineOf(cache: Cache): Coordinator {
  const engine = engines.get(cache);
  if (engine === undefined) {
    throw new TypeError("expected a cache made by createCache()");
  }
  return engine;
}
