// Type test: compiled with `tsc --noEmit` by test/types.test.ts. Every `@ts-expect-error`
// line must be an error; everything else must compile. It guards the public types.
import Fastify from "fastify";
import { Registry } from "prom-client";
import { cachetFastify } from "../../src/adapters/fastify.js";
import type {
  CacheEventMap,
  CacheHealth,
  Entry,
  EntryOptions,
  HttpOutcome,
  Logger,
  Store,
} from "../../src/index.js";
import { cached, createCache, memoryStore } from "../../src/index.js";
import { prometheusMetrics } from "../../src/metrics/prometheus.js";
import { cachetTracing } from "../../src/otel.js";

const cache = createCache({ ttl: "60s", store: memoryStore({ maxSize: 1024 * 1024 }) });

// getOrSet's result follows the factory, sync or async.
export const n: Promise<number> = cache.getOrSet("k", () => 1);
export const m: Promise<{ a: string }> = cache.getOrSet("k", async () => ({ a: "x" }));
// @ts-expect-error the result is a number, not a string
export const wrong: Promise<string> = cache.getOrSet("k", () => 1);

// Durations: milliseconds or strings.
createCache({ ttl: 1_000, staleWhileRevalidate: "1m", hardTimeout: "2s" });
// @ts-expect-error a ttl is a number or a string
createCache({ ttl: true });
// @ts-expect-error unknown options are rejected
createCache({ tll: "60s" });

// wrap keeps the argument and result types.
const add = cache.wrap(async (a: number, b: string) => a + b.length, { name: "add" });
export const added: Promise<number> = add(1, "xy");
// @ts-expect-error the first argument is a number
add("1", "xy");

// The factory gets a context with an AbortSignal.
cache.getOrSet("k", ({ signal }) => fetch("http://127.0.0.1:1/", { signal }).then((r) => r.status));

// Decorators: async methods only.
export class Service {
  @cache.cached({ ttl: "1m" })
  async list(userId: number): Promise<number[]> {
    return [userId];
  }

  @cached({ cache: () => cache, ttl: "1m" })
  async one(id: string): Promise<string> {
    return id;
  }
}
export class NotAsync {
  // @ts-expect-error a cached method must return a promise
  @cache.cached({ ttl: "1m" })
  sync(x: number): number {
    return x;
  }
}

// Events are typed.
cache.on("hit", (e: CacheEventMap["hit"]) => e.tier satisfies "l1" | "l2");
// @ts-expect-error there is no such event
cache.on("nope", () => {});
cache.on("http", (e) => e.outcome satisfies HttpOutcome);
cache.on("factory", (e) => e.outcome satisfies "ok" | "error" | "hard-timeout");
cache.on("store", (e) => e.duration satisfies number);
// @ts-expect-error an http event's route is a string, not a URL object
cache.on("http", (e) => e.route satisfies URL);

// Observability: a pino-compatible logger, health, metrics and traces.
export const logged = createCache({
  logger: { error() {}, warn() {}, info() {}, debug() {} } satisfies Logger,
});
// @ts-expect-error a logger needs error, warn, info and debug
createCache({ logger: { info() {} } });
export const health: CacheHealth = cache.health();
health.status satisfies "ok" | "degraded";
prometheusMetrics(cache, { register: new Registry(), maxNamespaces: 10 }).stop();
// @ts-expect-error the register is a prom-client Registry
prometheusMetrics(cache, { register: {} });
cachetTracing({ keys: false, spans: { lease: false } }).stop();

// A store needs get, set and delete.
export const store: Store = {
  name: "custom",
  get: async () => undefined,
  set: async () => {},
  delete: async () => true,
};
// @ts-expect-error delete is required
export const incomplete: Store = { name: "x", get: async () => undefined, set: async () => {} };

export type E = Entry<number>;
export const options: EntryOptions = { tags: ["a"], lease: { ttl: "10s" }, jitter: 0.1 };

// The Fastify route config is typed.
const app = Fastify();
await app.register(cachetFastify, { cache });
app.get(
  "/a",
  { config: { cache: { ttl: "60s", vary: ["accept-language"], tags: ["a"] } } },
  () => "a",
);
app.get("/b", { config: { cache: true } }, () => "b");
// @ts-expect-error ttl is a duration
app.get("/c", { config: { cache: { ttl: {} } } }, () => "c");
export const invalidated: Promise<void> = app.cachet.invalidateTags(["a"]);
