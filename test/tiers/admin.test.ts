/**
 * The demo's invalidation endpoint over real sockets, on two tiered instances sharing Redis:
 * `POST /cache/invalidate` with `Authorization: Bearer <ADMIN_TOKEN>` invalidates tags and
 * paths on every instance; without the token it is 401, without ADMIN_TOKEN 404; and no
 * request header or method can invalidate anything.
 */
import assert from "node:assert/strict";
import { after, before, beforeEach, describe, it } from "node:test";
import type { Child } from "../../demo/child.js";
import { type FakeUpstream, POSTS, startFakeUpstream } from "../../demo/fake-upstream.js";
import { startService } from "../demo/helpers.js";
import {
  ADMIN_TOKEN,
  cacheStatus,
  invalidate,
  isHit,
  startInstances,
  stopAll,
  timed,
  titleOf,
  untilHit,
} from "../helpers/fleet.js";
import { waitFor } from "../helpers/ports.js";
import { type RedisServer, startRedis } from "../helpers/redis.js";

describe("POST /cache/invalidate on two tiered instances", { timeout: 60_000 }, () => {
  let fake: FakeUpstream;
  let redis: RedisServer;
  let a: Child;
  let b: Child;
  let tokenless: Child;

  before(async () => {
    fake = await startFakeUpstream({ latencyMs: 0 });
    redis = await startRedis();
    [a, b] = (await startInstances(2, {
      UPSTREAM_URL: fake.url,
      REDIS_URL: redis.url,
      ADMIN_TOKEN,
      // Not a timeout test: a loaded machine must not turn a slow Redis reply into a miss.
      CACHE_STORE_TIMEOUT: "1s",
    })) as [Child, Child];
    tokenless = await startService({ UPSTREAM_URL: fake.url, REDIS_URL: redis.url });
  });
  after(async () => {
    await stopAll([a, b, tokenless]);
    await fake?.close();
    await redis?.stop();
  });
  beforeEach(() => fake.reset());

  /** Cache `path` on both instances, then change it at the origin (so a miss would show). */
  async function cachedEverywhere(path: string, id: number): Promise<void> {
    await untilHit(`${a.url}${path}`);
    await untilHit(`${b.url}${path}`);
    fake.editPost(id, { title: `edited ${id}` });
  }

  async function stillCached(path: string, id: number): Promise<void> {
    for (const instance of [a, b]) {
      const response = await timed(`${instance.url}${path}`);
      assert.ok(isHit(response), `${path} still a hit: ${cacheStatus(response)}`);
      assert.equal(titleOf(response), POSTS[id - 1]!.title);
    }
  }

  it("404 without ADMIN_TOKEN, whatever is sent; nothing is invalidated", async () => {
    await cachedEverywhere("/posts/1", 1);
    for (const authorization of [null, `Bearer ${ADMIN_TOKEN}`, "Bearer anything"]) {
      const response = await invalidate(tokenless, { tags: ["posts"] }, authorization);
      assert.equal(response.status, 404, String(authorization));
    }
    await stillCached("/posts/1", 1);
  });

  it("401 without the token, with a wrong one or another scheme; nothing is invalidated", async () => {
    await cachedEverywhere("/posts/2", 2);
    for (const authorization of [
      null,
      "",
      "Bearer ",
      `Bearer ${ADMIN_TOKEN.slice(0, -1)}`,
      `Bearer ${ADMIN_TOKEN}0`,
      `Bearer ${ADMIN_TOKEN.toUpperCase()}`,
      `Basic ${Buffer.from(`admin:${ADMIN_TOKEN}`).toString("base64")}`,
      ADMIN_TOKEN,
    ]) {
      const response = await invalidate(a, { tags: ["posts"] }, authorization);
      assert.equal(response.status, 401, JSON.stringify(authorization));
      assert.equal(response.headers.get("www-authenticate"), 'Bearer realm="cachet demo"');
      assert.equal(response.headers.get("cache-control"), "no-store");
    }
    await stillCached("/posts/2", 2);
  });

  it("200 with the token: a tag or a path invalidated on A is gone on both instances", async () => {
    await cachedEverywhere("/posts/3", 3);
    await cachedEverywhere("/posts/4", 4);
    const byTag = await invalidate(a, { tags: ["post:3"] });
    assert.equal(byTag.status, 200);
    assert.deepEqual(JSON.parse(byTag.body.toString()), {
      invalidated: { tags: ["post:3"], paths: [], soft: false },
    });
    const byPath = await invalidate(a, { paths: ["/posts/4"] });
    assert.equal(byPath.status, 200);
    for (const [path, title] of [
      ["/posts/3", "edited 3"],
      ["/posts/4", "edited 4"],
    ] as const) {
      for (const instance of [b, a]) {
        await waitFor(
          async () => titleOf(await timed(`${instance.url}${path}`)) === title,
          `${path} to be refetched on ${instance === a ? "A" : "B"}`,
          2_000,
        );
      }
    }
    // A malformed body is a 400, and the service goes on.
    const malformed = await timed(`${a.url}/cache/invalidate`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${ADMIN_TOKEN}` },
      body: '{"tags": ["posts"',
    });
    assert.equal(malformed.status, 400);
    assert.equal((await timed(`${a.url}/health`)).status, 200);
  });

  it("no request header or method can invalidate anything", async () => {
    await cachedEverywhere("/posts/6", 6);
    const headers: Array<Record<string, string>> = [
      { "cache-control": "no-cache" },
      { "cache-control": "no-store" },
      { "cache-control": "max-age=0" },
      { pragma: "no-cache" },
      { authorization: `Bearer ${ADMIN_TOKEN}` },
      { "x-cache-invalidate": "posts" },
      { "x-invalidate-tags": "posts,post:6" },
      { "surrogate-key": "post:6" },
      { "cache-tag": "post:6" },
      { "x-purge": "1" },
      { "clear-site-data": '"cache"' },
      { "x-forwarded-host": "evil.example" },
      { "x-cachet-dispatch": "guess" },
    ];
    for (const instance of [a, b]) {
      for (const header of headers) {
        const response = await timed(`${instance.url}/posts/6`, { headers: header });
        assert.ok(response.status === 200, JSON.stringify(header));
      }
      for (const method of ["PURGE", "BAN", "DELETE", "POST", "PUT", "PATCH"]) {
        const response = await timed(`${instance.url}/posts/6`, {
          method,
          headers: { authorization: `Bearer ${ADMIN_TOKEN}`, "x-cache-invalidate": "posts" },
        });
        assert.ok(response.status >= 400, `${method} answered ${response.status}`);
      }
      const get = await timed(`${instance.url}/cache/invalidate?tags=posts`, {
        headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
      });
      assert.equal(get.status, 404, "only POST invalidates");
    }
    await stillCached("/posts/6", 6);
  });
});
