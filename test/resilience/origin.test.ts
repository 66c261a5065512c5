/**
 * The origin failing or slow, for real: the demo service (tiered store on a real Redis) in
 * front of the fake upstream switched to failing, or made slow after an update. Stale copies
 * are served within their windows (stale-if-error, stale-while-revalidate), with an RFC 9211
 * Cache-Status that says so, and the origin is not hammered while it fails.
 */
import assert from "node:assert/strict";
import { after, afterEach, before, describe, it } from "node:test";
import type { Child } from "../../demo/child.js";
import { type FakeUpstream, POSTS, startFakeUpstream } from "../../demo/fake-upstream.js";
import { startService } from "../demo/helpers.js";
import { cacheStatus, isHit, stopAll, type Timed, timed, titleOf } from "../helpers/fleet.js";
import { waitFor } from "../helpers/ports.js";
import { type RedisServer, startRedis } from "../helpers/redis.js";

const STALE_IF_ERROR = /^cachet; fwd=stale; fwd-status=502; ttl=-\d+; detail=stale-if-error$/;
const STALE_BACKOFF = /^cachet; hit; ttl=-\d+; detail=stale-backoff$/;
const STALE_WHILE_REVALIDATE = /^cachet; hit; ttl=-\d+; detail=stale-while-revalidate$/;

describe("the origin fails or is slow (demo, tiered store)", { timeout: 60_000 }, () => {
  let fake: FakeUpstream;
  let redis: RedisServer;
  let service: Child | undefined;

  before(async () => {
    fake = await startFakeUpstream({ latencyMs: 5 });
    redis = await startRedis();
  });
  after(async () => {
    await fake?.close();
    await redis?.stop();
  });
  afterEach(async () => {
    await stopAll([service]);
    service = undefined;
  });

  it("failing after expiry: stale 200 inside the grace window, 502 after it; the origin is not called on every request meanwhile", async () => {
    const TTL_MS = 500;
    const GRACE_MS = 2_000;
    service = await startService({
      UPSTREAM_URL: fake.url,
      REDIS_URL: redis.url,
      // Not a timeout test: a loaded machine must not turn a slow Redis reply into a miss.
      CACHE_STORE_TIMEOUT: "1s",
      CACHE_TTL: `${TTL_MS}ms`,
      CACHE_STALE_IF_ERROR: `${GRACE_MS}ms`,
    });
    fake.reset();
    const url = `${service.url}/posts/2`;
    const filled = await timed(url);
    assert.equal(filled.status, 200);
    assert.equal(cacheStatus(filled), "cachet; fwd=uri-miss; stored");
    const storedAt = filled.sentAt;
    fake.reset();
    fake.setMode("fail");

    // One request every 40 ms until the first 502, with the origin's call count after each.
    const seen: Array<Timed & { calls: number }> = [];
    const deadline = performance.now() + TTL_MS + GRACE_MS + 5_000;
    for (;;) {
      const response = await timed(url);
      seen.push({ ...response, calls: fake.calls() });
      if (response.status !== 200) break;
      if (performance.now() > deadline) assert.fail("no 502 after the grace window");
      await new Promise((resolve) => setTimeout(resolve, 40));
    }

    const first502 = seen.at(-1)!;
    const before502 = seen.slice(0, -1);
    const stale = before502.filter((r) => !isHit(r));
    const statuses = before502.map((r) => `${r.status} ${cacheStatus(r)}`);
    for (const response of before502) {
      assert.equal(response.status, 200);
      assert.ok(response.body.equals(filled.body), "the stale response is the old body");
    }
    // Fresh hits first, then stale ones: the first after the failed refresh says why (the
    // origin's 502), the next ones that the refresh is backing off.
    assert.ok(stale.length >= 10, `${stale.length} stale responses: ${statuses.join(", ")}`);
    assert.match(cacheStatus(stale[0]!), STALE_IF_ERROR);
    for (const response of stale.slice(1)) {
      assert.match(
        cacheStatus(response),
        new RegExp(`${STALE_IF_ERROR.source}|${STALE_BACKOFF.source}`),
      );
    }
    const callsWhileStale = before502.at(-1)!.calls;
    assert.ok(
      callsWhileStale <= 2,
      `${callsWhileStale} origin calls for ${stale.length} stale responses (graceBackoff 5 s)`,
    );

    // After the grace window the error passes through.
    assert.equal(first502.status, 502);
    assert.match(JSON.parse(first502.body.toString()).error, /^upstream answered 500/);
    const at = first502.sentAt - storedAt;
    assert.ok(at >= TTL_MS + GRACE_MS - 50, `first 502 ${at.toFixed(0)} ms after the fill`);
    assert.ok(at <= TTL_MS + GRACE_MS + 1_000, `first 502 ${at.toFixed(0)} ms after the fill`);
    assert.ok(stale[0]!.sentAt - storedAt >= TTL_MS - 50, "stale only once the ttl has passed");

    // The origin recovers: the next request stores a fresh response.
    fake.setMode("ok");
    const recovered = await timed(url);
    assert.equal(recovered.status, 200);
    assert.equal(cacheStatus(recovered), "cachet; fwd=uri-miss; stored");
  });

  it("stale-while-revalidate: a stale read returns at once while one refresh runs; later reads see the new value", async () => {
    // An entry is as old as the moment its production started: the ttl must outlast the
    // origin's time, or a refreshed value would land already stale.
    const ORIGIN_MS = 600;
    service = await startService({
      UPSTREAM_URL: fake.url,
      REDIS_URL: redis.url,
      // Not a timeout test: a loaded machine must not turn a slow Redis reply into a miss.
      CACHE_STORE_TIMEOUT: "1s",
      CACHE_TTL: "1s",
      CACHE_STALE_WHILE_REVALIDATE: "30",
    });
    fake.reset();
    fake.setLatency(5);
    const url = `${service.url}/posts/5`;
    const filled = await timed(url);
    assert.equal(filled.status, 200);
    assert.equal(titleOf(filled), POSTS[4]!.title);

    // The post changes at the origin, which becomes slow.
    fake.reset();
    fake.editPost(5, { title: "revised at the origin" });
    fake.setLatency(ORIGIN_MS);

    // Hits until the ttl passes; the first stale read starts the refresh.
    let first: Timed;
    for (;;) {
      first = await timed(url);
      if (!isHit(first)) break;
      assert.equal(fake.calls(), 0, "a fresh hit does not call the origin");
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    assert.equal(first.status, 200);
    assert.match(cacheStatus(first), STALE_WHILE_REVALIDATE);
    assert.equal(titleOf(first), POSTS[4]!.title, "the stale value");
    // "At once": well under the origin's second, which a reader waiting on it would take.
    assert.ok(first.ms < ORIGIN_MS / 2, `stale read took ${first.ms.toFixed(0)} ms`);

    // More readers while the refresh runs: all answered at once from the stale copy.
    const readers = await Promise.all(Array.from({ length: 20 }, () => timed(url)));
    for (const reader of readers) {
      assert.equal(reader.status, 200);
      assert.equal(titleOf(reader), POSTS[4]!.title);
      assert.match(cacheStatus(reader), STALE_WHILE_REVALIDATE);
      assert.ok(reader.ms < ORIGIN_MS / 2, `stale read took ${reader.ms.toFixed(0)} ms`);
    }
    await waitFor(() => fake.calls() >= 1, "the refresh to reach the origin");
    assert.equal(fake.calls(), 1, "exactly one refresh");

    // Once the refresh lands, reads see the new value, from the cache.
    const deadline = performance.now() + ORIGIN_MS + 5_000;
    let fresh: Timed;
    for (;;) {
      fresh = await timed(url);
      if (titleOf(fresh) === "revised at the origin") break;
      assert.ok(performance.now() < deadline, "the refreshed value never showed");
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    assert.ok(isHit(fresh), cacheStatus(fresh));
    for (let i = 0; i < 5; i++) assert.equal(titleOf(await timed(url)), "revised at the origin");
    assert.equal(fake.calls(), 1, "still the one refresh");
  });
});
