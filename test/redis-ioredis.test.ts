import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, describe, it } from "node:test";
import { Redis, type RedisOptions } from "ioredis";
import { InvalidOptionError } from "../src/errors.js";
import { type Cache, createCache } from "../src/index.js";
import { redisStore } from "../src/stores/redis.js";
import { type StoreEndpoint, storeContract } from "../src/testing/store-contract.js";
import { waitFor } from "./helpers/ports.js";
import { type RedisServer, startRedis } from "./helpers/redis.js";

/**
 * The Redis store on a caller's ioredis client (standalone; the ioredis Cluster runs the
 * contract in test/redis-cluster.test.ts): the store contract, and what the store promises
 * about a client it does not own.
 */

const CAPABILITIES = [
  "getMany",
  "setMany",
  "deleteMany",
  "setIfAbsent",
  "deleteIfEquals",
  "extendIfEquals",
  "extendManyIfEquals",
  "takeLease",
  "publish",
  "subscribe",
  "disconnect",
] as const;

/** How long a command may take to fail while Redis is down ("fail fast"). */
const FAST = 200;

let server: Promise<RedisServer> | undefined;
const redis = () => {
  server ??= startRedis();
  return server;
};
/** Clients made by this file, closed after it (the store never closes them). */
const clients: Redis[] = [];
after(async () => {
  for (const client of clients.splice(0)) client.disconnect();
  if (server) await (await server).stop();
});

function ioredis(port: number, options: RedisOptions = {}): Redis {
  const client = new Redis({ host: "127.0.0.1", port, ...options });
  client.on("error", () => {});
  clients.push(client);
  return client;
}

const run = randomUUID().slice(0, 8);

storeContract(
  "redis on a caller's ioredis client",
  async () => {
    const { port } = await redis();
    return { store: redisStore({ client: ioredis(port) }) };
  },
  {
    capabilities: CAPABILITIES,
    // A client that gives up when its server is gone (ioredis would otherwise retry forever,
    // and the store never closes a caller's client).
    storeAt: ({ port }: StoreEndpoint) =>
      redisStore({
        client: ioredis(port, { lazyConnect: true, retryStrategy: () => null }),
        connectTimeout: 500,
        commandTimeout: 500,
      }),
    downTimeout: 2_000,
  },
);

storeContract(
  "redis on a caller's ioredis client (lazyConnect, empty prefix)",
  async () => {
    const { port } = await redis();
    const client = ioredis(port, { lazyConnect: true });
    return { store: redisStore({ client, prefix: "" }) };
  },
  { capabilities: CAPABILITIES },
);

describe("redisStore on a caller's ioredis client", () => {
  it("connects a lazyConnect client on first use, never closes it, reports standalone", async () => {
    const { port } = await redis();
    const client = ioredis(port, { lazyConnect: true });
    const store = redisStore({ client });
    assert.equal(store.topology, "standalone");
    assert.equal(store.status, "idle");
    await store.set(`io:${run}:a`, Buffer.from("a"), 60_000);
    assert.equal(client.status, "ready");
    assert.equal(store.status, "ready");
    await store.disconnect();
    assert.equal(store.status, "closed");
    assert.equal(client.status, "ready", "the store closed the caller's client");
    assert.equal(await client.get(`cachet:io:${run}:a`), "a");
  });

  it("rejects a client with a keyPrefix, naming the option", async () => {
    const { port } = await redis();
    const client = ioredis(port, { lazyConnect: true, keyPrefix: "app:" });
    assert.throws(
      () => redisStore({ client }),
      (error: unknown) =>
        error instanceof InvalidOptionError &&
        error.option === "redisStore.client" &&
        /keyPrefix/.test(error.message),
    );
  });

  it("fails fast while the client is reconnecting (its offline queue is not used), and works again once it is back", async () => {
    const server = await startRedis();
    try {
      const client = ioredis(server.port, { retryStrategy: () => 50 });
      const store = redisStore({ client });
      await store.set(`io:${run}:b`, Buffer.from("b"), 60_000);
      await server.kill();
      await waitFor(() => client.status !== "ready", "ioredis to notice", 5_000);
      const started = performance.now();
      await assert.rejects(store.get(`io:${run}:b`));
      assert.ok(performance.now() - started < FAST, "the command waited for the reconnection");
      assert.equal(store.status, "reconnecting");
      await server.start();
      await waitFor(
        async () => {
          await store.set(`io:${run}:b`, Buffer.from("again"), 60_000);
          return String(await store.get(`io:${run}:b`)) === "again";
        },
        "the store to work again",
        10_000,
      );
      await store.disconnect();
    } finally {
      await server.stop();
    }
  });

  it("two caches on ioredis clients: the bus drops the other's in-process copy, and survives a Redis restart", async () => {
    const server = await startRedis();
    const make = () =>
      createCache({
        store: redisStore({ client: ioredis(server.port, { retryStrategy: () => 50 }) }),
        l1: true,
        l1MaxTtl: 60_000,
        storeTimeout: 1_000,
      });
    const a = make();
    const b = make();
    const caches: Cache[] = [a, b];
    const resets: string[] = [];
    b.on("bus", (e) => resets.push(e.state));
    try {
      await a.set("k", "v1");
      assert.equal(await b.getOrSet("k", () => "unused"), "v1");
      await waitFor(() => caches.every((c) => c.health().bus?.state === "up"), "buses up", 5_000);
      await a.set("k", "v2");
      await waitFor(async () => (await b.get("k")) === "v2", "b to see the write", 5_000);
      // Redis restarts (empty): the subscriber connection is replaced, and b drops its
      // in-process tier since messages may have been missed meanwhile.
      await server.kill();
      await server.start();
      await waitFor(() => resets.includes("reconnected"), "b's bus to come back", 10_000);
      await waitFor(
        async () => {
          await a.set("k", "v3");
          return (await b.get("k")) === "v3";
        },
        "b to see writes again",
        10_000,
        50,
      );
      assert.equal(await b.getOrSet("k", () => "unused"), "v3");
      await a.set("k", "v4");
      await waitFor(async () => (await b.get("k")) === "v4", "b to see the next write", 5_000);
    } finally {
      await Promise.all(caches.map((c) => c.close()));
      await server.stop();
    }
  });
});
