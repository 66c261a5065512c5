/**
 * Prometheus metrics for a cache, on prom-client (`cachet/prometheus`). Everything is built on
 * the cache's events: nothing is measured unless this module listens, and nothing here runs on
 * a request's path except a counter increment per event.
 *
 * Labels are bounded by construction: namespaces and route patterns (never URLs or keys),
 * tiers, outcomes, reasons and operations from fixed sets. Namespace and route values past a
 * configurable number are counted under `other`.
 */
import type { Registry } from "prom-client";
import { Counter, Gauge, register as globalRegister, Histogram } from "prom-client";
import type { Cache } from "../cache.js";
import { InvalidOptionError } from "../errors.js";
import { namespaceOf } from "../events.js";
import { NAMESPACE_TAG_PREFIX, positiveInt } from "../options.js";

/** Options of {@link prometheusMetrics}. */
export interface PrometheusOptions {
  /** The registry to register the metrics in. @default prom-client's global `register` */
  register?: Registry | undefined;
  /** Prepended to every metric name. @default "cachet_" */
  prefix?: string | undefined;
  /**
   * Distinct `namespace` label values kept; further namespaces are counted as `other`, so that
   * namespaces made from data (one per tenant, …) cannot explode the series count.
   * @default 50
   */
  maxNamespaces?: number | undefined;
  /** Distinct `route` label values kept; further routes are counted as `other`. @default 200 */
  maxRoutes?: number | undefined;
  /** Buckets (seconds) of the remote-store latency histogram. @default 0.0005 … 1 */
  storeBuckets?: readonly number[] | undefined;
  /** Buckets (seconds) of the factory (origin) latency histogram. @default 0.005 … 30 */
  factoryBuckets?: readonly number[] | undefined;
}

/** What {@link prometheusMetrics} returns. */
export interface CachetMetrics {
  /** The registry the metrics live in: serve `await register.metrics()` on `/metrics`. */
  readonly register: Registry;
  /** Stop observing the cache. The metrics stay registered (their values are kept). */
  stop(): void;
}

const STORE_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1];
const FACTORY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
/** The label value of the root namespace (not a valid namespace name, so no collision). */
const ROOT = "(root)";
const OTHER = "other";
const METHODS = new Set(["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]);
const BREAKER_VALUE = { closed: 0, "half-open": 1, open: 2 } as const;

/** Keeps at most `max` distinct values; the rest become `other`. */
class BoundedLabel {
  readonly #seen = new Set<string>();
  readonly #max: number;

  constructor(max: number) {
    this.#max = max;
  }

  of(value: string): string {
    if (this.#seen.has(value)) return value;
    if (this.#seen.size >= this.#max) return OTHER;
    this.#seen.add(value);
    return value;
  }
}

interface MetricSet {
  readonly caches: Set<Cache>;
  readonly namespaces: BoundedLabel;
  readonly routes: BoundedLabel;
  readonly hits: Counter<"namespace" | "tier">;
  readonly misses: Counter<"namespace">;
  readonly stale: Counter<"namespace" | "tier" | "reason">;
  readonly writes: Counter<"namespace">;
  readonly deletes: Counter<"namespace">;
  readonly invalidations: Counter<"kind" | "namespace" | "soft">;
  readonly factoryErrors: Counter<"namespace" | "kind">;
  readonly factoryDuration: Histogram<"namespace" | "outcome">;
  readonly storeDuration: Histogram<"store" | "operation" | "outcome">;
  readonly errors: Counter<"operation" | "code">;
  readonly breakerTransitions: Counter<"store" | "state">;
  readonly outages: Counter<"store">;
  readonly leases: Counter<"namespace" | "outcome">;
  readonly leaseWait: Histogram<"namespace" | "outcome">;
  readonly evictions: Counter<"tier">;
  readonly oversize: Counter<"source">;
  readonly busResets: Counter<"reason">;
  readonly http: Counter<"route" | "method" | "outcome" | "reason">;
}

/** One metric set per registry and prefix: several caches may report into the same one. */
const sets = new WeakMap<Registry, Map<string, MetricSet>>();

/**
 * Observe `cache` (and every namespace and HTTP cache on it) into Prometheus metrics.
 *
 * @example
 * import { Registry } from "prom-client";
 * import { prometheusMetrics } from "cachet/prometheus";
 * const register = new Registry();
 * prometheusMetrics(cache, { register });
 * app.get("/metrics", async (_req, reply) =>
 *   reply.type(register.contentType).send(await register.metrics()));
 *
 * See docs/operations.md for what each metric means and the alerts to set.
 */
export function prometheusMetrics(cache: Cache, options: PrometheusOptions = {}): CachetMetrics {
  if (options === null || typeof options !== "object") {
    throw new InvalidOptionError("prometheusMetrics(options)", "expected an object");
  }
  if (typeof cache?.on !== "function" || typeof cache.health !== "function") {
    throw new InvalidOptionError("prometheusMetrics(cache)", "expected a cache from createCache()");
  }
  const register = options.register ?? globalRegister;
  const prefix = options.prefix ?? "cachet_";
  if (typeof prefix !== "string" || !/^[a-zA-Z_:][a-zA-Z0-9_:]*$/.test(`${prefix}x`)) {
    throw new InvalidOptionError(
      "prefix",
      `expected a Prometheus metric name prefix, got ${JSON.stringify(prefix)}`,
    );
  }
  const maxNamespaces = positiveInt(options.maxNamespaces, "maxNamespaces", 50);
  const maxRoutes = positiveInt(options.maxRoutes, "maxRoutes", 200);
  let byPrefix = sets.get(register);
  if (!byPrefix) {
    byPrefix = new Map();
    sets.set(register, byPrefix);
  }
  let m = byPrefix.get(prefix);
  if (!m) {
    m = createMetrics(register, prefix, options, maxNamespaces, maxRoutes);
    byPrefix.set(prefix, m);
  }
  const metrics = m;
  metrics.caches.add(cache);

  const ns = (key: string): string => {
    const path = namespaceOf(key);
    return path === "" ? ROOT : metrics.namespaces.of(path);
  };
  const offs = [
    cache.on("hit", ({ key, tier }) => metrics.hits.inc({ namespace: ns(key), tier })),
    cache.on("miss", ({ key }) => metrics.misses.inc({ namespace: ns(key) })),
    cache.on("stale", ({ key, tier, reason }) =>
      metrics.stale.inc({ namespace: ns(key), tier, reason }),
    ),
    cache.on("set", ({ key }) => metrics.writes.inc({ namespace: ns(key) })),
    cache.on("delete", ({ key }) => metrics.deletes.inc({ namespace: ns(key) })),
    cache.on("invalidate", ({ tags, kind, soft }) => {
      if (kind === "namespace") {
        for (const tag of tags) {
          const path = tag.slice(NAMESPACE_TAG_PREFIX.length);
          const namespace = path === "" ? ROOT : metrics.namespaces.of(path);
          metrics.invalidations.inc({ kind, namespace, soft: String(soft) });
        }
        return;
      }
      // Tags and paths are data: counted by kind only, never as labels.
      metrics.invalidations.inc({ kind, namespace: "", soft: String(soft) }, tags.length);
    }),
    cache.on("factory", ({ key, duration, outcome }) => {
      const namespace = ns(key);
      metrics.factoryDuration.observe({ namespace, outcome }, duration / 1000);
      if (outcome !== "ok") metrics.factoryErrors.inc({ namespace, kind: outcome });
    }),
    cache.on("store", ({ store, operation, outcome, duration }) =>
      metrics.storeDuration.observe({ store, operation, outcome }, duration / 1000),
    ),
    cache.on("error", ({ operation, error }) =>
      metrics.errors.inc({ operation: boundedOperation(operation), code: errorCode(error) }),
    ),
    cache.on("breaker", ({ store, state }) => metrics.breakerTransitions.inc({ store, state })),
    cache.on("store-health", ({ store, state }) => {
      if (state === "down") metrics.outages.inc({ store });
    }),
    cache.on("lease", ({ key, outcome, waited }) => {
      const namespace = ns(key);
      metrics.leases.inc({ namespace, outcome });
      if (waited !== undefined) metrics.leaseWait.observe({ namespace, outcome }, waited / 1000);
    }),
    cache.on("evict", ({ tier }) => metrics.evictions.inc({ tier })),
    cache.on("oversize", ({ source }) => metrics.oversize.inc({ source })),
    cache.on("bus", ({ state }) => metrics.busResets.inc({ reason: state })),
    cache.on("http", ({ route, method, outcome, reason }) =>
      metrics.http.inc({
        route: metrics.routes.of(route),
        method: METHODS.has(method) ? method : OTHER,
        outcome,
        reason: reason === undefined ? "" : boundedReason(reason),
      }),
    ),
  ];
  let stopped = false;
  return {
    register,
    stop() {
      if (stopped) return;
      stopped = true;
      for (const off of offs) off();
      metrics.caches.delete(cache);
    },
  };
}

function createMetrics(
  register: Registry,
  prefix: string,
  options: PrometheusOptions,
  maxNamespaces: number,
  maxRoutes: number,
): MetricSet {
  const registers = [register];
  const caches = new Set<Cache>();
  const counter = <L extends string>(name: string, help: string, labelNames: readonly L[]) =>
    new Counter<L>({ name: prefix + name, help, labelNames, registers });
  const histogram = <L extends string>(
    name: string,
    help: string,
    labelNames: readonly L[],
    buckets: readonly number[],
  ) =>
    new Histogram<L>({ name: prefix + name, help, labelNames, buckets: [...buckets], registers });

  // Gauges read the caches' state when scraped (collect), never on a request's path.
  new Gauge({
    name: `${prefix}memory_entries`,
    help: "Entries held in the in-process (memory) tier.",
    registers,
    collect() {
      this.set(sum(caches, (h) => h.l1?.entries));
    },
  });
  new Gauge({
    name: `${prefix}memory_bytes`,
    help: "Bytes held in the in-process (memory) tier.",
    registers,
    collect() {
      this.set(sum(caches, (h) => h.l1?.bytes));
    },
  });
  new Gauge({
    name: `${prefix}memory_max_bytes`,
    help: "Bound of the in-process (memory) tier, in bytes.",
    registers,
    collect() {
      this.set(sum(caches, (h) => h.l1?.maxBytes));
    },
  });
  new Gauge<"store">({
    name: `${prefix}breaker_state`,
    help: "Circuit breaker of the remote store: 0 closed, 1 half-open (probing), 2 open.",
    labelNames: ["store"],
    registers,
    collect() {
      this.reset();
      for (const cache of caches) {
        const l2 = cache.health().l2;
        if (l2) this.set({ store: l2.store }, BREAKER_VALUE[l2.breaker]);
      }
    },
  });
  new Gauge<"store">({
    name: `${prefix}store_up`,
    help: "1 while calls to the remote store succeed, 0 while it is unreachable.",
    labelNames: ["store"],
    registers,
    collect() {
      this.reset();
      for (const cache of caches) {
        const l2 = cache.health().l2;
        if (l2) this.set({ store: l2.store }, l2.reachable ? 1 : 0);
      }
    },
  });
  new Gauge({
    name: `${prefix}bus_up`,
    help: "1 while the cross-instance bus receives other instances' changes (absent without a bus).",
    registers,
    collect() {
      this.reset();
      let seen = false;
      let up = 1;
      for (const cache of caches) {
        const bus = cache.health().bus;
        if (!bus) continue;
        seen = true;
        if (bus.state === "down") up = 0;
      }
      if (seen) this.set(up);
    },
  });

  return {
    caches,
    namespaces: new BoundedLabel(maxNamespaces),
    routes: new BoundedLabel(maxRoutes),
    hits: counter("hits_total", "Lookups answered with a fresh value, by tier.", [
      "namespace",
      "tier",
    ]),
    misses: counter("misses_total", "Lookups that found no usable value.", ["namespace"]),
    stale: counter(
      "stale_total",
      "Stale values served, by reason (revalidating, error, timeout, backoff).",
      ["namespace", "tier", "reason"],
    ),
    writes: counter("writes_total", "Values written.", ["namespace"]),
    deletes: counter("deletes_total", "Keys deleted.", ["namespace"]),
    invalidations: counter(
      "invalidations_total",
      "Invalidations: tags and paths (counted, never labelled) and namespace clears.",
      ["kind", "namespace", "soft"],
    ),
    factoryErrors: counter(
      "factory_errors_total",
      "Factory (origin) runs that failed (error) or exceeded hardTimeout (hard-timeout).",
      ["namespace", "kind"],
    ),
    factoryDuration: histogram(
      "factory_duration_seconds",
      "Duration of factory (origin) runs, by outcome (ok, error, hard-timeout).",
      ["namespace", "outcome"],
      options.factoryBuckets ?? FACTORY_BUCKETS,
    ),
    storeDuration: histogram(
      "store_duration_seconds",
      "Duration of remote-store calls; get by outcome hit/miss is the remote tier's hit/miss latency.",
      ["store", "operation", "outcome"],
      options.storeBuckets ?? STORE_BUCKETS,
    ),
    errors: counter(
      "errors_total",
      "Failures the cache carried on through (store calls, corrupt entries, serializer, bus), by error code.",
      ["operation", "code"],
    ),
    breakerTransitions: counter(
      "breaker_transitions_total",
      "Circuit breaker state changes of the remote store.",
      ["store", "state"],
    ),
    outages: counter(
      "store_outages_total",
      "Times the remote store became unreachable (first failure after a healthy period).",
      ["store"],
    ),
    leases: counter(
      "lease_total",
      "Fleet-wide lease outcomes (acquired, waiting, landed, timed-out, took-over).",
      ["namespace", "outcome"],
    ),
    leaseWait: histogram(
      "lease_wait_seconds",
      "Time spent waiting for another instance's value, by how the wait ended.",
      ["namespace", "outcome"],
      FACTORY_BUCKETS,
    ),
    evictions: counter(
      "evictions_total",
      "Entries evicted from the in-process tier to stay within its bound.",
      ["tier"],
    ),
    oversize: counter(
      "oversize_total",
      "Values not stored because they exceed maxEntrySize (l1: memory tier; http: response).",
      ["source"],
    ),
    busResets: counter(
      "bus_resets_total",
      "Times the bus dropped the in-process tier (reconnected, gap).",
      ["reason"],
    ),
    http: counter(
      "http_requests_total",
      "HTTP requests by route pattern and outcome (hit, stale, collapsed, refreshed, stored, not-storable, miss, bypass, method).",
      ["route", "method", "outcome", "reason"],
    ),
  };
}

type Health = ReturnType<Cache["health"]>;

function sum(caches: Set<Cache>, pick: (health: Health) => number | undefined): number {
  let total = 0;
  for (const cache of caches) total += pick(cache.health()) ?? 0;
  return total;
}

/** Operations come from cachet itself; anything unexpected is folded into `other`. */
function boundedOperation(operation: string): string {
  return /^[a-zA-Z.]{1,32}$/.test(operation) ? operation : OTHER;
}

/** Reasons are tokens (`status-500`, `private`, `stale-if-error`, …); anything else is `other`. */
function boundedReason(reason: string): string {
  return /^[a-z0-9-]{1,32}$/.test(reason) ? reason : OTHER;
}

function errorCode(error: unknown): string {
  const code = error instanceof Error ? (error as { code?: unknown }).code : undefined;
  return typeof code === "string" && /^[A-Z0-9_]{1,40}$/.test(code) ? code : "unknown";
}
