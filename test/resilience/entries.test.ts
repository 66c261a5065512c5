/**
 * Bad entries, for real: corrupt or foreign bytes written straight into the demo's Redis
 * under a cached response's key, and responses larger than `CACHE_MAX_ENTRY_SIZE`. Neither
 * may fail a request: the first is a miss (reported, then overwritten), the second is served
 * and never stored.
 */
import assert from "node:assert/strict";
import { after, afterEach, before, describe, it } from "node:test";
import type { Child } from "../../demo/child.js";
import { type FakeUpstream, startFakeUpstream } from "../../demo/fake-upstream.js";
import { logRecords, startService } from "../demo/helpers.js";
import { cacheStatus, isHit, redisCli, stopAll, timed, untilHit } from "../helpers/fleet.js";
import { waitFor } from "../helpers/ports.js";
import { type RedisServer, startRedis } from "../helpers/redis.js";

describe("bad entries under a running demo", { timeout: 60_000 }, () => {
  let fake: FakeUpstream;
  let redis: RedisServer;
  let service: Child | undefined;

  before(async () => {
    fake = await startFakeUpstream({ latencyMs: 0 });
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

  it("corrupt or foreign bytes under a key: a miss, an error reported, the entry overwritten", async () => {
    // Redis only, so that every request reads the entry from Redis.
    service = await startService({
      UPSTREAM_URL: fake.url,
      REDIS_URL: redis.url,
      CACHE_STORE: "redis",
      // Not a timeout test: a loaded machine must not turn a slow Redis reply into a miss.
      CACHE_STORE_TIMEOUT: "1s",
    });
    const cases = [
      ["/posts/9", "\u00ff\u00fe garbage, not an entry"],
      ["/posts/10", JSON.stringify({ status: 200, body: "a foreign cache's value" })],
    ] as const;
    for (const [path, bytes] of cases) {
      const url = `${service.url}${path}`;
      const original = await untilHit(url);
      const key = `cachet:@http:${path}`;
      assert.equal(await redisCli(redis.port, "EXISTS", key), "1", "the response is in Redis");
      assert.equal(await redisCli(redis.port, "SET", key, bytes, "PX", "60000"), "OK");

      fake.reset();
      const read = await timed(url);
      assert.equal(read.status, 200);
      assert.equal(cacheStatus(read), "cachet; fwd=uri-miss; stored", "a miss, stored again");
      assert.ok(read.body.equals(original.body), "the origin's body");
      assert.equal(fake.calls(), 1);
      // The response goes out as the new entry is written: wait for the write.
      await waitFor(
        async () => (await redisCli(redis.port, "GET", key)) !== bytes,
        "the bad bytes to be overwritten",
      );
      const again = await untilHit(url);
      assert.ok(again.body.equals(original.body));
      assert.equal(fake.calls(), 1, "served from the rewritten entry");
    }
    // Reported (once: the logger rate-limits a repeated error), never as a crash.
    await waitFor(
      () => logRecords(service!).some((r) => /decode/.test(String(r.msg))),
      "the corrupt entry to be reported in the log",
    );
    assert.equal(service.process.exitCode, null);
  });

  it("a response larger than CACHE_MAX_ENTRY_SIZE is served in full and never stored", async () => {
    service = await startService({
      UPSTREAM_URL: fake.url,
      REDIS_URL: redis.url,
      // Not a timeout test: a loaded machine must not turn a slow Redis reply into a miss.
      CACHE_STORE_TIMEOUT: "1s",
      CACHE_MAX_ENTRY_SIZE: "10000", // /posts is 27 KB, a post about 300 bytes
    });
    fake.reset();
    const upstream = await timed(`${fake.url}/posts`);
    fake.reset();
    for (let i = 0; i < 3; i++) {
      const response = await timed(`${service.url}/posts`, {
        headers: { "accept-encoding": "identity" },
      });
      assert.equal(response.status, 200);
      assert.ok(response.body.equals(upstream.body), "the whole body");
      assert.equal(cacheStatus(response), "cachet; fwd=uri-miss; detail=too-large");
    }
    assert.equal(fake.calls(), 3, "each request went to the origin");
    assert.equal(await redisCli(redis.port, "EXISTS", "cachet:@http:/posts"), "0");

    // A small response on the same service is stored as usual.
    const small = await untilHit(`${service.url}/posts/1`);
    assert.ok(isHit(small));
    assert.equal(await redisCli(redis.port, "EXISTS", "cachet:@http:/posts/1"), "1");
  });
});
