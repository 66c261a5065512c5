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
  for (const variable of variables) assert.match(caught.message, new RegExp(`\\b${variable}\\b`));
  return caught;
}

describe("demo config: Memcached (CACHE_STORE=memcached, MEMCACHED_URL)", () => {
  it("reads MEMCACHED_URL: one server, a list, with or without memcached://", () => {
    const one = loadConfig({ CACHE_STORE: "memcached", MEMCACHED_URL: "127.0.0.1:11211" });
    assert.equal(one.cacheStore, "memcached");
    assert.equal(one.memcachedServers, "127.0.0.1:11211");
    assert.equal(one.dynamodb, undefined);
    assert.equal(
      loadConfig({ CACHE_STORE: "memcached", MEMCACHED_URL: "memcached://a:1, b:2,c" })
        .memcachedServers,
      "a:1,b:2,c",
    );
    assert.equal(
      loadConfig({ CACHE_STORE: "memcached", MEMCACHED_URL: "user:secret@cache.internal:11211" })
        .memcachedServers,
      "user:secret@cache.internal:11211",
    );
  });

  it("MEMCACHED_URL alone makes memcached the default store; REDIS_URL still wins", () => {
    assert.equal(loadConfig({ MEMCACHED_URL: "127.0.0.1:11211" }).cacheStore, "memcached");
    const both = loadConfig({ MEMCACHED_URL: "127.0.0.1:11211", REDIS_URL: "redis://r:6379" });
    assert.equal(both.cacheStore, "tiered");
    assert.equal(both.memcachedServers, undefined, "not read when the store is not memcached");
  });

  it("the lease is on by default on Memcached (ADD), and can be turned off", () => {
    const env = { CACHE_STORE: "memcached", MEMCACHED_URL: "127.0.0.1:11211" };
    assert.equal(loadConfig(env).cacheLease, true);
    assert.equal(loadConfig({ ...env, CACHE_LEASE: "off" }).cacheLease, false);
  });

  it("rejects CACHE_STORE=memcached without MEMCACHED_URL, and a malformed MEMCACHED_URL, naming them", () => {
    const missing = rejects({ CACHE_STORE: "memcached" }, ["CACHE_STORE"]);
    assert.match(missing.message, /MEMCACHED_URL is not set/);
    for (const url of ["127.0.0.1:99999", "host:port", "a:1,,b:2", "http://x:1", "bad_host!:1"]) {
      const error = rejects({ CACHE_STORE: "memcached", MEMCACHED_URL: url }, ["MEMCACHED_URL"]);
      assert.match(error.message, /host:port/, url);
    }
  });

  it("never echoes a password from MEMCACHED_URL", () => {
    const error = rejects({ CACHE_STORE: "memcached", MEMCACHED_URL: "memcached://u:hunter2@:1" }, [
      "MEMCACHED_URL",
    ]);
    assert.ok(!error.message.includes("hunter2"), error.message);
  });
});

describe("demo config: DynamoDB (CACHE_STORE=dynamodb, DYNAMODB_TABLE, DYNAMODB_ENDPOINT)", () => {
  it("on AWS: table 'cachet' by default, region from AWS_REGION or AWS_DEFAULT_REGION", () => {
    const config = loadConfig({ CACHE_STORE: "dynamodb", AWS_REGION: "eu-west-1" });
    assert.equal(config.cacheStore, "dynamodb");
    assert.deepEqual(config.dynamodb, {
      table: "cachet",
      endpoint: undefined,
      region: "eu-west-1",
      localCredentials: false,
    });
    assert.equal(config.cacheLease, true, "the lease uses conditional writes");
    assert.equal(
      loadConfig({ CACHE_STORE: "dynamodb", AWS_DEFAULT_REGION: "us-west-2" }).dynamodb?.region,
      "us-west-2",
    );
    assert.equal(
      loadConfig({ CACHE_STORE: "dynamodb" }).dynamodb?.region,
      undefined,
      "left to the SDK",
    );
  });

  it("on a local endpoint: any region and placeholder credentials unless AWS's are set", () => {
    const local = loadConfig({
      CACHE_STORE: "dynamodb",
      DYNAMODB_ENDPOINT: "http://127.0.0.1:4567",
      DYNAMODB_TABLE: "demo-cache",
    });
    assert.deepEqual(local.dynamodb, {
      table: "demo-cache",
      endpoint: "http://127.0.0.1:4567",
      region: "us-east-1",
      localCredentials: true,
    });
    const withKeys = loadConfig({
      CACHE_STORE: "dynamodb",
      DYNAMODB_ENDPOINT: "http://127.0.0.1:4567",
      AWS_ACCESS_KEY_ID: "AKIA…",
      AWS_REGION: "eu-central-1",
    });
    assert.equal(withKeys.dynamodb?.localCredentials, false);
    assert.equal(withKeys.dynamodb?.region, "eu-central-1");
  });

  it("DynamoDB variables are ignored unless CACHE_STORE=dynamodb", () => {
    const config = loadConfig({ DYNAMODB_TABLE: "x", DYNAMODB_ENDPOINT: "not a url" });
    assert.equal(config.cacheStore, "memory");
    assert.equal(config.dynamodb, undefined);
  });

  it("rejects a malformed DYNAMODB_TABLE or DYNAMODB_ENDPOINT, naming both", () => {
    const error = rejects(
      { CACHE_STORE: "dynamodb", DYNAMODB_TABLE: "no spaces", DYNAMODB_ENDPOINT: "localhost:4567" },
      ["DYNAMODB_TABLE", "DYNAMODB_ENDPOINT"],
    );
    assert.match(error.message, /"no spaces"/);
    rejects({ CACHE_STORE: "dynamodb", DYNAMODB_TABLE: "ab" }, ["DYNAMODB_TABLE"]);
    rejects({ CACHE_STORE: "dynamodb", DYNAMODB_ENDPOINT: "ftp://h:1" }, ["DYNAMODB_ENDPOINT"]);
  });

  it("CACHE_STORE names every store, and the lease still needs a shared one", () => {
    const error = rejects({ CACHE_STORE: "mongo" }, ["CACHE_STORE"]);
    assert.match(error.message, /memory, redis, tiered, memcached, dynamodb, none/);
    const memory = rejects({ CACHE_STORE: "memory", CACHE_LEASE: "on" }, ["CACHE_LEASE"]);
    assert.match(memory.message, /Memcached or DynamoDB/);
  });
});
