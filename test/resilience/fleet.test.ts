/**
 * Single-flight across a fleet, for real: three demo processes (tiered store, lease on, the
 * defaults with REDIS_URL) sharing one redis-server and one fake upstream. Cold requests
 * spread over the three cost one origin call; when the instance holding the lease dies
 * mid-flight, another one takes over once the lease expires, and every request on the
 * surviving instances is answered.
 */
import assert from "node:assert/strict";
import { after, afterEach, before, describe, it } from "node:test";
import type { Child } from "../../demo/child.js";
import { type FakeUpstream, POSTS, startFakeUpstream } from "../../demo/fake-upstream.js";
import { cacheHealth, startInstances, stopAll, timed } from "../helpers/fleet.js";
import { waitFor } from "../helpers/ports.js";
import { type RedisServer, startRedis } from "../helpers/redis.js";

describe("a fleet of three demo instances on one Redis", { timeout: 90_000 }, () => {
  let fake: FakeUpstream;
  let redis: RedisServer;
  let fleet: Child[] = [];

  before(async () => {
    fake = await startFakeUpstream({ latencyMs: 5 });
    redis = await startRedis();
  });
  after(async () => {
    await fake?.close();
    await redis?.stop();
  });
  afterEach(async () => {
    await stopAll(fleet);
    fleet = [];
  });

  it("600 concurrent cold requests spread over three instances cost exactly one origin call", async () => {
    fleet = await startInstances(3, {
      UPSTREAM_URL: fake.url,
      REDIS_URL: redis.url,
      // The lease is about the fleet, not about Redis's latency: a generous store timeout
      // keeps 200 requests per process on two cores from turning a slow reply into a miss.
      CACHE_STORE_TIMEOUT: "1s",
    });
    for (const instance of fleet) assert.equal((await cacheHealth(instance)).lease, true);
    fake.reset();
    // Long enough for every request to reach its instance while the one origin call runs.
    fake.setLatency(1_500);
    const responses = await Promise.all(
      Array.from({ length: 600 }, (_, i) => timed(`${fleet[i % 3]!.url}/posts?userId=3`)),
    );
    const failed = responses.filter((r) => r.status !== 200).map((r) => r.status);
    assert.deepEqual(failed, [], "every request answered 200");
    assert.ok(
      responses.every((r) => r.body.equals(responses[0]!.body)),
      "one body for all",
    );
    assert.equal(JSON.parse(responses[0]!.body.toString()).length, 10);
    assert.equal(fake.calls(), 1, "one origin call for the whole fleet");
  });

  it("the lease holder killed mid-flight: another instance takes over within about a second (the lease is renewed, not long); every request on the others is answered", async () => {
    // The lease lives 1 s and is renewed every third of it while the holder runs: once the
    // holder is dead, it expires within 1 s and a waiter polling every 100 ms takes it over.
    const TAKEOVER_BOUND_MS = 1_500;
    fleet = await startInstances(3, {
      UPSTREAM_URL: fake.url,
      REDIS_URL: redis.url,
      UPSTREAM_TIMEOUT: "2",
      CACHE_STORE_TIMEOUT: "1s",
    });
    const [holder, ...others] = fleet as [Child, Child, Child];
    fake.reset();
    fake.setLatency(1_800); // slow: the holder is still waiting on it when it dies
    const url = "/posts/7";

    const held = timed(`${holder.url}${url}`).catch((error: Error) => error);
    await waitFor(() => fake.calls() === 1, "the holder's call to reach the origin");
    const leasedAt = performance.now();
    // The others miss too and wait on the holder's lease.
    const waiting = Array.from({ length: 40 }, (_, i) => timed(`${others[i % 2]!.url}${url}`));
    await new Promise((resolve) => setTimeout(resolve, 200));
    assert.equal(fake.calls(), 1, "the others wait instead of calling the origin");

    holder.process.kill("SIGKILL");
    const killedAt = performance.now();
    assert.equal(await holder.exited(), "SIGKILL");
    assert.ok((await held) instanceof Error, "the killed holder's own client gets no answer");
    fake.setLatency(5);

    const answers = await Promise.all(waiting);
    const statuses = answers.map((a) => a.status);
    assert.deepEqual(
      statuses.filter((s) => s !== 200),
      [],
      "every request on the surviving instances answered 200",
    );
    for (const answer of answers) {
      assert.equal(JSON.parse(answer.body.toString()).title, POSTS[6]!.title);
      // Answered soon after the holder died (the origin now answers in 5 ms), not after the
      // whole upstream timeout a long lease would have lasted.
      assert.ok(
        answer.sentAt + answer.ms <= killedAt + TAKEOVER_BOUND_MS,
        `answered ${(answer.sentAt + answer.ms - killedAt).toFixed(0)} ms after the holder's SIGKILL (bound ${TAKEOVER_BOUND_MS} ms; lease taken ${(killedAt - leasedAt).toFixed(0)} ms before it)`,
      );
    }
    assert.equal(
      fake.calls(),
      2,
      "one origin call by the holder, one by the instance that took over",
    );
  });
});
