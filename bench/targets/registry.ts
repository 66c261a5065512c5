/**
 * The bench's targets: what each one is, and how it is set up. Metadata only (no library is
 * imported here); each target's server lives in the module named by `module` and runs in its
 * own process (see `child.ts`).
 */

export type Family = "limit" | "nocache" | "cachet" | "peer";
/**
 * Where a target keeps its entries: nowhere, in its process, in the bench's Redis (alone or
 * behind an in-process tier), in the bench's 3-master Redis Cluster, or in its memcached.
 */
export type Storage = "none" | "memory" | "redis" | "tiered" | "cluster" | "memcached";

export interface TargetInfo {
  readonly name: string;
  readonly family: Family;
  readonly framework: "fastify" | "express" | "hono";
  readonly storage: Storage;
  /** How the target is set up, in one sentence (printed in RESULTS.md and bench/README.md). */
  readonly setup: string;
  /** The module under `bench/targets/` that builds it. */
  readonly module:
    | "basic"
    | "cachet"
    | "bentocache"
    | "cache-manager"
    | "acd"
    | "apicache"
    | "article";
}

export const TARGETS: readonly TargetInfo[] = [
  {
    name: "limit",
    family: "limit",
    framework: "fastify",
    storage: "none",
    setup:
      "Fastify answering a constant, pre-serialized Buffer of the same body (the physical limit of a hit).",
    module: "basic",
  },
  {
    name: "limit-aa",
    family: "limit",
    framework: "fastify",
    storage: "none",
    setup: "A second, identical `limit` process: `limit-aa / limit` is the A/A noise figure.",
    module: "basic",
  },
  {
    name: "limit-headers",
    family: "limit",
    framework: "fastify",
    storage: "none",
    setup:
      "`limit` answered from an `onRequest` hook, as a cachet hit is, with the headers a hit carries (`ETag`, `Age`, `Vary`, `Cache-Status`) and no cache: what Fastify's reply path charges for them.",
    module: "basic",
  },
  {
    name: "limit-redis",
    family: "limit",
    framework: "fastify",
    storage: "redis",
    setup:
      "`limit-headers` with the body read from Redis on every request (node-redis, one `GET` of the body's bytes, Buffer replies, no per-command timeout; a miss stores the body) and no cache logic: the floor of any hit served from Redis.",
    module: "basic",
  },
  {
    name: "limit-express",
    family: "limit",
    framework: "express",
    storage: "none",
    setup:
      "Express 5 answering the constant Buffer (`res.send`, default settings): Express's own limit.",
    module: "basic",
  },
  {
    name: "limit-hono",
    family: "limit",
    framework: "hono",
    storage: "none",
    setup: "Hono on @hono/node-server answering the constant Buffer: Hono's own limit.",
    module: "basic",
  },
  {
    name: "nocache",
    family: "nocache",
    framework: "fastify",
    storage: "none",
    setup:
      "Fastify proxying every request to the upstream (fetch, JSON.parse, the object returned).",
    module: "basic",
  },
  {
    name: "cachet-memory",
    family: "cachet",
    framework: "fastify",
    storage: "memory",
    setup:
      '`createCache({ ttl: "60s" })` (memory store) + `cachet/fastify`, route `config: { cache: { ttl: "60s" } }`.',
    module: "cachet",
  },
  {
    name: "cachet-redis",
    family: "cachet",
    framework: "fastify",
    storage: "redis",
    setup:
      '`createCache({ store: redisStore({ url, prefix }), lease: true, ttl: "60s" })` (L2 only; a key prefix per target, as the targets share one Redis) + `cachet/fastify`.',
    module: "cachet",
  },
  {
    name: "cachet-tiered",
    family: "cachet",
    framework: "fastify",
    storage: "tiered",
    setup:
      '`createCache({ store: redisStore({ url, prefix }), l1: true, lease: true, ttl: "60s" })` (memory in front of Redis, bus on) + `cachet/fastify`.',
    module: "cachet",
  },
  {
    name: "cachet-cluster",
    family: "cachet",
    framework: "fastify",
    storage: "cluster",
    setup:
      '`createCache({ store: redisStore({ cluster: { rootNodes }, prefix }), lease: true, ttl: "60s" })` on a local 3-master Redis Cluster (no replicas; `rootNodes` the three masters as `{ url }`), L2 only like `cachet-redis` + `cachet/fastify`.',
    module: "cachet",
  },
  {
    name: "cachet-memcached",
    family: "cachet",
    framework: "fastify",
    storage: "memcached",
    setup:
      '`createCache({ store: memcachedStore({ servers, prefix }), lease: true, ttl: "60s" })` on a local memcached 1.6 (default threads, `-m 64`), L2 only like `cachet-redis` (lease by `ADD`, waiters poll; no bus) + `cachet/fastify`.',
    module: "cachet",
  },
  {
    name: "cachet-express",
    family: "cachet",
    framework: "express",
    storage: "memory",
    setup:
      '`cachetExpress({ cache: createCache({ ttl: "60s" }) })`, `app.use(cached.invalidator())`, `cached({ ttl: "60s" })` on the route.',
    module: "cachet",
  },
  {
    name: "cachet-hono",
    family: "cachet",
    framework: "hono",
    storage: "memory",
    setup:
      '`cachetHono({ cache: createCache({ ttl: "60s" }), app })`, `app.use(cached.invalidator())`, `cached({ ttl: "60s" })` on the route; @hono/node-server.',
    module: "cachet",
  },
  {
    name: "bentocache-memory",
    family: "peer",
    framework: "fastify",
    storage: "memory",
    setup:
      "`bentostore().useL1Layer(memoryDriver({ maxSize: '100mb' }))`, `bento.getOrSet({ key, factory, ttl: '60s' })`; the object returned to Fastify.",
    module: "bentocache",
  },
  {
    name: "bentocache-tiered",
    family: "peer",
    framework: "fastify",
    storage: "tiered",
    setup:
      "`.useL1Layer(memoryDriver({ maxSize: '100mb' })).useL2Layer(redisDriver({ connection })).useBus(redisBusDriver({ connection }))` (ioredis), `getOrSet`.",
    module: "bentocache",
  },
  {
    name: "cache-manager-memory",
    family: "peer",
    framework: "fastify",
    storage: "memory",
    setup:
      "cache-manager 7 `createCache({ ttl: 60000 })` (its default Keyv in-memory store), `cache.wrap(key, fn)`.",
    module: "cache-manager",
  },
  {
    name: "cache-manager-redis",
    family: "peer",
    framework: "fastify",
    storage: "redis",
    setup:
      "cache-manager 7 `createCache({ stores: [createKeyv(url)] })` with `@keyv/redis` (node-redis), `cache.wrap(key, fn, 60000)`.",
    module: "cache-manager",
  },
  {
    name: "acd-memory",
    family: "peer",
    framework: "fastify",
    storage: "memory",
    setup:
      "async-cache-dedupe `createCache({ ttl: 60, storage: { type: 'memory' } })`, `cache.define('getPosts', fn)`.",
    module: "acd",
  },
  {
    name: "acd-redis",
    family: "peer",
    framework: "fastify",
    storage: "redis",
    setup:
      "async-cache-dedupe `createCache({ ttl: 60, storage: { type: 'redis', options: { client: new Redis(url) } } })` (ioredis).",
    module: "acd",
  },
  {
    name: "apicache-memory",
    family: "peer",
    framework: "express",
    storage: "memory",
    setup:
      "apicache 1.6 `apicache.middleware('60 seconds')` on Express 5, built-in memory store (its Redis mode needs a node-redis v3 client; see notes).",
    module: "apicache",
  },
  {
    name: "article",
    family: "peer",
    framework: "fastify",
    storage: "redis",
    setup:
      "The article's `@cache(expire=60)` ported as written: Redis GET + JSON.parse on a hit; JSON.stringify + SET EX on a miss (node-redis, default options); the object returned to Fastify.",
    module: "article",
  },
];

export function targetInfo(name: string): TargetInfo {
  const info = TARGETS.find((t) => t.name === name);
  if (!info) {
    throw new Error(`unknown target ${name} (known: ${TARGETS.map((t) => t.name).join(", ")})`);
  }
  return info;
}

/** Whether the target caches at all (the cold-request and miss figures apply). */
export const caches = (t: TargetInfo) => t.family === "cachet" || t.family === "peer";

/**
 * Whether the target keeps its entries in a server that two processes can share (Redis, the
 * cluster, memcached): the two-process stampede and the store-killed figures apply.
 */
export const sharesStore = (t: TargetInfo) =>
  t.storage === "redis" ||
  t.storage === "tiered" ||
  t.storage === "cluster" ||
  t.storage === "memcached";

/** Whether the store is the bench's one redis-server (alone or behind an in-process tier). */
export const usesRedis = (t: TargetInfo) => t.storage === "redis" || t.storage === "tiered";
