import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { createClient, RESP_TYPES } from "redis";
import { createCache } from "../src/cache.js";
import { CachetError, InvalidOptionError, StoreError } from "../src/errors.js";
import { RedisStore, redisStore } from "../src/stores/redis.js";
import { freePort, waitFor } from "./helpers/ports.js";
import { prioritizeRedis } from "./helpers/priority.js";
import { type RedisServer, startRedis } from "./helpers/redis.js";

/** How long a command may take to fail while Redis is down ("fail fast"). */
const FAST = 200;

// Nothing in this file may leave an unhandled rejection or an uncaught error behind.
const stray: unknown[] = [];
const onStray = (error: unknown) => stray.push(error);
process.on("unhandledRejection", onStray);
process.on("uncaughtException", onStray);

const run = randomUUID().slice(0, 8);
const bytes = (text: string) => Buffer.from(text, "utf8");

/** A raw node-redis client for looking under the store, closed after the test. */
async function rawClient(url: string) {
  const client = createClient({ url });
  client.on("error", () => {});
  await client.connect();
  return client;
}

/** Await a rejection, returning the error and how long it took. */
async function timedRejection(promise: Promise<unknown>): Promise<{ error: unknown; ms: number }> {
  const started = performance.now();
  try {
    await promise;
  } catch (error) {
    return { error, ms: performance.now() - started };
  }
  assert.fail("expected a rejection");
}

/** Await a settlement, returning the outcome and how long it took. */
async function timed<T>(promise: Promise<T>): Promise<{ value: T; ms: number }> {
  const started = performance.now();
  const value = await promise;
  return { value, ms: performance.now() - started };
}

describe("redisStore: options", () => {
  const invalid = (options: unknown, option: string) => {
    assert.throws(
      () => redisStore(options as never),
      (error: unknown) => {
        assert.ok(
          error instanceof InvalidOptionError,
          `expected InvalidOptionError, got ${String(error)}`,
        );
        assert.equal(error.code, "E_INVALID_OPTION");
        assert.equal(error.option, option);
        assert.match(error.message, new RegExp(option.replace(/[.()]/g, "\\$&")));
        return true;
      },
    );
  };

  it("rejects a malformed URL or an unsupported scheme, naming the option", () => {
    invalid({ url: "not a url" }, "redisStore.url");
    invalid({ url: "http://127.0.0.1:6379" }, "redisStore.url");
    invalid({ url: "redis://127.0.0.1:6379/notadb" }, "redisStore.url");
    invalid({ url: "redis://127.0.0.1:99999" }, "redisStore.url");
    invalid({ url: 6379 }, "redisStore.url");
  });

  it("rejects url and client together, and clientOptions with a client", async () => {
    const client = createClient();
    invalid({ url: "redis://127.0.0.1:6379", client }, "redisStore.client");
    invalid({ client, clientOptions: { database: 1 } }, "redisStore.clientOptions");
    invalid({ client: {} }, "redisStore.client");
    invalid({ client: createClient({ keyPrefix: "app:" }) }, "redisStore.client");
  });

  it("rejects bad durations, prefixes and managed client options, naming each", () => {
    invalid({ prefix: 42 }, "redisStore.prefix");
    invalid({ connectTimeout: -1 }, "redisStore.connectTimeout");
    invalid({ connectTimeout: 0 }, "redisStore.connectTimeout");
    invalid({ commandTimeout: "soon" }, "redisStore.commandTimeout");
    invalid({ maxReconnectDelay: 0 }, "redisStore.maxReconnectDelay");
    invalid({ clientOptions: { keyPrefix: "x:" } }, "redisStore.clientOptions.keyPrefix");
    // node-redis's own validation runs at construction too (client-side caching needs RESP3).
    invalid(
      { clientOptions: { RESP: 2, clientSideCache: { ttl: 0 } } },
      "redisStore.clientOptions",
    );
    invalid(
      { clientOptions: { disableOfflineQueue: false } },
      "redisStore.clientOptions.disableOfflineQueue",
    );
    invalid(
      { clientOptions: { socket: { reconnectStrategy: 100 } } },
      "redisStore.clientOptions.socket.reconnectStrategy",
    );
    invalid(
      { clientOptions: { socket: { connectTimeout: 100 } } },
      "redisStore.clientOptions.socket.connectTimeout",
    );
  });

  it("accepts duration strings and defaults, and starts idle without connecting", async () => {
    const store = redisStore({
      connectTimeout: "1s",
      commandTimeout: "250ms",
      maxReconnectDelay: "2s",
    });
    assert.ok(store instanceof RedisStore);
    assert.equal(store.prefix, "cachet:");
    assert.equal(store.status, "idle");
    await store.disconnect();
    assert.equal(store.status, "closed");
  });

  it("rejects keys that are not strings and values that are not bytes, before any I/O", async () => {
    // Nothing listens on this port: a validation error must come before any connection attempt.
    const store = redisStore({ url: `redis://127.0.0.1:${await freePort()}` });
    const rejectsWith = async (promise: Promise<unknown>, option: string) => {
      await assert.rejects(promise, (error: unknown) => {
        assert.ok(error instanceof InvalidOptionError, String(error));
        assert.equal(error.option, option);
        return true;
      });
    };
    await rejectsWith(store.get(42 as never), "redisStore.get(key)");
    await rejectsWith(store.getMany(["a", null] as never), "redisStore.getMany(key)");
    await rejectsWith(store.getMany("a" as never), "redisStore.getMany(keys)");
    await rejectsWith(store.set("k", "text" as never, 1000), "redisStore.set(value)");
    await rejectsWith(store.set("k", { length: 1 } as never, 1000), "redisStore.set(value)");
    await rejectsWith(store.set("k", bytes("v"), 0), "redisStore.set(ttlMs)");
    await rejectsWith(store.set("k", bytes("v"), Number.NaN), "redisStore.set(ttlMs)");
    await rejectsWith(
      store.setIfAbsent("k", [1, 2] as never, 1000),
      "redisStore.setIfAbsent(value)",
    );
    await rejectsWith(
      store.deleteIfEquals(Symbol("k") as never, bytes("v")),
      "redisStore.deleteIfEquals(key)",
    );
    await rejectsWith(store.delete(undefined as never), "redisStore.delete(key)");
    assert.equal(store.status, "idle", "validation must not open a connection");
    await store.disconnect();
  });
});

describe("redisStore on a running server", () => {
  let server: RedisServer;
  let raw: Awaited<ReturnType<typeof rawClient>>;
  before(async () => {
    server = await startRedis();
    raw = await rawClient(server.url);
  });
  after(async () => {
    raw?.destroy();
    await server?.stop();
  });

  it("connects on first use and reports its status", async () => {
    const store = redisStore({ url: server.url, prefix: `status:${run}:` });
    assert.equal(store.status, "idle");
    await store.set("k", bytes("v"), 10_000);
    assert.equal(store.status, "ready");
    assert.equal(store.lastError, undefined);
    await store.disconnect();
    assert.equal(store.status, "closed");
    await assert.rejects(store.get("k"), (error: unknown) => {
      assert.ok(error instanceof StoreError);
      assert.match(error.message, /disconnected/);
      return true;
    });
  });

  it("prepends the prefix to every key (seen with a raw client)", async () => {
    const a = redisStore({ url: server.url, prefix: `a:${run}:` });
    const b = redisStore({ url: server.url, prefix: `b:${run}:` });
    const plain = redisStore({ url: server.url });
    try {
      await a.set("k", bytes("from a"), 10_000);
      await plain.set(`k:${run}`, bytes("default prefix"), 10_000);
      assert.equal(await raw.get(`a:${run}:k`), "from a");
      assert.equal(await raw.get("k"), null);
      assert.equal(await raw.get(`cachet:k:${run}`), "default prefix");
      assert.equal(await b.get("k"), undefined, "another prefix must not see the key");
      // PX: the raw TTL is what the store was given.
      const ttl = await raw.pTTL(`a:${run}:k`);
      assert.ok(ttl > 9_000 && ttl <= 10_000, `pttl ${ttl}`);
      // Every operation goes through the prefix.
      assert.deepEqual(await a.getMany(["k"]), [bytes("from a")]);
      assert.equal(await a.setIfAbsent("lease", bytes("t"), 10_000), true);
      assert.equal(await raw.get(`a:${run}:lease`), "t");
      assert.equal(await a.deleteIfEquals("lease", bytes("t")), true);
      assert.equal(await raw.exists(`a:${run}:lease`), 0);
      assert.equal(await a.delete("k"), true);
      assert.equal(await raw.exists(`a:${run}:k`), 0);
    } finally {
      await Promise.all([a.disconnect(), b.disconnect(), plain.disconnect()]);
    }
  });

  it("deleteIfEquals still works after the server's script cache is flushed", async () => {
    const store = redisStore({ url: server.url, prefix: `script:${run}:` });
    try {
      await store.set("lease", bytes("me"), 10_000);
      await raw.scriptFlush();
      assert.equal(await store.deleteIfEquals("lease", bytes("me")), true);
      assert.equal(await store.get("lease"), undefined);
    } finally {
      await store.disconnect();
    }
  });

  it("uses an existing client without closing it on disconnect()", async () => {
    const client = createClient({ url: server.url });
    client.on("error", () => {});
    await client.connect();
    const store = redisStore({ client, prefix: `own:${run}:` });
    try {
      await store.set("k", bytes("via a caller's client"), 10_000);
      assert.deepEqual(await store.get("k"), bytes("via a caller's client"));
      assert.equal(store.status, "ready");
      await store.disconnect();
      assert.equal(store.status, "closed");
      assert.equal(client.isOpen, true, "the caller's client was closed");
      assert.equal(await client.get(`own:${run}:k`), "via a caller's client");
      await assert.rejects(store.get("k"), StoreError);
    } finally {
      client.destroy();
    }
  });

  it("connects a caller's client that is not open yet, and still leaves it open", async () => {
    const client = createClient({ url: server.url });
    client.on("error", () => {});
    const store = redisStore({ client, prefix: `lazy:${run}:` });
    try {
      assert.equal(client.isOpen, false);
      await store.set("k", bytes("v"), 10_000);
      assert.equal(client.isReady, true);
      await store.disconnect();
      assert.equal(await client.ping(), "PONG");
    } finally {
      client.destroy();
    }
  });

  it("a command in flight when the server dies rejects at once, not at commandTimeout", async () => {
    const own = await startRedis();
    const store = redisStore({ url: own.url, commandTimeout: 10_000 });
    try {
      await store.set("k", bytes("v"), 10_000);
      own.pause();
      const killedAt = performance.now();
      const outcome = timedRejection(store.get("k"));
      await own.kill();
      const { error } = await outcome;
      const ms = performance.now() - killedAt;
      assert.ok(error instanceof StoreError, String(error));
      assert.ok(ms < 1_000, `took ${Math.round(ms)} ms`);
    } finally {
      await store.disconnect();
      await own.stop();
    }
  });
});

describe("redisStore when Redis fails", () => {
  it("Redis down at start: commands reject fast, then work once a server appears", async () => {
    const server = await startRedis();
    await server.kill();
    const store = redisStore({ url: server.url, prefix: `down:${run}:` });
    try {
      for (let i = 0; i < 5; i++) {
        const { error, ms } = await timedRejection(store.get("k"));
        assert.ok(error instanceof StoreError, String(error));
        assert.equal(error.store, "redis");
        assert.ok(ms < FAST, `call ${i} took ${Math.round(ms)} ms`);
      }
      assert.equal(store.status, "reconnecting");
      assert.match(String(store.lastError?.message), /ECONNREFUSED/);
      await server.start();
      const restarted = Date.now();
      await waitFor(
        async () => {
          await store.set("k", bytes("back"), 10_000);
          return true;
        },
        "the store to reconnect",
        10_000,
      );
      assert.ok(
        Date.now() - restarted < 5_000,
        "reconnected more than 5 s after the server came up",
      );
      assert.equal(store.status, "ready");
      assert.deepEqual(await store.get("k"), bytes("back"));
    } finally {
      await store.disconnect();
      await server.stop();
    }
  });

  it("Redis killed and restarted: fail fast while down, recover without a new store", async () => {
    const server = await startRedis();
    const store = redisStore({ url: server.url, prefix: `restart:${run}:` });
    try {
      await store.set("k", bytes("before"), 60_000);
      await server.kill();
      // The loss is noticed as soon as the socket closes; from then on, no waiting.
      await waitFor(
        () => store.status === "reconnecting",
        "the store to notice the loss",
        2_000,
        5,
      );
      for (let i = 0; i < 5; i++) {
        const { error, ms } = await timedRejection(store.set("k", bytes("during"), 60_000));
        assert.ok(error instanceof StoreError, String(error));
        assert.ok(ms < FAST, `call ${i} took ${Math.round(ms)} ms`);
        assert.match(error.message, /not connected/);
      }
      await server.start();
      const restarted = Date.now();
      await waitFor(
        async () => {
          await store.set("k", bytes("after"), 60_000);
          return true;
        },
        "the store to reconnect",
        10_000,
      );
      assert.ok(
        Date.now() - restarted < 5_000,
        "reconnected more than 5 s after the server came up",
      );
      assert.deepEqual(await store.get("k"), bytes("after"));
      assert.equal(store.status, "ready");
    } finally {
      await store.disconnect();
      await server.stop();
    }
  });

  it("a caller's client with its offline queue on still fails fast while Redis is down", async () => {
    const server = await startRedis();
    // node-redis defaults: offline queue on, its own reconnection (capped at about 2 s).
    const client = createClient({ url: server.url });
    const store = redisStore({ client, prefix: `caller-down:${run}:` });
    try {
      await store.set("k", bytes("v"), 60_000);
      assert.equal(store.status, "ready");
      await server.kill();
      await waitFor(
        () => store.status === "reconnecting",
        "the store to notice the loss",
        2_000,
        5,
      );
      for (let i = 0; i < 3; i++) {
        const { error, ms } = await timedRejection(store.get("k"));
        assert.ok(error instanceof StoreError, String(error));
        assert.ok(ms < FAST, `call ${i} took ${Math.round(ms)} ms`);
      }
      assert.ok(store.lastError, "the client's error events were recorded");
      await server.start();
      await waitFor(
        async () => (await store.get("k")) === undefined,
        "the client to reconnect",
        10_000,
      );
      assert.equal(store.status, "ready");
    } finally {
      await store.disconnect();
      client.destroy();
      await server.stop();
    }
  });

  it("Redis paused at start: the first command waits at most connectTimeout", async () => {
    const server = await startRedis();
    server.pause();
    const store = redisStore({
      url: server.url,
      connectTimeout: 300,
      prefix: `paused-start:${run}:`,
    });
    try {
      // TCP connects (the kernel accepts), but the handshake never answers.
      const { error, ms } = await timedRejection(store.get("k"));
      assert.ok(error instanceof StoreError, String(error));
      assert.match(error.message, /timed out after 300 ms/);
      assert.ok(ms >= 290 && ms < 300 + FAST, `took ${Math.round(ms)} ms`);
      const again = await timedRejection(store.get("k"));
      assert.ok(again.ms < FAST, `a later call took ${Math.round(again.ms)} ms`);
      server.resume();
      await waitFor(
        async () => (await store.get("k")) === undefined,
        "the store to connect",
        10_000,
      );
      assert.equal(store.status, "ready");
    } finally {
      server.resume();
      await store.disconnect();
      await server.stop();
    }
  });

  it("Redis paused: disconnect() with a command in flight resolves within commandTimeout", async () => {
    const server = await startRedis();
    const store = redisStore({
      url: server.url,
      commandTimeout: 300,
      prefix: `paused-close:${run}:`,
    });
    try {
      await store.set("k", bytes("v"), 60_000);
      server.pause();
      const inFlight = timedRejection(store.get("k"));
      const closing = await timed(store.disconnect());
      assert.ok(closing.ms < 300 + FAST, `disconnect() took ${Math.round(closing.ms)} ms`);
      assert.equal(store.status, "closed");
      const { error } = await inFlight;
      assert.ok(error instanceof StoreError, String(error));
    } finally {
      server.resume();
      await server.stop();
    }
  });

  it("Redis paused: commands sent apart each reject at their own commandTimeout (one timer for all)", async () => {
    const server = await startRedis();
    const store = redisStore({ url: server.url, commandTimeout: 300, prefix: `apart:${run}:` });
    try {
      await store.set("k", bytes("v"), 60_000);
      server.pause();
      const first = timedRejection(store.get("k"));
      await new Promise((resolve) => setTimeout(resolve, 150));
      const second = timedRejection(store.set("k2", bytes("v2"), 60_000));
      const a = await first;
      const b = await second;
      for (const { error, ms } of [a, b]) {
        assert.ok(error instanceof StoreError, String(error));
        assert.equal(error.code, "E_STORE_TIMEOUT");
        // Each from its own send: the second is not judged at the first one's deadline, nor
        // left waiting for a later wake-up of the loop.
        assert.ok(ms >= 290 && ms < 300 + FAST, `rejected after ${Math.round(ms)} ms`);
      }
    } finally {
      server.resume();
      await store.disconnect();
      await server.stop();
    }
  });

  it("Redis paused: a store command rejects at commandTimeout; the cache answers within storeTimeout", async () => {
    const server = await startRedis();
    const prefix = `paused:${run}:`;
    const store = redisStore({ url: server.url, prefix, commandTimeout: 300 });
    const cache = createCache({ store: redisStore({ url: server.url, prefix }), storeTimeout: 50 });
    const errors: unknown[] = [];
    cache.on("error", ({ error }) => errors.push(error));
    // What this test judges is this process against a frozen Redis: a Redis starved by other
    // work on the machine (the suite's other files run in parallel) would blur it, as in the
    // resilience tests (docs/failure-modes.md, Limits).
    await prioritizeRedis(server.port);
    try {
      await cache.set("k", "cached before the pause", { ttl: "1m" });
      assert.equal(await cache.get("k"), "cached before the pause");
      assert.ok((await store.get("k")) !== undefined, "the store sees the cache's entry");
      assert.equal(store.status, "ready");
      server.pause();

      // The store alone: the connection stays open and nothing answers, so the command waits
      // for its reply until commandTimeout.
      const alone = await timedRejection(store.get("anything"));
      assert.ok(alone.error instanceof StoreError, String(alone.error));
      assert.equal(alone.error.code, "E_STORE_TIMEOUT");
      assert.equal(store.lastError, alone.error, "a timeout is reported as the last error");
      assert.equal(store.status, "ready", "the connection itself is still up");
      assert.ok(
        alone.ms >= 290 && alone.ms < 300 + FAST,
        `store.get took ${Math.round(alone.ms)} ms`,
      );

      // Through the cache: the guard bounds every call by storeTimeout; a read is a miss.
      const read = await timed(cache.get("k"));
      assert.equal(read.value, undefined);
      assert.ok(read.ms < 50 + 150, `cache.get took ${Math.round(read.ms)} ms`);
      // getOrSet falls through to the factory, also within the bound (read + write).
      const produced = await timed(cache.getOrSet("other", () => "from the origin"));
      assert.equal(produced.value, "from the origin");
      assert.ok(produced.ms < 2 * 50 + 150, `getOrSet took ${Math.round(produced.ms)} ms`);
      assert.ok(
        errors.some((e) => e instanceof CachetError && e.code === "E_STORE_TIMEOUT"),
        "the cache reported the timeouts as error events",
      );

      server.resume();
      await waitFor(
        async () => (await cache.get("k")) === "cached before the pause",
        "the cache to read again",
      );
    } finally {
      server.resume();
      await Promise.all([store.disconnect(), cache.close()]);
      await server.stop();
    }
  });
});

describe("the cache on Redis, end to end", () => {
  let server: RedisServer;
  let raw: Awaited<ReturnType<typeof rawClient>>;
  before(async () => {
    server = await startRedis();
    raw = await rawClient(server.url);
  });
  after(async () => {
    raw?.destroy();
    await server?.stop();
  });

  it("getOrSet stores through Redis, a second cache sees it, a corrupt value is a miss then overwritten", async () => {
    const prefix = `e2e:${run}:`;
    const first = createCache({
      store: redisStore({ url: server.url, prefix }),
      storeTimeout: 500,
    });
    const second = createCache({
      store: redisStore({ url: server.url, prefix }),
      storeTimeout: 500,
    });
    const errors: Array<{ operation: string; error: unknown }> = [];
    second.on("error", ({ operation, error }) => errors.push({ operation, error }));
    try {
      let calls = 0;
      const posts = [{ id: 1, title: "hello" }];
      const factory = async () => {
        calls++;
        return posts;
      };
      assert.deepEqual(await first.getOrSet("posts", factory, { ttl: "1m" }), posts);
      assert.equal(calls, 1);
      const stored = await raw
        .withTypeMapping({ [RESP_TYPES.BLOB_STRING]: Buffer })
        .get(`${prefix}posts`);
      assert.ok(Buffer.isBuffer(stored), "nothing stored under the prefixed key");
      assert.deepEqual([...stored.subarray(0, 2)], [0xca, 0xc7], "not a cachet entry");

      // Another process (here: another cache and store) sees the value without calling its factory.
      assert.deepEqual(await second.get("posts"), posts);
      assert.deepEqual(await second.getOrSet("posts", factory, { ttl: "1m" }), posts);
      assert.equal(calls, 1);

      // Foreign bytes under a key: a miss and an error event, never a crash…
      await raw.set(`${prefix}corrupt`, "definitely not an entry");
      assert.equal(await second.get("corrupt"), undefined);
      assert.ok(
        errors.some((e) => e.operation === "decode"),
        `expected a decode error event, got ${JSON.stringify(errors.map((e) => e.operation))}`,
      );
      // …and the next write replaces them.
      assert.equal(await second.getOrSet("corrupt", () => "repaired", { ttl: "1m" }), "repaired");
      const repaired = await raw
        .withTypeMapping({ [RESP_TYPES.BLOB_STRING]: Buffer })
        .get(`${prefix}corrupt`);
      assert.ok(Buffer.isBuffer(repaired));
      assert.deepEqual([...repaired.subarray(0, 2)], [0xca, 0xc7]);
      assert.equal(await first.get("corrupt"), "repaired");
    } finally {
      await Promise.all([first.close(), second.close()]);
    }
  });
});

describe("redisStore leaves nothing running", () => {
  const fixture = fileURLToPath(new URL("./fixtures/redis-store-exit.ts", import.meta.url));

  /** Run the fixture in a child process; it must exit on its own within `ms`. */
  function runChild(
    url: string,
    ms: number,
  ): Promise<{ code: number | null; output: string; elapsed: number }> {
    return new Promise((resolve, reject) => {
      const started = Date.now();
      const child = spawn(process.execPath, ["--import", "tsx", fixture, url], {
        stdio: ["ignore", "pipe", "pipe"],
      });
      let output = "";
      child.stdout.on("data", (d) => {
        output += d;
      });
      child.stderr.on("data", (d) => {
        output += d;
      });
      const timer = setTimeout(() => {
        child.kill("SIGKILL");
        reject(new Error(`the process did not exit within ${ms} ms after disconnect(): ${output}`));
      }, ms);
      child.on("exit", (code) => {
        clearTimeout(timer);
        resolve({ code, output, elapsed: Date.now() - started });
      });
    });
  }

  it("the process exits after disconnect() with Redis up", async () => {
    const server = await startRedis();
    try {
      const { code, output } = await runChild(server.url, 15_000);
      assert.equal(code, 0, output);
      assert.deepEqual(JSON.parse(output.trim().split("\n").at(-1)!), {
        outcome: "round-trip",
        status: "ready",
        after: "closed",
      });
    } finally {
      await server.stop();
    }
  });

  it("the process exits after disconnect() while the store is reconnecting", async () => {
    const url = `redis://127.0.0.1:${await freePort()}`;
    const { code, output } = await runChild(url, 15_000);
    assert.equal(code, 0, output);
    const line = JSON.parse(output.trim().split("\n").at(-1)!);
    assert.match(line.outcome, /^rejected: .*ECONNREFUSED/);
    assert.equal(line.status, "reconnecting");
    assert.equal(line.after, "closed");
  });
});

describe("redisStore hygiene", () => {
  it("left no unhandled rejection or uncaught error behind", () => {
    process.off("unhandledRejection", onStray);
    process.off("uncaughtException", onStray);
    assert.deepEqual(stray.map(String), []);
  });
});
