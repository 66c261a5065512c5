import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, it } from "node:test";
import fc from "fast-check";
import { Client } from "memjs";
import { createCache, InvalidOptionError, StoreError } from "../src/index.js";
import {
  MEMCACHED_MAX_KEY_LENGTH,
  type MemcachedStore,
  memcachedExpiration,
  memcachedKey,
  memcachedStore,
} from "../src/stores/memcached.js";
import { storeContract } from "../src/testing/store-contract.js";
import { manualClock } from "./helpers/core.js";
import { type MemcachedServer, startMemcached } from "./helpers/memcached.js";
import { waitFor } from "./helpers/ports.js";

const CAPABILITIES = [
  "setIfAbsent",
  "deleteIfEquals",
  "extendIfEquals",
  "disconnect",
  "maxValueSize",
] as const;
const DAY = 24 * 3600_000;
const bytes = (text: string) => new TextEncoder().encode(text);
const text = (value: Uint8Array | undefined) =>
  value === undefined ? undefined : Buffer.from(value).toString();

// One memcached with Memcached's default item size (1 MiB), one with -I 8m for large values.
let server: Promise<MemcachedServer> | undefined;
let bigServer: Promise<MemcachedServer> | undefined;
const defaultServer = () => (server ??= startMemcached());
after(async () => {
  await Promise.all([server, bigServer].map(async (s) => (await s)?.stop()));
});

/** Memcached's clock ticks once a second and the store adds a second: allow for both. */
const MEMCACHED_TIMING = { shortTtl: 300, expiryGrace: 3_000 };

storeContract(
  "memcached",
  // A generous timeout: the suite checks behaviour, and a loaded machine can stall a reply.
  async () => ({
    store: memcachedStore({ servers: (await defaultServer()).servers, timeout: 5_000 }),
  }),
  {
    capabilities: CAPABILITIES,
    ...MEMCACHED_TIMING,
    storeAt: ({ host, port }) =>
      memcachedStore({ servers: `${host}:${port}`, timeout: 300, connectTimeout: 300 }),
    downTimeout: 2_000,
  },
);

storeContract(
  "memcached, -I 8m, empty prefix",
  async () => {
    bigServer ??= startMemcached({ maxItemSize: "8m", memoryMb: 128 });
    const { servers } = await bigServer;
    return {
      store: memcachedStore({ servers, prefix: "", maxItemSize: 8 * 1024 * 1024, timeout: 5_000 }),
    };
  },
  { capabilities: CAPABILITIES, ...MEMCACHED_TIMING, largeValueSize: 5 * 1024 * 1024 },
);

describe("memcachedExpiration: TTLs at the boundary (Memcached's 30-day rule)", () => {
  const now = Date.UTC(2030, 0, 1);

  it("rounds up to whole seconds plus one, so that nothing expires early on Memcached's 1 s clock", () => {
    assert.equal(memcachedExpiration(1, now), 2);
    assert.equal(memcachedExpiration(999, now), 2);
    assert.equal(memcachedExpiration(1_000, now), 2);
    assert.equal(memcachedExpiration(1_001, now), 3);
    assert.equal(memcachedExpiration(60_000, now), 61);
  });

  it("sends up to 30 days as a relative time, anything longer as an absolute Unix time", () => {
    const limit = 30 * 24 * 3600;
    // The longest TTL still sent relative: ceil(ttl / 1000) + 1 === 30 days.
    assert.equal(memcachedExpiration((limit - 1) * 1000, now), limit);
    const over = memcachedExpiration((limit - 1) * 1000 + 1, now);
    assert.equal(over, Math.ceil((now + (limit - 1) * 1000 + 1) / 1000) + 1);
    assert.ok(over > limit, "an absolute time is larger than 30 days of seconds");
    assert.equal(memcachedExpiration(31 * DAY, now), (now + 31 * DAY) / 1000 + 1);
    assert.equal(memcachedExpiration(365 * DAY, now), (now + 365 * DAY) / 1000 + 1);
  });

  it("turns a time past 2106 (beyond 32 bits) into 0: no expiry", () => {
    assert.equal(memcachedExpiration(200 * 365 * DAY, now), 0);
    assert.equal(memcachedExpiration(Number.MAX_SAFE_INTEGER, now), 0);
  });
});

describe("memcachedKey: keys safe for Memcached, readable when they fit, collision-free", () => {
  const valid = (k: string) =>
    Buffer.byteLength(k) <= MEMCACHED_MAX_KEY_LENGTH && /^[\x21-\x7e]+$/.test(k);

  it("keeps printable ASCII keys as they are", () => {
    assert.equal(memcachedKey("cachet:", "user:42"), "cachet:user:42");
    assert.equal(memcachedKey("", "a-b_c.d/e?f=g&h"), "a-b_c.d/e?f=g&h");
  });

  it("percent-encodes spaces, control characters, non-ASCII and % itself", () => {
    assert.equal(memcachedKey("p:", "a b"), "p:a%20b");
    assert.equal(memcachedKey("p:", "a\tb\nc\u0000"), "p:a%09b%0Ac%00");
    assert.equal(memcachedKey("p:", "100%"), "p:100%25");
    assert.equal(memcachedKey("p:", "ключ"), "p:%D0%BA%D0%BB%D1%8E%D1%87");
    assert.notEqual(memcachedKey("p:", "a b"), memcachedKey("p:", "a%20b"));
    assert.notEqual(memcachedKey("p:", "e\u0301"), memcachedKey("p:", "\u00e9"));
  });

  it("hashes keys that do not fit in 250 bytes, keeping a readable head", () => {
    const long = `users:${"x".repeat(300)}`;
    const safe = memcachedKey("cachet:", long);
    assert.ok(valid(safe), safe);
    assert.ok(safe.startsWith("cachet:users:xxx"), safe);
    assert.match(safe, /%~[A-Za-z0-9_-]{43}$/);
    assert.notEqual(memcachedKey("cachet:", `${long}y`), safe);
    // Exactly at the limit: readable; one byte more: hashed.
    const fits = "k".repeat(MEMCACHED_MAX_KEY_LENGTH - "cachet:".length);
    assert.equal(memcachedKey("cachet:", fits), `cachet:${fits}`);
    assert.match(memcachedKey("cachet:", `${fits}k`), /%~/);
  });

  it("never cuts an escape in two when it truncates the head", () => {
    for (let pad = 0; pad < 4; pad++) {
      const safe = memcachedKey("p:", `${"a".repeat(pad)}${"é".repeat(200)}`);
      const head = safe.slice(0, safe.indexOf("%~"));
      assert.match(head, /^p:a*(%[0-9A-F]{2})*$/, `pad ${pad}: ${head}`);
    }
  });

  it("a key that looks like another key's hashed form does not meet it", () => {
    const long = "z".repeat(400);
    const hashed = memcachedKey("", long);
    assert.notEqual(memcachedKey("", hashed), hashed);
    assert.notEqual(memcachedKey("", `${hashed} `), hashed);
  });

  it("keys with lone surrogates (no UTF-8 form) are hashed apart", () => {
    const a = memcachedKey("p:", "\uD800");
    const b = memcachedKey("p:", "\uDC00");
    assert.ok(valid(a) && valid(b));
    assert.notEqual(a, b);
  });

  it("property: always a valid Memcached key, and distinct keys give distinct Memcached keys", () => {
    const keyArb = fc.oneof(
      fc.string({ unit: "grapheme", maxLength: 300 }),
      fc.string({ unit: "binary", maxLength: 300 }),
      fc.string({ maxLength: 400 }),
      fc.string({ unit: fc.constantFrom("%", "~", " ", "a", "é", "\n"), maxLength: 300 }),
    );
    fc.assert(
      fc.property(fc.uniqueArray(keyArb, { minLength: 2, maxLength: 30 }), (keys) => {
        const safe = keys.map((k) => memcachedKey("cachet:", k));
        for (const s of safe) assert.ok(valid(s), JSON.stringify(s));
        assert.equal(new Set(safe).size, keys.length);
      }),
      { numRuns: 300 },
    );
  });
});

describe("memcached store on a real server", () => {
  let mc: MemcachedServer;
  let store: MemcachedStore;
  const run = randomUUID().slice(0, 8);
  const key = (part: string) => `specific:${run}:${part}`;

  before(async () => {
    mc = await defaultServer();
    store = memcachedStore({ servers: mc.servers, timeout: 5_000 });
  });
  after(async () => {
    await store?.disconnect();
  });

  it("stores TTLs over 30 days as absolute times: readable at once, expiring when due", async () => {
    const cases = [
      ["29 days", 29 * DAY],
      ["30 days", 30 * DAY],
      ["30 days + 1 ms", 30 * DAY + 1],
      ["31 days", 31 * DAY],
      ["365 days", 365 * DAY],
    ] as const;
    for (const [label, ttl] of cases) {
      await store.set(key(`ttl:${label}`), bytes(label), ttl);
      assert.equal(text(await store.get(key(`ttl:${label}`))), label, `${label}: readable`);
      // The server's own view of the remaining time (meta protocol: mg <key> t).
      const reply = await mc.command(`mg ${memcachedKey(store.prefix, key(`ttl:${label}`))} t`);
      const remaining = Number(/ t(-?\d+)/.exec(reply)?.[1]);
      const expected = ttl / 1000;
      assert.ok(
        remaining >= expected - 2 && remaining <= expected + 3,
        `${label}: the server expires it in ${remaining} s, expected about ${expected} s (${reply.trim()})`,
      );
    }
  });

  it("the rule is real: a relative time of 31 days' seconds, sent as is, is a date in 1970 (gone at once)", async () => {
    const raw = `naive:${run}`;
    const reply = await mc.command(`set ${raw} 0 ${31 * 24 * 3600} 1\r\nx`);
    assert.equal(reply.trim(), "STORED");
    assert.equal((await mc.command(`get ${raw}`)).trim(), "END", "the item expired at once");
  });

  it("stores a short TTL for at least its length (never early on Memcached's whole-second clock)", async () => {
    const start = Date.now();
    await store.set(key("ttl:1s"), bytes("x"), 1_000);
    let goneAfter = 0;
    await waitFor(
      async () => {
        const present = (await store.get(key("ttl:1s"))) !== undefined;
        if (!present) goneAfter = Date.now() - start;
        return !present;
      },
      "the 1 s key to expire",
      4_000,
    );
    assert.ok(goneAfter >= 1_000, `expired after ${goneAfter} ms, TTL 1000 ms`);
  });

  it("keys with spaces and unicode are stored under readable, percent-encoded keys (visible to text-protocol tools)", async () => {
    await store.set(key("user 1/ключ"), bytes("v"), 60_000);
    const safe = memcachedKey(store.prefix, key("user 1/ключ"));
    assert.ok(safe.includes("user%201/%D0%BA"), safe);
    const reply = await mc.command(`get ${safe}`);
    assert.match(reply, /^VALUE \S+ 0 1\r\nv\r\nEND\r\n$/);
  });

  it("a value of exactly maxValueSize fits the server's default -I 1m item with the longest key", async () => {
    assert.equal(store.maxValueSize, 1024 * 1024 - 512);
    const longKey = key("k".repeat(400)); // hashed to a full 250-byte Memcached key
    assert.equal(memcachedKey(store.prefix, longKey).length, MEMCACHED_MAX_KEY_LENGTH);
    const value = Buffer.alloc(store.maxValueSize, 7);
    await store.set(longKey, value, 60_000);
    assert.ok(Buffer.from((await store.get(longKey))!).equals(value));
    // The server's real limit is a little higher: what the store refuses is refused early.
    await assert.rejects(store.set(longKey, Buffer.alloc(store.maxValueSize + 1), 60_000), {
      name: "StoreError",
      message: /exceeds maxValueSize/,
    });
  });

  it("deleteIfEquals leaves a value that replaced the compared one (CAS)", async () => {
    // deleteIfEquals sends its GET at once; the overwrite is written right behind it on the
    // same connection, so it lands between the GET and the DELETE: only the CAS check saves it.
    let raced = 0;
    for (let round = 0; round < 20; round++) {
      const k = key(`cas:${round}`);
      await store.set(k, bytes("lease"), 60_000);
      const [deleted] = await Promise.all([
        store.deleteIfEquals(k, bytes("lease")),
        store.set(k, bytes("other"), 60_000),
      ]);
      if (!deleted) raced++;
      assert.equal(text(await store.get(k)), "other", `round ${round}: the overwrite survives`);
    }
    assert.ok(raced > 0, "the overwrite never landed between the GET and the DELETE");
  });

  it("validates its options, naming the option", () => {
    const cases: Array<[() => unknown, string]> = [
      [() => memcachedStore({ servers: "127.0.0.1:99999" }), "memcachedStore.servers"],
      [() => memcachedStore({ servers: "host name:1" }), "memcachedStore.servers"],
      [() => memcachedStore({ servers: [] }), "memcachedStore.servers"],
      [() => memcachedStore({ prefix: "has space" }), "memcachedStore.prefix"],
      [() => memcachedStore({ prefix: "x".repeat(129) }), "memcachedStore.prefix"],
      [() => memcachedStore({ timeout: "soon" }), "memcachedStore.timeout"],
      [() => memcachedStore({ connectTimeout: 0 }), "memcachedStore.connectTimeout"],
      [() => memcachedStore({ maxItemSize: 100 }), "memcachedStore.maxItemSize"],
      [
        () => memcachedStore({ servers: "a:1", client: Client.create("a:1") }),
        "memcachedStore.client",
      ],
      [() => memcachedStore({ client: {} as never }), "memcachedStore.client"],
    ];
    for (const [make, option] of cases) {
      assert.throws(make, (error: unknown) => {
        assert.ok(error instanceof InvalidOptionError, String(error));
        assert.equal(error.option, option);
        return true;
      });
    }
  });

  it("rejects keys, values and TTLs of the wrong type before any I/O", async () => {
    await assert.rejects(store.get(42 as never), InvalidOptionError);
    await assert.rejects(store.set(key("x"), "text" as never, 1000), InvalidOptionError);
    await assert.rejects(store.set(key("x"), bytes("x"), 0), InvalidOptionError);
    await assert.rejects(store.set(key("x"), bytes("x"), Number.NaN), InvalidOptionError);
  });

  it("works with a caller's memjs client, and leaves it open on disconnect", async () => {
    const client = Client.create(mc.servers, { logger: { log: () => {} } });
    try {
      const own = memcachedStore({ client });
      await own.set(key("client"), bytes("theirs"), 60_000);
      assert.equal(text(await own.get(key("client"))), "theirs");
      await own.disconnect();
      await assert.rejects(own.get(key("client")), /disconnected/);
      const { value } = await client.get(memcachedKey("cachet:", key("client")));
      assert.equal(value?.toString(), "theirs", "the caller's client still works");
    } finally {
      client.close();
    }
  });
});

describe("memcached store when the server fails", () => {
  let mc: MemcachedServer;
  before(async () => {
    mc = await startMemcached();
  });
  after(async () => {
    await mc?.stop();
  });

  it("killed: calls fail at once (refused), status says so; restarted: works again without a restart of the store", async () => {
    const store = memcachedStore({ servers: mc.servers, timeout: 2_000 });
    try {
      await store.set("k", bytes("before"), 60_000);
      assert.equal(store.status, "ready");
      await mc.kill();
      for (let i = 0; i < 3; i++) {
        const started = Date.now();
        await assert.rejects(store.get("k"), StoreError);
        assert.ok(Date.now() - started < 500, `took ${Date.now() - started} ms`);
      }
      assert.equal(store.status, "failing");
      assert.match(String(store.lastError), /ECONNREFUSED|closed/);
      await mc.start();
      await store.set("k", bytes("after"), 60_000);
      assert.equal(
        text(await store.get("k")),
        "after",
        "a restarted memcached is empty, then used",
      );
      assert.equal(store.status, "ready");
    } finally {
      await store.disconnect();
    }
  });

  it("paused: calls reject with E_STORE_TIMEOUT after `timeout`; resumed: works again", async () => {
    const store = memcachedStore({ servers: mc.servers, timeout: 200 });
    try {
      await store.set("p", bytes("v"), 60_000);
      mc.pause();
      const started = Date.now();
      const results = await Promise.allSettled([store.get("p"), store.set("p", bytes("w"), 1000)]);
      const elapsed = Date.now() - started;
      for (const result of results) {
        assert.equal(result.status, "rejected");
        assert.equal((result as PromiseRejectedResult).reason.code, "E_STORE_TIMEOUT");
      }
      assert.ok(elapsed >= 190 && elapsed < 1_000, `rejected after ${elapsed} ms`);
      // Requests written while it is paused keep failing within the bound (no reset by writes).
      const again = Date.now();
      await assert.rejects(store.get("p"), { code: "E_STORE_TIMEOUT" });
      assert.ok(Date.now() - again < 1_000);
      mc.resume();
      // A write that timed out may still land when the server wakes up: check with a new key.
      await waitFor(async () => {
        await store.set("p2", bytes("after"), 60_000);
        return text(await store.get("p2")) === "after";
      }, "the resumed server to answer");
    } finally {
      mc.resume();
      await store.disconnect();
    }
  });

  it("a server that closes the connection under a pending call fails it at once, not at the timeout", async () => {
    const store = memcachedStore({ servers: mc.servers, timeout: 10_000 });
    try {
      await store.set("c", bytes("v"), 60_000);
      mc.pause();
      const pending = store.get("c");
      const caught = pending.catch((error: unknown) => error);
      await mc.kill(); // the kernel closes the connection
      const started = Date.now();
      const error = await caught;
      assert.ok(error instanceof StoreError, String(error));
      assert.ok(Date.now() - started < 1_000, `failed after ${Date.now() - started} ms`);
    } finally {
      await mc.start();
      await store.disconnect();
    }
  });

  it("disconnect() while the server is paused resolves promptly and fails the calls in flight", async () => {
    const store = memcachedStore({ servers: mc.servers, timeout: 1_000 });
    await store.set("d", bytes("v"), 60_000);
    mc.pause();
    try {
      const pending = store.get("d").catch((error: unknown) => error);
      const started = Date.now();
      // In-flight calls get up to `timeout` to finish, no longer.
      await store.disconnect();
      const waited = Date.now() - started;
      assert.ok(waited <= 1_500, `disconnect took ${waited} ms`);
      assert.ok((await pending) instanceof StoreError);
      assert.equal(store.status, "closed");
    } finally {
      mc.resume();
    }
  });
});

describe("the cache on Memcached", () => {
  let mc: MemcachedServer;
  before(async () => {
    mc = await defaultServer();
  });

  it("getOrSet and invalidateTags work end to end with an in-process tier", async () => {
    const prefix = `e2e-${randomUUID().slice(0, 8)}:`;
    // Behaviour tests: a store call timed out on a loaded machine would turn a hit into a miss.
    const cache = createCache({
      store: memcachedStore({ servers: mc.servers, prefix }),
      l1: true,
      storeTimeout: "5s",
    });
    try {
      let calls = 0;
      const load = () =>
        cache.getOrSet("post:1", async () => ({ id: 1, calls: ++calls }), {
          ttl: "1m",
          tags: ["posts"],
        });
      assert.deepEqual(await load(), { id: 1, calls: 1 });
      assert.deepEqual(await load(), { id: 1, calls: 1 });
      assert.equal(calls, 1);
      await cache.invalidateTags(["posts"]);
      assert.deepEqual(await load(), { id: 1, calls: 2 });
      // A second instance (no L1 yet) reads the entry from Memcached.
      const other = createCache({
        store: memcachedStore({ servers: mc.servers, prefix }),
        l1: true,
        storeTimeout: "5s",
      });
      try {
        assert.deepEqual(
          await other.getOrSet("post:1", async () => ({ id: 1, calls: -1 }), { tags: ["posts"] }),
          { id: 1, calls: 2 },
        );
      } finally {
        await other.close();
      }
    } finally {
      await cache.close();
    }
  });

  it("has no bus (Memcached has no pub/sub): asking for one fails at construction", () => {
    assert.throws(
      () => createCache({ store: memcachedStore({ servers: mc.servers }), l1: true, bus: true }),
      (error: unknown) => error instanceof InvalidOptionError && error.option === "bus",
    );
  });

  it("without a bus, another instance's L1 copy is bounded by l1MaxTtl", async () => {
    const prefix = `l1-${randomUUID().slice(0, 8)}:`;
    const clock = manualClock(Date.now());
    const make = () =>
      createCache({
        store: memcachedStore({ servers: mc.servers, prefix }),
        l1: true,
        l1MaxTtl: "5s",
        ttl: "1h",
        clock,
        storeTimeout: "5s",
      });
    const a = make();
    const b = make();
    try {
      await a.set("k", "v1");
      assert.equal(await b.getOrSet("k", () => "from b"), "v1", "b reads a's value from L2");
      await a.set("k", "v2"); // no message reaches b
      assert.equal(await b.getOrSet("k", () => "from b"), "v1", "b serves its L1 copy");
      clock.advance(4_999);
      assert.equal(await b.getOrSet("k", () => "from b"), "v1", "still within l1MaxTtl");
      clock.advance(2);
      assert.equal(await b.getOrSet("k", () => "from b"), "v2", "past l1MaxTtl: re-read from L2");
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
  });

  it("a memcached outage degrades to the origin, and the cache uses Memcached again after it", async () => {
    const own = await startMemcached();
    const cache = createCache({
      store: memcachedStore({ servers: own.servers, timeout: 200 }),
      breakerCooldown: 50,
      storeTimeout: "2s",
    });
    try {
      let calls = 0;
      const factory = async () => ++calls;
      assert.equal(await cache.getOrSet("n", factory), 1);
      assert.equal(await cache.getOrSet("n", factory), 1);
      await own.kill();
      const started = Date.now();
      assert.equal(await cache.getOrSet("n", factory), 2, "served by the origin");
      assert.ok(Date.now() - started < 500);
      await own.start();
      // Without an L1, two equal answers in a row mean the second came from Memcached.
      await waitFor(
        async () => {
          const first = await cache.getOrSet("n", factory);
          return (await cache.getOrSet("n", factory)) === first;
        },
        "the cache to use Memcached again",
        5_000,
      );
    } finally {
      await cache.close();
      await own.stop();
    }
  });
});
