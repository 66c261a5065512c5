/**
 * The HTTP cache on a real Redis (issue 15, item 2): a stored response keeps its identity body
 * in its entry and each compressed body in an entry of its own, so that a hit reads only the
 * body it sends — one `GET` for a client that takes no stored coding, one `MGET` (the response
 * and its one coded body) for one that does. Counted on the server: `INFO commandstats` and
 * `INFO stats` (`total_net_output_bytes`, what Redis sent).
 */
import assert from "node:assert/strict";
import { after, afterEach, before, beforeEach, describe, it } from "node:test";
import { brotliDecompressSync, gunzipSync } from "node:zlib";
import Fastify, { type FastifyInstance } from "fastify";
import { createClient } from "redis";
import { cachetFastify } from "../../src/adapters/fastify.js";
import type { Cache } from "../../src/cache.js";
import { createCache } from "../../src/cache.js";
import { encodeEntry } from "../../src/entry.js";
import { recordSerializer } from "../../src/http/record.js";
import { redisStore } from "../../src/stores/redis.js";
import { waitFor } from "../helpers/ports.js";
import { type RedisServer, startRedis } from "../helpers/redis.js";

/** A compressible JSON body of about 27 KB (like the demo's posts). */
const payload = Array.from({ length: 200 }, (_, i) => ({
  id: i,
  title: `post number ${i} about caching`,
  body: `lorem ipsum dolor sit amet ${i} `.repeat(4),
}));
const BODY = Buffer.from(JSON.stringify(payload));
/** A fresh hit (its ttl depends on how long the machine took since the response was stored). */
const HIT = /^cachet; hit; ttl=\d+$/;

describe("HTTP cache on Redis: a hit reads only the body it sends", { timeout: 60_000 }, () => {
  let redis: RedisServer;
  let admin: ReturnType<typeof createClient>;
  const apps: FastifyInstance[] = [];
  let calls = 0;

  before(async () => {
    redis = await startRedis();
    admin = createClient({ url: redis.url });
    await admin.connect();
  });
  after(async () => {
    await admin?.quit();
    await redis?.stop();
  });
  beforeEach(async () => {
    calls = 0;
    await admin.flushAll();
  });
  afterEach(async () => {
    for (const app of apps.splice(0)) await app.close();
  });

  async function app(
    options: { l1?: boolean } = {},
  ): Promise<{ app: FastifyInstance; cache: Cache }> {
    const cache = createCache({
      store: redisStore({ url: redis.url, prefix: "t:" }),
      l1: options.l1 === true,
      ttl: 60_000,
      // Not a timeout test: a loaded machine must not turn a slow reply into a miss.
      storeTimeout: 2_000,
    });
    const fastify = Fastify();
    await fastify.register(cachetFastify, { cache });
    fastify.get("/posts", { config: { cache: true } }, async (_request, reply) => {
      calls++;
      reply.header("content-type", "application/json; charset=utf-8");
      return BODY;
    });
    await fastify.ready();
    apps.push(fastify);
    return { app: fastify, cache };
  }

  const headKey = "t:@http:localhost:80/posts";

  /** Wait until the response and its br and gzip bodies are in Redis. */
  async function compressed(): Promise<void> {
    await waitFor(
      async () =>
        (await admin.exists([headKey, `${headKey} ~br`, `${headKey} ~gzip`])) === 3 &&
        // The response listing its codings replaced the identity-only one.
        (await admin.get(headKey))?.includes('"c":["br","gzip"]') === true,
      "the compressed bodies to be stored",
    );
  }

  async function counters(): Promise<{ get: number; mget: number; out: number }> {
    const stats = String(await admin.sendCommand(["INFO", "commandstats"]));
    const calls = (name: string) =>
      Number(new RegExp(`^cmdstat_${name}:calls=(\\d+)`, "m").exec(stats)?.[1] ?? 0);
    const info = String(await admin.sendCommand(["INFO", "stats"]));
    const out = Number(/^total_net_output_bytes:(\d+)/m.exec(info)?.[1]);
    return { get: calls("get"), mget: calls("mget"), out };
  }

  /** Commands and bytes Redis spent on `request` (minus what the counters' own calls cost). */
  async function measured<T>(
    request: () => Promise<T>,
  ): Promise<{ result: T; get: number; mget: number; out: number }> {
    const a = await counters();
    const b = await counters();
    const overhead = b.out - a.out;
    const result = await request();
    const c = await counters();
    return { result, get: c.get - b.get, mget: c.mget - b.mget, out: c.out - b.out - overhead };
  }

  /**
   * A new instance reads the states of a response's tags with its first read (one MGET, then
   * kept): read another URL of the same path first, so that the measured hit is a steady one.
   */
  async function tagsKnown(reader: FastifyInstance): Promise<void> {
    const { app: writer } = await app();
    assert.equal((await writer.inject({ url: "/posts?other" })).statusCode, 200);
    calls--;
    // Let its compression finish (it reads and writes Redis in the background)...
    await waitFor(async () => {
      const keys = await admin.keys("t:@http:*other*");
      const head = keys.find((k) => k.endsWith("other"));
      return (
        keys.length === 3 &&
        head !== undefined &&
        (await admin.get(head))?.includes('"c":["br","gzip"]') === true
      );
    }, "the other response and its bodies to be stored");
    // ...then read it from Redis: the reader now knows the states of the path's tags.
    const res = await reader.inject({ url: "/posts?other" });
    assert.match(String(res.headers["cache-status"]), HIT);
  }

  it("stores the identity body with the response and each coded body apart", async () => {
    const { app: a } = await app();
    const first = await a.inject({ url: "/posts" });
    assert.equal(first.headers["cache-status"], "cachet; fwd=uri-miss; stored");
    await compressed();
    const head = Number(await admin.strLen(headKey));
    const br = Number(await admin.strLen(`${headKey} ~br`));
    const gzip = Number(await admin.strLen(`${headKey} ~gzip`));
    assert.ok(head > BODY.length && head < BODY.length + 1024, `response entry ${head} B`);
    assert.ok(br > 0 && br < BODY.length / 2, `br entry ${br} B`);
    assert.ok(gzip > 0 && gzip < BODY.length / 2, `gzip entry ${gzip} B`);
    // The same lifetime as the response.
    const ttls = await Promise.all(
      [headKey, `${headKey} ~br`, `${headKey} ~gzip`].map((k) => admin.pTTL(k)),
    );
    for (const ttl of ttls) assert.ok(ttl > 50_000 && ttl <= 60_000, `pttl ${ttl}`);
  });

  it("a hit without a stored coding is one GET of the response, no coded body read", async () => {
    await (await app()).app.inject({ url: "/posts" });
    await compressed();
    const { app: reader } = await app();
    await tagsKnown(reader);
    const head = Number(await admin.strLen(headKey));
    const { result, get, mget, out } = await measured(() => reader.inject({ url: "/posts" }));
    assert.match(String(result.headers["cache-status"]), HIT);
    assert.equal(result.headers["content-encoding"], undefined);
    assert.deepEqual(result.rawPayload, BODY);
    assert.equal(get, 1);
    assert.equal(mget, 0);
    // The response's entry and the reply framing, nothing more.
    assert.ok(out >= head && out < head + 64, `Redis sent ${out} B for a ${head} B entry`);
    assert.equal(calls, 1);
  });

  for (const coding of ["br", "gzip"] as const) {
    it(`a hit that takes ${coding} is one MGET of the response and its ${coding} body only`, async () => {
      await (await app()).app.inject({ url: "/posts" });
      await compressed();
      const { app: reader } = await app();
      await tagsKnown(reader);
      const head = Number(await admin.strLen(headKey));
      const part = Number(await admin.strLen(`${headKey} ~${coding}`));
      const other = Number(await admin.strLen(`${headKey} ~${coding === "br" ? "gzip" : "br"}`));
      const { result, get, mget, out } = await measured(() =>
        reader.inject({ url: "/posts", headers: { "accept-encoding": coding } }),
      );
      assert.match(String(result.headers["cache-status"]), HIT);
      assert.equal(result.headers["content-encoding"], coding);
      const decoded =
        coding === "br" ? brotliDecompressSync(result.rawPayload) : gunzipSync(result.rawPayload);
      assert.deepEqual(decoded, BODY);
      assert.equal(get, 0);
      assert.equal(mget, 1);
      assert.ok(
        out >= head + part && out < head + part + 64,
        `Redis sent ${out} B for entries of ${head} + ${part} B (the other coding: ${other} B)`,
      );
      assert.equal(calls, 1);
    });
  }

  it("a coded body of another response (other ETag) is never served: identity instead", async () => {
    const { app: writer, cache } = await app();
    await writer.inject({ url: "/posts" });
    await compressed();
    // Put the br body of a different response under the key, with a long life.
    const stale = encodeEntry(
      {
        value: {
          kind: "coded",
          coding: "br",
          etag: '"other"',
          length: BODY.length,
          body: Buffer.from("not it"),
        },
        createdAt: Date.now(),
        freshUntil: Date.now() + 60_000,
        staleUntil: Date.now() + 60_000,
        tags: [],
      },
      recordSerializer,
    );
    await admin.set(`${headKey} ~br`, stale, { PX: 60_000 });
    const { app: reader } = await app();
    const res = await reader.inject({ url: "/posts", headers: { "accept-encoding": "br" } });
    assert.match(String(res.headers["cache-status"]), HIT);
    assert.equal(res.headers["content-encoding"], undefined);
    assert.deepEqual(res.rawPayload, BODY);
    assert.match(String(res.headers.vary), /accept-encoding/i);
    assert.equal(calls, 1);
    await cache.close();
  });

  it("an entry of the previous layout (every body in one value) is a miss, never decoded", async () => {
    // Format 1 of the response record, as the previous release wrote it.
    const meta = Buffer.from(
      JSON.stringify({
        s: 200,
        h: { "content-type": "application/json; charset=utf-8" },
        e: '"old"',
        m: null,
        o: false,
        a: 0,
        b: 5,
        c: [],
      }),
    );
    const old = Buffer.concat([Buffer.alloc(4), meta, Buffer.from("stale")]);
    old.writeUInt32BE(meta.length, 0);
    const bytes = encodeEntry(
      {
        value: old,
        createdAt: Date.now(),
        freshUntil: Date.now() + 60_000,
        staleUntil: Date.now() + 60_000,
        tags: [],
      },
      { name: "http-response", serialize: (v) => v as Buffer, deserialize: (b) => b },
    );
    await admin.set(headKey, bytes, { PX: 60_000 });
    const { app: reader } = await app();
    const res = await reader.inject({ url: "/posts" });
    assert.equal(res.headers["cache-status"], "cachet; fwd=uri-miss; stored");
    assert.deepEqual(res.rawPayload, BODY);
    assert.equal(calls, 1);
  });

  it("invalidating the path invalidates the coded bodies with the response", async () => {
    const { app: writer } = await app();
    await writer.inject({ url: "/posts" });
    await compressed();
    const { app: reader } = await app();
    const hit = await reader.inject({ url: "/posts", headers: { "accept-encoding": "br" } });
    assert.equal(hit.headers["content-encoding"], "br");
    await reader.cachet.invalidatePaths(["/posts"]);
    const after = await reader.inject({ url: "/posts", headers: { "accept-encoding": "br" } });
    assert.equal(after.headers["cache-status"], "cachet; fwd=uri-miss; stored");
    assert.equal(calls, 2);
  });

  it("two tiers: a hit from Redis backfills the coded body, later hits read nothing", async () => {
    await (await app()).app.inject({ url: "/posts" });
    await compressed();
    const { app: reader } = await app({ l1: true });
    await tagsKnown(reader);
    const first = await measured(() =>
      reader.inject({ url: "/posts", headers: { "accept-encoding": "gzip, br" } }),
    );
    assert.equal(first.result.headers["content-encoding"], "br");
    assert.equal(first.mget, 1);
    const second = await measured(() =>
      reader.inject({ url: "/posts", headers: { "accept-encoding": "gzip, br" } }),
    );
    assert.match(String(second.result.headers["cache-status"]), HIT);
    assert.equal(second.result.headers["content-encoding"], "br");
    assert.deepEqual(brotliDecompressSync(second.result.rawPayload), BODY);
    assert.equal(second.get + second.mget, 0, "served from L1");
    assert.equal(calls, 1);
  });
});
