/**
 * Two demo instances in tiered mode (memory in front of one shared Redis) stay coherent, for
 * real: an invalidation on A reaches B over the bus within 100 ms; a bus message lost when
 * B's subscriber connection is killed (`CLIENT KILL TYPE pubsub`) cannot keep stale data alive
 * past `CACHE_L1_MAX_TTL`, and the resubscription drops B's in-process tier; with the
 * subscription kept out (Redis ACL), B's stale copy still ends within `CACHE_L1_MAX_TTL`.
 */
import assert from "node:assert/strict";
import { after, afterEach, before, describe, it } from "node:test";
import type { Child } from "../../demo/child.js";
import { type FakeUpstream, POSTS, startFakeUpstream } from "../../demo/fake-upstream.js";
import {
  ADMIN_TOKEN,
  cacheHealth,
  cacheStatus,
  invalidate,
  isHit,
  redisCli,
  startInstances,
  stopAll,
  type Timed,
  timed,
  titleOf,
  untilHit,
} from "../helpers/fleet.js";
import { waitFor } from "../helpers/ports.js";
import { type RedisServer, startRedis } from "../helpers/redis.js";

/**
 * Read `url` one request after the other until `until()` says stop. Every answer is kept in
 * `seen`, which fills as it goes.
 */
function watch(url: string, until: (seen: readonly Timed[]) => boolean) {
  const seen: Timed[] = [];
  const done = (async () => {
    while (!until(seen)) {
      const response = await timed(url);
      assert.equal(response.status, 200);
      seen.push(response);
    }
    return seen;
  })();
  return { seen, done };
}

describe("two tiered demo instances sharing one Redis", { timeout: 90_000 }, () => {
  let fake: FakeUpstream;
  let redis: RedisServer;
  let pair: Child[] = [];

  before(async () => {
    fake = await startFakeUpstream({ latencyMs: 0 });
    redis = await startRedis();
  });
  after(async () => {
    await fake?.close();
    await redis?.stop();
  });
  afterEach(async () => {
    // Whatever a test did to the subscriptions, the next one starts clean.
    await redisCli(redis.port, "ACL", "SETUSER", "default", "allchannels").catch(() => {});
    await stopAll(pair);
    pair = [];
    fake.reset();
  });

  it("a tag invalidated on A: B stops serving the old body within 100 ms", async () => {
    pair = await startInstances(2, {
      UPSTREAM_URL: fake.url,
      REDIS_URL: redis.url,
      ADMIN_TOKEN,
      // Not a timeout test: a loaded machine must not turn a slow Redis reply into a miss.
      CACHE_STORE_TIMEOUT: "1s",
    });
    const [a, b] = pair as [Child, Child];
    await untilHit(`${a.url}/posts/3`);
    await untilHit(`${b.url}/posts/3`);
    fake.editPost(3, { title: "edited after the invalidation" });

    let invalidatedAt = Number.POSITIVE_INFINITY;
    // Until B has answered three reads sent 100 ms or more after the invalidation returned
    // (however long a loaded machine makes them take).
    const watching = watch(
      `${b.url}/posts/3`,
      (seen) => seen.filter((r) => r.sentAt >= invalidatedAt + 100).length >= 3,
    );
    // B serves the cached (old) body for a while before the invalidation.
    await waitFor(() => watching.seen.length >= 5, "B to answer a few reads");
    const response = await invalidate(a, { tags: ["post:3"] });
    invalidatedAt = response.sentAt + response.ms;
    assert.equal(response.status, 200);
    const seen = await watching.done;

    const before = seen.filter((r) => r.sentAt + r.ms < response.sentAt);
    assert.ok(before.length >= 3, `${before.length} reads before the invalidation`);
    for (const r of before) {
      assert.ok(isHit(r), cacheStatus(r));
      assert.equal(titleOf(r), POSTS[2]!.title);
    }
    const late = seen.filter((r) => r.sentAt >= invalidatedAt + 100);
    const timeline = seen
      .filter((r) => r.sentAt >= response.sentAt)
      .map(
        (r) =>
          `+${(r.sentAt - invalidatedAt).toFixed(0)} ms (${r.ms.toFixed(0)} ms): ${titleOf(r)}`,
      );
    const stale = late.filter((r) => titleOf(r) !== "edited after the invalidation");
    assert.deepEqual(
      stale,
      [],
      `no old body from B once 100 ms have passed:\n${timeline.join("\n")}`,
    );
    const firstNew = seen.find((r) => titleOf(r) === "edited after the invalidation")!;
    const lastOld = seen.findLast((r) => titleOf(r) === POSTS[2]!.title)!;
    assert.ok(lastOld.sentAt < firstNew.sentAt, "never the old body again after the new one");
    assert.equal(titleOf(await timed(`${a.url}/posts/3`)), "edited after the invalidation");
  });

  it("a bus message lost by killing the subscriber connections: the reconnect drops B's in-process tier, and stale data ends within CACHE_L1_MAX_TTL", async () => {
    const L1_MAX_TTL_MS = 4_000;
    pair = await startInstances(2, {
      UPSTREAM_URL: fake.url,
      REDIS_URL: redis.url,
      ADMIN_TOKEN,
      // Not a timeout test: a loaded machine must not turn a slow Redis reply into a miss.
      CACHE_STORE_TIMEOUT: "1s",

      CACHE_L1_MAX_TTL: `${L1_MAX_TTL_MS}ms`,
    });
    const [a, b] = pair as [Child, Child];

    // 1. The reconnect drops B's in-process tier. B holds /posts/6 in process; removing it
    // from Redis (behind everyone's back: no message) changes nothing for B until then.
    const heldAt = performance.now();
    await untilHit(`${b.url}/posts/6`);
    await redisCli(redis.port, "DEL", "cachet:@http:/posts/6");
    fake.reset();
    assert.ok(isHit(await timed(`${b.url}/posts/6`)), "B answers from its in-process tier");
    const resets = (await cacheHealth(b)).bus?.resets ?? 0;
    const killed = Number(await redisCli(redis.port, "CLIENT", "KILL", "TYPE", "pubsub"));
    assert.ok(killed >= 2, `${killed} subscriber connections killed (A's and B's)`);
    await waitFor(
      async () => {
        const bus = (await cacheHealth(b)).bus;
        return bus?.state === "up" && bus.resets > resets;
      },
      "B to resubscribe and drop its in-process tier",
      5_000,
    );
    assert.equal((await cacheHealth(b)).bus?.lastReset, "reconnected");
    const after = await timed(`${b.url}/posts/6`);
    assert.equal(cacheStatus(after), "cachet; fwd=uri-miss; stored", "B's copy is gone");
    assert.equal(fake.calls(), 1);
    assert.ok(
      performance.now() - heldAt < L1_MAX_TTL_MS,
      "dropped by the reconnect, not by the lifetime cap",
    );

    // 2. An invalidation published while the subscriptions are down: B's stale copy does not
    // outlive CACHE_L1_MAX_TTL (in practice it ends at the reconnect).
    await untilHit(`${b.url}/posts/8`);
    fake.editPost(8, { title: "edited while the bus was down" });
    await redisCli(redis.port, "CLIENT", "KILL", "TYPE", "pubsub");
    const response = await invalidate(a, { tags: ["post:8"] });
    assert.equal(response.status, 200);
    const invalidatedAt = response.sentAt + response.ms;
    const deadline = invalidatedAt + L1_MAX_TTL_MS + 1_000;
    const seen = await watch(`${b.url}/posts/8`, (s) => {
      const last = s.at(-1);
      if (last === undefined) return false;
      if (last.sentAt > deadline) return true; // failed: asserted below
      return titleOf(last) === "edited while the bus was down" && last.sentAt > invalidatedAt + 200;
    }).done;
    const firstNew = seen.find((r) => titleOf(r) === "edited while the bus was down");
    assert.ok(firstNew, "B served the new body");
    assert.ok(
      firstNew.sentAt - invalidatedAt <= L1_MAX_TTL_MS,
      `stale for ${(firstNew.sentAt - invalidatedAt).toFixed(0)} ms`,
    );
    assert.deepEqual(
      seen.filter((r) => r.sentAt > firstNew.sentAt && titleOf(r) !== titleOf(firstNew)),
      [],
      "never the old body again",
    );
  });

  it("the subscription kept out (no reconnect possible) while a tag is invalidated: B's stale copy ends within CACHE_L1_MAX_TTL", async () => {
    const L1_MAX_TTL_MS = 2_000;
    pair = await startInstances(2, {
      UPSTREAM_URL: fake.url,
      REDIS_URL: redis.url,
      ADMIN_TOKEN,
      // Not a timeout test: a loaded machine must not turn a slow Redis reply into a miss.
      CACHE_STORE_TIMEOUT: "1s",

      CACHE_L1_MAX_TTL: `${L1_MAX_TTL_MS}ms`,
    });
    const [a, b] = pair as [Child, Child];
    // A produces the response; B reads it from Redis (and with it the states of its tags,
    // which the bus then keeps current), and holds it in process.
    await untilHit(`${a.url}/posts/11`);
    const heldAt = performance.now();
    await untilHit(`${b.url}/posts/11`);
    fake.editPost(11, { title: "edited while B could not hear" });

    // Redis refuses pub/sub to the service's user: its subscriber connections are closed and
    // cannot come back, and A's announcement of the invalidation is lost. Reads and writes
    // still work.
    assert.equal(await redisCli(redis.port, "ACL", "SETUSER", "default", "resetchannels"), "OK");
    await waitFor(
      async () => (await cacheHealth(b)).bus?.state === "down",
      "B to know its bus is down",
      5_000,
    );
    const response = await invalidate(a, { tags: ["post:11"] });
    assert.equal(response.status, 200);
    const invalidatedAt = response.sentAt + response.ms;

    const seen: Timed[] = [];
    for (;;) {
      const read = await timed(`${b.url}/posts/11`);
      seen.push(read);
      if (titleOf(read) === "edited while B could not hear") break;
      assert.ok(
        read.sentAt - heldAt <= L1_MAX_TTL_MS + 1_000,
        `B still serves the old body ${(read.sentAt - heldAt).toFixed(0)} ms after taking its copy`,
      );
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    // The message was lost for real: B went on serving its copy for a while...
    assert.equal(titleOf(seen[0]!), POSTS[10]!.title, "the first read after is still stale");
    // ...until its lifetime cap, after which B read the tag's state from Redis.
    const endedAfter = seen.at(-1)!.sentAt - heldAt;
    assert.ok(
      endedAfter <= L1_MAX_TTL_MS + 1_000,
      `stale copy ended ${endedAfter.toFixed(0)} ms after B took it`,
    );
    assert.ok(seen.at(-1)!.sentAt > invalidatedAt);
    for (let i = 0; i < 3; i++) {
      assert.equal(titleOf(await timed(`${b.url}/posts/11`)), "edited while B could not hear");
    }

    // Pub/sub allowed again: B resubscribes, which drops its in-process tier.
    const resets = (await cacheHealth(b)).bus?.resets ?? 0;
    await redisCli(redis.port, "ACL", "SETUSER", "default", "allchannels");
    await waitFor(
      async () => {
        const bus = (await cacheHealth(b)).bus;
        return bus?.state === "up" && bus.resets > resets;
      },
      "B to resubscribe",
      10_000,
      100,
    );
  });
});
