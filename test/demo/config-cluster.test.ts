import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ConfigError, loadConfig } from "../../demo/config.js";

/** Load with `env`, expecting a ConfigError that names exactly `variables`. */
function rejects(env: Record<string, string>, variables: string[]): ConfigError {
  let caught: unknown;
  try {
    loadConfig(env);
  } catch (error) {
    caught = error;
  }
  assert.ok(caught instanceof ConfigError, `expected a ConfigError for ${JSON.stringify(env)}`);
  assert.deepEqual(caught.variables, variables);
  return caught;
}

describe("demo config: Redis Cluster and Sentinel", () => {
  it("reads a redis+cluster:// or redis+sentinel:// REDIS_URL, defaulting to the tiered store and the lease", () => {
    for (const REDIS_URL of [
      "redis+cluster://127.0.0.1:7000,127.0.0.1:7001,127.0.0.1:7002",
      "rediss+cluster://user:pw@cache-0.internal:6379,[::1]:7001",
      "redis+cluster://cache.internal",
      "redis+sentinel://127.0.0.1:26379,127.0.0.1:26380/mymaster",
    ]) {
      const config = loadConfig({ REDIS_URL });
      assert.equal(config.redisUrl, REDIS_URL);
      assert.equal(config.cacheStore, "tiered");
      assert.equal(config.cacheLease, true);
    }
  });

  it("reads REDIS_CLUSTER_NODES as a redis+cluster:// URL", () => {
    const config = loadConfig({ REDIS_CLUSTER_NODES: "127.0.0.1:7000, 127.0.0.1:7001" });
    assert.equal(config.redisUrl, "redis+cluster://127.0.0.1:7000,127.0.0.1:7001");
    assert.equal(config.cacheStore, "tiered");
    assert.equal(
      loadConfig({ REDIS_CLUSTER_NODES: "127.0.0.1:7000", CACHE_STORE: "redis" }).cacheStore,
      "redis",
    );
  });

  it("rejects malformed cluster and Sentinel URLs and node lists, naming the variable, without echoing a password", () => {
    for (const REDIS_URL of [
      "redis+cluster://",
      "redis+cluster://h:99999",
      "redis+cluster://h:1,,h:2",
      "redis+sentinel://h:26379",
      "redis+sentinel://h:26379/a/b",
      "redis+shard://h:1",
    ]) {
      rejects({ REDIS_URL }, ["REDIS_URL"]);
    }
    const error = rejects({ REDIS_URL: "redis+cluster://user:s3cret@h:1,h:99999" }, ["REDIS_URL"]);
    assert.doesNotMatch(error.message, /s3cret/);
    for (const REDIS_CLUSTER_NODES of ["h:1,,h:2", "h:0", "redis://h:1"]) {
      rejects({ REDIS_CLUSTER_NODES }, ["REDIS_CLUSTER_NODES"]);
    }
    rejects({ REDIS_CLUSTER_NODES: "h:1", REDIS_URL: "redis://h:6379" }, ["REDIS_CLUSTER_NODES"]);
  });
});
