import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { FastifyInstance } from "fastify";
import { buildApp } from "../../demo/app.js";
import { loadConfig } from "../../demo/config.js";
import { type FakeUpstream, startFakeUpstream } from "../../demo/fake-upstream.js";
import { type DynaliteServer, startDynalite } from "../helpers/dynalite.js";
import { type MemcachedServer, startMemcached } from "../helpers/memcached.js";
import { waitFor } from "../helpers/ports.js";

/**
 * The demo on the article's other providers: CACHE_STORE=memcached (MEMCACHED_URL) and
 * CACHE_STORE=dynamodb (DYNAMODB_ENDPOINT, DYNAMODB_TABLE), on real servers.
 */
interface Server {
  env(): Record<string, string>;
  kill(): Promise<void>;
  start(): Promise<void>;
  stop(): Promise<void>;
}

const stores: Array<[kind: "memcached" | "dynamodb", start: () => Promise<Server>]> = [
  [
    "memcached",
    async () => {
      const mc: MemcachedServer = await startMemcached();
      return { ...mc, env: () => ({ CACHE_STORE: "memcached", MEMCACHED_URL: mc.servers }) };
    },
  ],
  [
    "dynamodb",
    async () => {
      const db: DynaliteServer = await startDynalite();
      return {
        ...db,
        env: () => ({
          CACHE_STORE: "dynamodb",
          DYNAMODB_ENDPOINT: db.endpoint,
          DYNAMODB_TABLE: "demo-cache",
        }),
      };
    },
  ],
];

for (const [kind, start] of stores) {
  describe(`demo app on ${kind}`, () => {
    let server: Server;
    let fake: FakeUpstream;
    let app: FastifyInstance;

    before(async () => {
      server = await start();
      fake = await startFakeUpstream({ latencyMs: 0 });
      app = await buildApp(
        loadConfig({
          ...server.env(),
          UPSTREAM_URL: fake.url,
          UPSTREAM_TIMEOUT: "2",
          // A cold DynamoDB connection (signing, a new socket), or a loaded machine, can take
          // more than 50 ms: a timed-out store call would cost a second upstream call.
          CACHE_STORE_TIMEOUT: "5s",
          LOG_LEVEL: "silent",
        }),
      );
      await app.ready(); // creates the DynamoDB table on a local endpoint
    });
    after(async () => {
      try {
        await app?.close();
      } finally {
        await fake?.close();
        await server?.stop();
      }
    });

    const statusOf = async (url: string) =>
      String((await app.inject({ method: "GET", url })).headers["cache-status"]);

    it("caches /posts/:id in the store: one upstream call, then hits", async () => {
      fake.reset();
      const first = await app.inject({ method: "GET", url: "/posts/3" });
      assert.equal(first.statusCode, 200);
      assert.equal(first.headers["cache-status"], "cachet; fwd=uri-miss; stored");
      await waitFor(async () => /^cachet; hit; ttl=\d+$/.test(await statusOf("/posts/3")), "a hit");
      const again = await app.inject({ method: "GET", url: "/posts/3" });
      assert.equal(again.body, first.body);
      assert.equal(fake.calls(), 1);
    });

    it("/health names the store, up, with its connection and the lease", async () => {
      const response = await app.inject({ method: "GET", url: "/health" });
      assert.equal(response.statusCode, 200);
      const { cache } = response.json<{ cache: Record<string, unknown> }>();
      assert.equal(cache.store, kind);
      assert.equal(cache.state, "ok");
      assert.equal(cache.remote, "up");
      assert.equal(cache.connection, "ready");
      assert.equal(cache.breaker, "closed");
      assert.equal(cache.lease, true);
      assert.equal(cache.redis, undefined, "no Redis field for another store");
      assert.equal(cache.bus, undefined, "no bus: the store has no pub/sub");
    });

    it("with the store down, requests are still answered (by the upstream) and /health says degraded", async () => {
      await server.kill();
      try {
        fake.reset();
        const response = await app.inject({ method: "GET", url: "/posts/4" });
        assert.equal(response.statusCode, 200);
        assert.equal(fake.calls(), 1);
        await waitFor(async () => {
          const health = await app.inject({ method: "GET", url: "/health" });
          return health.json<{ cache: { state: string } }>().cache.state === "degraded";
        }, "/health to report the outage");
      } finally {
        await server.start();
      }
    });
  });
}
