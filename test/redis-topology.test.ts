import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { InvalidOptionError } from "../src/errors.js";
import { keySlot, redisStore } from "../src/stores/redis.js";
import { parseMultiHostUrl } from "../src/stores/redis-topology.js";

/**
 * Options of the Redis store for Cluster and Sentinel, and how a caller's client is told
 * apart, without a server (the behaviour on real servers is tested in redis-cluster,
 * redis-sentinel and redis-ioredis).
 */

function invalid(options: unknown, option: string, pattern?: RegExp): void {
  assert.throws(
    () => redisStore(options as never),
    (error: unknown) => {
      assert.ok(
        error instanceof InvalidOptionError,
        `expected InvalidOptionError, got ${String(error)}`,
      );
      assert.equal(error.option, option);
      if (pattern) assert.match(error.message, pattern);
      return true;
    },
  );
}

describe("redisStore: cluster and Sentinel options", () => {
  it("takes one of url, client, cluster and sentinel", () => {
    const cluster = { rootNodes: [{ url: "redis://127.0.0.1:7000" }] };
    const sentinel = { name: "m", sentinelRootNodes: [{ host: "127.0.0.1", port: 26379 }] };
    invalid({ url: "redis://127.0.0.1:6379", cluster }, "redisStore.cluster", /only one of/);
    invalid({ cluster, sentinel }, "redisStore.sentinel", /only one of/);
    invalid({ url: "redis+cluster://h:1", sentinel }, "redisStore.sentinel");
  });

  it("validates cluster options, naming each, and refuses what the store manages", () => {
    invalid({ cluster: [] }, "redisStore.cluster");
    invalid({ cluster: { rootNodes: [] } }, "redisStore.cluster.rootNodes");
    invalid({ cluster: { rootNodes: "redis://h:1" } }, "redisStore.cluster.rootNodes");
    invalid({ cluster: { rootNodes: [{ url: "http://h:1" }] } }, "redisStore.cluster.rootNodes[0]");
    invalid(
      { cluster: { rootNodes: [{ url: "redis://h:1" }, { host: "h", port: 2 }] } },
      "redisStore.cluster.rootNodes[1]",
    );
    invalid(
      { cluster: { rootNodes: [{ url: "unix:///tmp/redis.sock" }] } },
      "redisStore.cluster.rootNodes[0]",
    );
    const rootNodes = [{ socket: { host: "127.0.0.1", port: 7000 } }];
    invalid(
      { cluster: { rootNodes, defaults: {} } },
      "redisStore.cluster.defaults",
      /clientOptions/,
    );
    invalid({ cluster: { rootNodes, keyPrefix: "x:" } }, "redisStore.cluster.keyPrefix", /prefix/);
    invalid({ cluster: { rootNodes, RESP: 3 } }, "redisStore.cluster.RESP");
    invalid(
      { cluster: { rootNodes, topologyRefreshDelay: "soon" } },
      "redisStore.cluster.topologyRefreshDelay",
    );
    invalid(
      { cluster: { rootNodes }, clientOptions: { socket: { reconnectStrategy: 1 } } },
      "redisStore.clientOptions.socket.reconnectStrategy",
    );
    // Valid ones construct without connecting.
    const store = redisStore({ cluster: { rootNodes, topologyRefreshDelay: "500ms" } });
    assert.equal(store.topology, "cluster");
    assert.equal(store.status, "idle");
  });

  it("validates Sentinel options, naming each", () => {
    const sentinelRootNodes = [{ host: "127.0.0.1", port: 26379 }];
    invalid({ sentinel: "mymaster" }, "redisStore.sentinel");
    invalid({ sentinel: { sentinelRootNodes } }, "redisStore.sentinel.name");
    invalid({ sentinel: { name: "", sentinelRootNodes } }, "redisStore.sentinel.name");
    invalid(
      { sentinel: { name: "m", sentinelRootNodes: [] } },
      "redisStore.sentinel.sentinelRootNodes",
    );
    invalid(
      { sentinel: { name: "m", sentinelRootNodes: [{ host: "h", port: "26379" }] } },
      "redisStore.sentinel.sentinelRootNodes",
    );
    invalid(
      { sentinel: { name: "m", sentinelRootNodes, nodeClientOptions: {} } },
      "redisStore.sentinel.nodeClientOptions",
      /clientOptions/,
    );
    invalid(
      { sentinel: { name: "m", sentinelRootNodes, sentinelClientOptions: { keyPrefix: "x" } } },
      "redisStore.sentinel.sentinelClientOptions.keyPrefix",
    );
    const store = redisStore({ sentinel: { name: "m", sentinelRootNodes } });
    assert.equal(store.topology, "sentinel");
    assert.equal(store.status, "idle");
  });

  it("reads redis+cluster:// and redis+sentinel:// URLs, and rejects malformed ones naming redisStore.url", () => {
    assert.equal(
      redisStore({ url: "redis+cluster://127.0.0.1:7000,127.0.0.1:7001" }).topology,
      "cluster",
    );
    assert.equal(redisStore({ url: "rediss+cluster://u:p@h:7000" }).topology, "cluster");
    assert.equal(
      redisStore({ url: "redis+sentinel://127.0.0.1:26379/mymaster" }).topology,
      "sentinel",
    );
    assert.equal(redisStore({ url: "redis://127.0.0.1:6379" }).topology, "standalone");
    for (const url of [
      "redis+cluster://",
      "redis+cluster://h:1,",
      "redis+cluster://h:1/2",
      "redis+cluster://h:99999",
      "redis+sentinel://h:1",
      "redis+sentinel://h:1/a/b",
      "redis+shard://h:1",
    ]) {
      invalid({ url }, "redisStore.url");
    }
  });

  it("parses multi-host URLs: hosts, default ports, IPv6, credentials, TLS, the master's name", () => {
    assert.equal(parseMultiHostUrl("redis://h:1"), undefined);
    assert.deepEqual(parseMultiHostUrl("rediss+cluster://us%40er:p%3Ass@a:7000,[::1]:7001,b"), {
      kind: "cluster",
      tls: true,
      hosts: [
        { host: "a", port: 7000 },
        { host: "::1", port: 7001 },
        { host: "b", port: 6379 },
      ],
      username: "us@er",
      password: "p:ss",
      path: "",
    });
    assert.deepEqual(parseMultiHostUrl("redis+sentinel://:secret@s1,s2:26380/my%20master"), {
      kind: "sentinel",
      tls: false,
      hosts: [
        { host: "s1", port: 26379 },
        { host: "s2", port: 26380 },
      ],
      username: undefined,
      password: "secret",
      path: "my master",
    });
  });

  it("tells a caller's client apart by its shape, and refuses anything else", () => {
    invalid({ client: {} }, "redisStore.client");
    invalid({ client: 42 }, "redisStore.client");
    invalid({ client: { callBuffer: () => {} } }, "redisStore.client");
  });
});

describe("keySlot", () => {
  it("gives Redis's documented slots", () => {
    // From the Redis Cluster specification and CLUSTER KEYSLOT examples.
    assert.equal(keySlot("somekey"), 11058);
    assert.equal(keySlot("foo{hash_tag}"), 2515);
    assert.equal(keySlot("foo{hash_tag}"), keySlot("hash_tag"));
    assert.equal(keySlot("{user1000}.following"), keySlot("{user1000}.followers"));
    assert.equal(keySlot("foo{}{bar}"), keySlot("foo{}{bar}"));
    assert.notEqual(keySlot("foo{}{bar}"), keySlot("bar"), "an empty tag hashes the whole key");
    assert.equal(keySlot("foo{{bar}}zap"), keySlot("{bar"));
    assert.equal(keySlot("foo{bar}{zap}"), keySlot("bar"));
    assert.equal(keySlot(Buffer.from("somekey")), 11058);
  });
});

describe("cachet/redis without node-redis", () => {
  it("does not load node-redis until it creates a node-redis client (an ioredis user need not install it)", async () => {
    // In a fresh process: import the store module and build a store on an ioredis-shaped
    // client; node-redis must not be in the module cache.
    const { spawnSync } = await import("node:child_process");
    const script = `
      import { createRequire } from "node:module";
      const { redisStore } = await import(${JSON.stringify(new URL("../src/stores/redis.ts", import.meta.url).href)});
      const fake = { status: "wait", callBuffer() {}, connect() {}, duplicate() {}, subscribe() {}, unsubscribe() {}, quit() {}, disconnect() {}, on() {}, off() {} };
      const store = redisStore({ client: fake });
      const cache = createRequire(import.meta.url).cache;
      const nodeRedis = () => Object.keys(cache).filter((p) => p.includes("/node_modules/@redis/") || p.includes("/node_modules/redis/"));
      const before = nodeRedis();
      redisStore({ url: "redis://127.0.0.1:6379" });
      console.log(JSON.stringify({ topology: store.topology, before, after: nodeRedis().length }));
    `;
    const result = spawnSync(
      process.execPath,
      ["--import", "tsx", "--input-type=module", "-e", script],
      {
        encoding: "utf8",
        timeout: 20_000,
      },
    );
    assert.equal(result.status, 0, result.stderr);
    const out = JSON.parse(result.stdout.trim().split("\n").pop()!) as {
      topology: string;
      before: string[];
      after: number;
    };
    assert.equal(out.topology, "standalone");
    assert.deepEqual(out.before, [], "node-redis was loaded for an ioredis client");
    // The check sees node-redis once a store needs it (so the empty list above means something).
    assert.ok(out.after > 0, "node-redis not seen in the module cache after a redis:// store");
  });
});
