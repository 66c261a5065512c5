import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ConfigError, loadConfig, parseSeconds, redact } from "../../demo/config.js";

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

describe("demo config", () => {
  it("has the article's defaults", () => {
    assert.deepEqual(loadConfig({}), {
      port: 8000,
      host: "127.0.0.1",
      upstreamUrl: "https://jsonplaceholder.typicode.com",
      upstreamTimeoutMs: 10_000,
      redisUrl: undefined,
      cacheStore: "memory",
      cacheTtlMs: 60_000,
      cacheStaleWhileRevalidateMs: 0,
      cacheStaleIfErrorMs: 300_000,
      cacheLease: false,
      cacheL1MaxTtlMs: 60_000,
      cacheStoreTimeoutMs: 50,
      cacheMaxEntrySize: 5_242_880,
      adminToken: undefined,
      logLevel: "info",
    });
  });

  it("reads PORT, allowing 0 (any free port)", () => {
    assert.equal(loadConfig({ PORT: "3000" }).port, 3000);
    assert.equal(loadConfig({ PORT: "0" }).port, 0);
    assert.equal(loadConfig({ PORT: "65535" }).port, 65_535);
  });

  it("rejects a malformed PORT, naming it", () => {
    for (const PORT of ["abc", "-1", "65536", "80.5", "8000x", "1e3"]) {
      const error = rejects({ PORT }, ["PORT"]);
      assert.ok(error.message.includes(JSON.stringify(PORT)), error.message);
    }
  });

  it("reads HOST and rejects one with spaces or slashes", () => {
    assert.equal(loadConfig({ HOST: "0.0.0.0" }).host, "0.0.0.0");
    assert.equal(loadConfig({ HOST: "::1" }).host, "::1");
    rejects({ HOST: "local host" }, ["HOST"]);
    rejects({ HOST: "http://x" }, ["HOST"]);
  });

  it("reads UPSTREAM_URL without its trailing slash", () => {
    assert.equal(
      loadConfig({ UPSTREAM_URL: "http://127.0.0.1:3001/" }).upstreamUrl,
      "http://127.0.0.1:3001",
    );
    assert.equal(
      loadConfig({ UPSTREAM_URL: "https://api.example.test/v1/" }).upstreamUrl,
      "https://api.example.test/v1",
    );
  });

  it("rejects a malformed UPSTREAM_URL, naming it", () => {
    for (const UPSTREAM_URL of [
      "not a url",
      "ftp://x.test",
      "http://x.test/?a=1",
      "localhost:3001",
    ]) {
      rejects({ UPSTREAM_URL }, ["UPSTREAM_URL"]);
    }
  });

  it("reads UPSTREAM_TIMEOUT as seconds or a duration string", () => {
    assert.equal(loadConfig({ UPSTREAM_TIMEOUT: "5" }).upstreamTimeoutMs, 5_000);
    assert.equal(loadConfig({ UPSTREAM_TIMEOUT: "0.25" }).upstreamTimeoutMs, 250);
    assert.equal(loadConfig({ UPSTREAM_TIMEOUT: "1500ms" }).upstreamTimeoutMs, 1_500);
    assert.equal(loadConfig({ UPSTREAM_TIMEOUT: "2m" }).upstreamTimeoutMs, 120_000);
  });

  it("rejects a malformed UPSTREAM_TIMEOUT, naming it", () => {
    for (const UPSTREAM_TIMEOUT of ["soon", "0", "-5", "-1s", "0s", "5 parsecs"]) {
      rejects({ UPSTREAM_TIMEOUT }, ["UPSTREAM_TIMEOUT"]);
    }
  });

  it("reads CACHE_TTL: a bare number is seconds, or a duration string", () => {
    assert.equal(loadConfig({ CACHE_TTL: "60" }).cacheTtlMs, 60_000);
    assert.equal(loadConfig({ CACHE_TTL: "1.5" }).cacheTtlMs, 1_500);
    assert.equal(loadConfig({ CACHE_TTL: "5m" }).cacheTtlMs, 300_000);
    assert.equal(loadConfig({ CACHE_TTL: "90s" }).cacheTtlMs, 90_000);
    assert.equal(loadConfig({ CACHE_TTL: "1h" }).cacheTtlMs, 3_600_000);
  });

  it("rejects a malformed CACHE_TTL, naming it and what it accepts", () => {
    for (const CACHE_TTL of ["forever", "0", "-60", "5 minutes please", "1e3", "60 s s", "0ms"]) {
      const error = rejects({ CACHE_TTL }, ["CACHE_TTL"]);
      assert.match(error.message, /seconds/);
      assert.match(error.message, /"5m"/);
    }
  });

  it("reads REDIS_URL and then defaults CACHE_STORE to tiered, with the lease on", () => {
    const config = loadConfig({ REDIS_URL: "redis://127.0.0.1:6380" });
    assert.equal(config.redisUrl, "redis://127.0.0.1:6380");
    assert.equal(config.cacheStore, "tiered");
    assert.equal(config.cacheLease, true);
    assert.equal(loadConfig({ REDIS_URL: "rediss://cache.internal:6380/2" }).cacheStore, "tiered");
  });

  it("rejects a malformed REDIS_URL, naming it, without echoing its password", () => {
    for (const REDIS_URL of [
      "localhost:6379",
      "http://127.0.0.1:6379",
      "redis://",
      "nonsense",
      "redis://h:99999",
    ]) {
      rejects({ REDIS_URL }, ["REDIS_URL"]);
    }
    const error = rejects({ REDIS_URL: "http://user:s3cret@h:6379" }, ["REDIS_URL"]);
    assert.doesNotMatch(error.message, /s3cret/);
  });

  it("reads CACHE_STORE: memory, redis, tiered, none; explicit memory wins over REDIS_URL", () => {
    assert.equal(loadConfig({ CACHE_STORE: "none" }).cacheStore, "none");
    assert.equal(
      loadConfig({ CACHE_STORE: "Tiered", REDIS_URL: "redis://127.0.0.1:6379" }).cacheStore,
      "tiered",
    );
    assert.equal(loadConfig({ CACHE_STORE: "memory" }).cacheStore, "memory");
    assert.equal(loadConfig({ CACHE_STORE: "MEMORY" }).cacheStore, "memory");
    assert.equal(
      loadConfig({ CACHE_STORE: "memory", REDIS_URL: "redis://127.0.0.1:6379" }).cacheStore,
      "memory",
    );
    assert.equal(
      loadConfig({ CACHE_STORE: "redis", REDIS_URL: "redis://127.0.0.1:6379" }).cacheStore,
      "redis",
    );
  });

  it("rejects an unknown CACHE_STORE, and redis or tiered without REDIS_URL, naming CACHE_STORE", () => {
    const error = rejects({ CACHE_STORE: "mongo" }, ["CACHE_STORE"]);
    assert.match(error.message, /memory, redis, tiered, memcached, dynamodb, none/);
    const missing = rejects({ CACHE_STORE: "redis" }, ["CACHE_STORE"]);
    assert.match(missing.message, /REDIS_URL is not set/);
    rejects({ CACHE_STORE: "tiered" }, ["CACHE_STORE"]);
  });

  it("reads CACHE_STALE_WHILE_REVALIDATE and CACHE_STALE_IF_ERROR: seconds or durations, 0 for off", () => {
    for (const [variable, field] of [
      ["CACHE_STALE_WHILE_REVALIDATE", "cacheStaleWhileRevalidateMs"],
      ["CACHE_STALE_IF_ERROR", "cacheStaleIfErrorMs"],
    ] as const) {
      assert.equal(loadConfig({ [variable]: "30" })[field], 30_000);
      assert.equal(loadConfig({ [variable]: "0.5" })[field], 500);
      assert.equal(loadConfig({ [variable]: "10m" })[field], 600_000);
      assert.equal(loadConfig({ [variable]: "0" })[field], 0);
      assert.equal(loadConfig({ [variable]: "0s" })[field], 0);
      for (const value of ["soon", "-5", "-1s", "5 parsecs", "1e3"]) {
        const error = rejects({ [variable]: value }, [variable]);
        assert.ok(error.message.includes(JSON.stringify(value)), error.message);
        assert.match(error.message, /0 for off/);
      }
    }
    // A documented default above 0: an upstream outage is served from stale copies.
    assert.equal(loadConfig({}).cacheStaleIfErrorMs, 300_000);
    assert.equal(loadConfig({}).cacheStaleWhileRevalidateMs, 0);
  });

  it("reads CACHE_LEASE as a switch, on by default with Redis only", () => {
    const redis = { REDIS_URL: "redis://127.0.0.1:6379" };
    assert.equal(loadConfig({ ...redis, CACHE_STORE: "redis" }).cacheLease, true);
    assert.equal(loadConfig({ CACHE_STORE: "memory" }).cacheLease, false);
    for (const off of ["off", "false", "0", "NO"]) {
      assert.equal(loadConfig({ ...redis, CACHE_LEASE: off }).cacheLease, false, off);
    }
    for (const on of ["on", "true", "1", "Yes"]) {
      assert.equal(loadConfig({ ...redis, CACHE_LEASE: on }).cacheLease, true, on);
    }
    assert.equal(loadConfig({ CACHE_STORE: "none", CACHE_LEASE: "on" }).cacheLease, false);
    rejects({ ...redis, CACHE_LEASE: "maybe" }, ["CACHE_LEASE"]);
    const memory = rejects({ CACHE_STORE: "memory", CACHE_LEASE: "on" }, ["CACHE_LEASE"]);
    assert.match(memory.message, /needs Redis/);
  });

  it("reads CACHE_L1_MAX_TTL and rejects a malformed or zero one", () => {
    assert.equal(loadConfig({ CACHE_L1_MAX_TTL: "5" }).cacheL1MaxTtlMs, 5_000);
    assert.equal(loadConfig({ CACHE_L1_MAX_TTL: "250ms" }).cacheL1MaxTtlMs, 250);
    for (const value of ["0", "never", "-1"])
      rejects({ CACHE_L1_MAX_TTL: value }, ["CACHE_L1_MAX_TTL"]);
  });

  it("reads CACHE_STORE_TIMEOUT and rejects a malformed or zero one", () => {
    assert.equal(loadConfig({ CACHE_STORE_TIMEOUT: "0.2" }).cacheStoreTimeoutMs, 200);
    assert.equal(loadConfig({ CACHE_STORE_TIMEOUT: "100ms" }).cacheStoreTimeoutMs, 100);
    for (const value of ["0", "fast"]) {
      rejects({ CACHE_STORE_TIMEOUT: value }, ["CACHE_STORE_TIMEOUT"]);
    }
  });

  it("reads CACHE_MAX_ENTRY_SIZE in bytes", () => {
    assert.equal(loadConfig({ CACHE_MAX_ENTRY_SIZE: "1024" }).cacheMaxEntrySize, 1024);
    for (const value of ["0", "1kb", "-1", "1.5"]) {
      rejects({ CACHE_MAX_ENTRY_SIZE: value }, ["CACHE_MAX_ENTRY_SIZE"]);
    }
  });

  it("reads ADMIN_TOKEN, rejecting a short or blank one without echoing it", () => {
    const token = "0123456789abcdef0123456789abcdef";
    assert.equal(loadConfig({ ADMIN_TOKEN: token }).adminToken, token);
    assert.equal(loadConfig({ ADMIN_TOKEN: "" }).adminToken, undefined);
    for (const value of [
      "short-secret",
      "has a space in it, long enough",
      "tab\tseparated-token-long",
    ]) {
      const error = rejects({ ADMIN_TOKEN: value }, ["ADMIN_TOKEN"]);
      assert.ok(!error.message.includes(value), "the token is not echoed");
    }
  });

  it("reads LOG_LEVEL and rejects an unknown one", () => {
    assert.equal(loadConfig({ LOG_LEVEL: "warn" }).logLevel, "warn");
    rejects({ LOG_LEVEL: "loud" }, ["LOG_LEVEL"]);
  });

  it("treats empty values as unset", () => {
    assert.deepEqual(
      loadConfig({ PORT: "", CACHE_TTL: " ", REDIS_URL: "", CACHE_STORE: "" }),
      loadConfig({}),
    );
  });

  it("reports every malformed variable at once, one per line", () => {
    const error = rejects({ PORT: "x", CACHE_TTL: "never", REDIS_URL: "nope" }, [
      "PORT",
      "CACHE_TTL",
      "REDIS_URL",
    ]);
    assert.equal(error.message.split("\n").length, 4);
  });

  it("parseSeconds and redact", () => {
    assert.equal(parseSeconds("60"), 60_000);
    assert.equal(parseSeconds("60s"), 60_000);
    assert.equal(parseSeconds("abc"), undefined);
    assert.equal(redact("redis://user:pw@h:6379/0"), "redis://user:***@h:6379/0");
    assert.equal(redact("redis://h:6379"), "redis://h:6379");
  });
});
