import assert from "node:assert/strict";
import { request as httpRequest } from "node:http";
import { after, before, describe, it } from "node:test";
import type { Child } from "../../demo/child.js";
import { type FakeUpstream, startFakeUpstream } from "../../demo/fake-upstream.js";
import { waitFor } from "../helpers/ports.js";
import { type RedisCluster, startRedisCluster } from "../helpers/redis-cluster.js";
import { startService } from "./helpers.js";

/**
 * The demo on a 3-master Redis Cluster, over real sockets: three instances given
 * `REDIS_URL=redis+cluster://…` (or `REDIS_CLUSTER_NODES`) share the cluster as their second
 * tier; one instance's miss is another's hit, an invalidation on one reaches the others, and
 * concurrent cold requests over the fleet cost one origin call (the lease on the cluster).
 */

const HIT = /^cachet; hit; ttl=\d+$/;
const ADMIN_TOKEN = "cluster-test-admin-token-0123456789";

/**
 * A request as it reaches an instance behind a load balancer: with the public host, the same
 * for every instance (cachet keys on the host). fetch cannot set Host, so node:http does.
 */
function get(
  url: string,
  init: { method?: string; headers?: Record<string, string>; body?: string } = {},
) {
  return new Promise<{ status: number; headers: Headers; body: Buffer }>((resolve, reject) => {
    const req = httpRequest(
      url,
      {
        method: init.method ?? "GET",
        headers: { ...init.headers, host: "api.example" },
        agent: false,
        timeout: 15_000,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("error", reject);
        res.on("end", () => {
          const headers = new Headers();
          for (const [name, value] of Object.entries(res.headers)) {
            if (typeof value === "string") headers.set(name, value);
            else if (Array.isArray(value)) for (const v of value) headers.append(name, v);
          }
          resolve({ status: res.statusCode ?? 0, headers, body: Buffer.concat(chunks) });
        });
      },
    );
    req.on("timeout", () => req.destroy(new Error(`timed out: ${url}`)));
    req.on("error", reject);
    req.end(init.body);
  });
}

describe("demo service on a Redis Cluster", { timeout: 120_000 }, () => {
  let cluster: RedisCluster | undefined;
  let fake: FakeUpstream | undefined;
  const services: Child[] = [];

  before(async () => {
    cluster = await startRedisCluster({ masters: 3 });
    fake = await startFakeUpstream({ latencyMs: 20 });
    const common = {
      UPSTREAM_URL: fake.url,
      CACHE_TTL: "60",
      ADMIN_TOKEN,
      // Generous: the services, the cluster and the test share a small machine.
      CACHE_STORE_TIMEOUT: "1s",
    };
    const nodes = cluster.nodes.map((n) => n.address).join(",");
    services.push(
      ...(await Promise.all([
        startService({ ...common, REDIS_URL: cluster.url }),
        startService({ ...common, REDIS_CLUSTER_NODES: nodes }),
        startService({ ...common, REDIS_URL: `redis+cluster://${nodes}` }),
      ])),
    );
  });
  after(async () => {
    const codes = await Promise.all(services.map((s) => s.stop()));
    await fake?.close();
    await cluster?.stop();
    for (const code of codes) assert.equal(code, 0, "the service exits cleanly on SIGTERM");
  });

  it("every instance reports the tiered store on Redis, connected, bus up", async () => {
    for (const service of services) {
      // The connection and the bus open on first use.
      await get(`${service.url}/posts/1`);
      await waitFor(
        async () => {
          const health = JSON.parse((await get(`${service.url}/health`)).body.toString()) as {
            cache: { store: string; redis: string; connection: string; bus?: { state: string } };
          };
          return (
            health.cache.store === "tiered" &&
            health.cache.redis === "up" &&
            health.cache.connection === "ready" &&
            health.cache.bus?.state === "up"
          );
        },
        `${service.url} to be connected to the cluster, its bus up`,
        10_000,
      );
    }
  });

  it("a response stored by one instance is a hit on the other; an invalidation on one reaches the other", async () => {
    const [a, b] = services as [Child, Child];
    fake!.reset();
    const paths = ["/posts", "/posts/2", "/posts/3", "/posts/4", "/posts/5"];
    for (const path of paths) {
      const miss = await get(`${a.url}${path}`);
      assert.equal(miss.status, 200);
    }
    const calls = fake!.calls();
    assert.equal(calls, paths.length, "one upstream call per path");
    for (const path of paths) {
      // b never saw these paths: its hits come from the cluster (entries on every master).
      const hit = await get(`${b.url}${path}`);
      assert.equal(hit.status, 200);
      assert.match(hit.headers.get("cache-status") ?? "", HIT, `${path} on the other instance`);
    }
    assert.equal(fake!.calls(), calls, "no upstream call for the other instance's hits");
    const invalidated = await get(`${a.url}/cache/invalidate`, {
      method: "POST",
      headers: { authorization: `Bearer ${ADMIN_TOKEN}`, "content-type": "application/json" },
      body: JSON.stringify({ tags: ["posts"] }),
    });
    assert.equal(invalidated.status, 200);
    await waitFor(
      async () => !HIT.test((await get(`${b.url}/posts`)).headers.get("cache-status") ?? ""),
      "the other instance to see the invalidation",
      5_000,
    );
    assert.ok(fake!.calls() > calls, "the invalidated response came from the upstream again");
  });

  it("600 concurrent cold requests spread over the three instances cost exactly one origin call", async () => {
    fake!.reset();
    // Long enough for every request to reach its instance while the one origin call runs.
    fake!.setLatency(1_500);
    const responses = await Promise.all(
      Array.from({ length: 600 }, (_, i) => get(`${services[i % 3]!.url}/posts?userId=4`)),
    );
    fake!.setLatency(20);
    const failed = responses.filter((r) => r.status !== 200).map((r) => r.status);
    assert.deepEqual(failed, [], "every request answered 200");
    assert.ok(
      responses.every((r) => r.body.equals(responses[0]!.body)),
      "one body for all",
    );
    assert.equal(fake!.calls(), 1, "one origin call for the whole fleet");
  });
});
