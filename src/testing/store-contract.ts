import assert from "node:assert/strict";
import { randomBytes, randomUUID } from "node:crypto";
import { createServer, type Server, type Socket } from "node:net";
import { after, before, describe, it, type TestContext } from "node:test";
import { newLeaseToken } from "../lease.js";
import type { Store } from "../store.js";

/** What a contract run needs: a store, and how to clean up after it. */
export interface StoreContractSetup {
  store: Store;
  /**
   * Called after the suite (or the test that made its own store), once `store.disconnect()`
   * has resolved: stop servers, close helper clients, …
   */
  teardown?: (() => Promise<void>) | undefined;
}

/**
 * The optional capabilities of a {@link Store}: the presence of the method is the capability
 * (the cache detects them), so a store must have exactly the methods it declares.
 */
export type StoreCapability =
  | "getMany"
  | "setMany"
  | "deleteMany"
  | "setIfAbsent"
  | "deleteIfEquals"
  | "extendIfEquals"
  | "extendManyIfEquals"
  | "takeLease"
  | "publish"
  | "subscribe"
  | "disconnect"
  | "maxValueSize";

const CAPABILITIES: readonly StoreCapability[] = [
  "getMany",
  "setMany",
  "deleteMany",
  "setIfAbsent",
  "deleteIfEquals",
  "extendIfEquals",
  "extendManyIfEquals",
  "takeLease",
  "publish",
  "subscribe",
  "disconnect",
  "maxValueSize",
];

/** Where a server-down test points a store: a loopback address. */
export interface StoreEndpoint {
  readonly host: string;
  readonly port: number;
}

/** Options of {@link storeContract}. */
export interface StoreContractOptions {
  /**
   * Exactly the optional methods the store has (and `maxValueSize`, when it declares a largest
   * value). A test fails if a declared one is missing or an undeclared one is present (the
   * cache would detect and use it), and if `publish` and `subscribe` are not declared
   * together. Tests of a capability the store does not have are not registered.
   * @default []
   */
  capabilities?: readonly StoreCapability[] | undefined;
  /**
   * Size of the value in the large-value test, in bytes; the store's `maxValueSize` when that
   * is smaller.
   * @default 5 MiB
   */
  largeValueSize?: number | undefined;
  /** TTL used by the expiry tests, in milliseconds. @default 300 */
  shortTtl?: number | undefined;
  /**
   * How long past `shortTtl` an expired value may still be visible before the test fails, in
   * milliseconds (a server may expire keys lazily or on its own schedule).
   * @default 2000
   */
  expiryGrace?: number | undefined;
  /** Longest time `disconnect()` may take, in milliseconds. @default 5000 */
  disconnectTimeout?: number | undefined;
  /**
   * Make a store of the same kind, configured like the one under test, but pointed at
   * `endpoint`: a loopback port where nothing listens, or a server that accepts connections
   * and never answers. The server-down tests check that every operation then settles within
   * `downTimeout` — rejecting, or answering a miss — instead of hanging, and that
   * `disconnect()` still resolves. Without it (a store with no server, such as the memory
   * store) those tests are not registered.
   */
  storeAt?: ((endpoint: StoreEndpoint) => Store | Promise<Store>) | undefined;
  /**
   * Longest time one operation may take against a server that is down or silent, in
   * milliseconds. Configure the store's own timeouts below it.
   * @default 5000
   */
  downTimeout?: number | undefined;
  /**
   * Number of concurrent operations on distinct keys in the concurrency test.
   * @default 200
   */
  concurrency?: number | undefined;
}

const POLL_INTERVAL = 10;

/**
 * Register the store contract suite with `node:test`: every store must pass it, against a
 * real backend. `setup` is called once for the suite (and once more for the `disconnect()`
 * test); keys are unique per run, so the backend may be shared.
 *
 * @example
 * storeContract("redis", async () => ({ store: redisStore({ url }) }), {
 *   capabilities: ["getMany", "setIfAbsent", "deleteIfEquals", "disconnect"],
 * });
 */
export function storeContract(
  name: string,
  setup: () => Promise<StoreContractSetup>,
  options: StoreContractOptions = {},
): void {
  const capabilities = options.capabilities ?? [];
  const largeValueSize = options.largeValueSize ?? 5 * 1024 * 1024;
  const shortTtl = options.shortTtl ?? 300;
  const expiryGrace = options.expiryGrace ?? 2_000;
  const disconnectTimeout = options.disconnectTimeout ?? 5_000;
  const downTimeout = options.downTimeout ?? 5_000;
  const concurrency = options.concurrency ?? 200;
  const LONG_TTL = 60_000;

  const has = (capability: StoreCapability) => capabilities.includes(capability);
  /** Register a test only where it applies: what a store cannot do is not a skipped test. */
  const itIf = (applies: boolean, title: string, fn: (t: TestContext) => Promise<void> | void) => {
    if (applies) it(title, fn);
  };

  describe(`store contract: ${name}`, () => {
    const run = randomUUID().slice(0, 8);
    const key = (part: string) => `contract:${run}:${part}`;
    let current: StoreContractSetup | undefined;
    const store = (): Store => {
      assert.ok(current, "setup() did not run");
      return current.store;
    };

    before(async () => {
      current = await setup();
    });

    after(async () => {
      if (!current) return;
      await current.store.disconnect?.();
      await current.teardown?.();
    });

    it("has a name and exactly the declared capabilities", () => {
      const s = store();
      assert.equal(typeof s.name, "string");
      assert.ok(s.name.length > 0, "store.name is empty");
      for (const method of ["get", "set", "delete"] as const) {
        assert.equal(typeof s[method], "function", `store.${method} is required`);
      }
      for (const capability of CAPABILITIES) {
        const declared = capabilities.includes(capability);
        const present = s[capability] !== undefined;
        if (declared) {
          assert.equal(
            typeof s[capability],
            capability === "maxValueSize" ? "number" : "function",
            `store.${capability} is declared but missing`,
          );
        } else {
          assert.ok(
            !present,
            `store.${capability} is present but not declared (the cache would use it)`,
          );
        }
      }
      assert.equal(
        s.publish === undefined,
        s.subscribe === undefined,
        "publish and subscribe come together (the cache's bus needs both)",
      );
      if (s.maxValueSize !== undefined) {
        assert.ok(
          Number.isSafeInteger(s.maxValueSize) && s.maxValueSize > 0,
          `store.maxValueSize must be a positive integer, got ${String(s.maxValueSize)}`,
        );
      }
    });

    it("get of a missing key resolves undefined", async () => {
      assert.equal(await store().get(key("missing")), undefined);
    });

    it("set then get returns the same bytes as a Uint8Array", async () => {
      const value = bytes("hello, store");
      await store().set(key("round-trip"), value, LONG_TTL);
      assertBytes(await store().get(key("round-trip")), value);
    });

    it("set overwrites the previous value", async () => {
      await store().set(key("overwrite"), bytes("first"), LONG_TTL);
      await store().set(key("overwrite"), bytes("second, longer"), LONG_TTL);
      assertBytes(await store().get(key("overwrite")), bytes("second, longer"));
      await store().set(key("overwrite"), bytes("3"), LONG_TTL);
      assertBytes(await store().get(key("overwrite")), bytes("3"));
    });

    it("keeps its own copy: changing the caller's buffer after set changes nothing", async () => {
      const value = bytes("original");
      await store().set(key("copy"), value, LONG_TTL);
      value.fill(0x21);
      assertBytes(await store().get(key("copy")), bytes("original"));
    });

    it("delete resolves true when it removed a key and false when there was none", async () => {
      await store().set(key("delete"), bytes("x"), LONG_TTL);
      assert.equal(await store().delete(key("delete")), true);
      assert.equal(await store().get(key("delete")), undefined);
      assert.equal(await store().delete(key("delete")), false);
      assert.equal(await store().delete(key("never-set")), false);
    });

    it("is binary safe: every byte value, invalid UTF-8, NUL bytes", async () => {
      const all = Uint8Array.from({ length: 256 }, (_, i) => i);
      const reversed = all.slice().reverse();
      // Lone continuation bytes, an overlong encoding, a truncated sequence, a lone surrogate.
      const invalidUtf8 = Uint8Array.from([
        0x80, 0xbf, 0xc0, 0xaf, 0xe2, 0x82, 0xed, 0xa0, 0x80, 0xff, 0xfe,
      ]);
      const nuls = Uint8Array.from([0, 0, 0, 1, 0]);
      const cases = { all, reversed, invalidUtf8, nuls };
      for (const [part, value] of Object.entries(cases))
        await store().set(key(`bin:${part}`), value, LONG_TTL);
      for (const [part, value] of Object.entries(cases)) {
        assertBytes(await store().get(key(`bin:${part}`)), value, `value "${part}"`);
      }
    });

    it("stores an empty value, distinct from a missing key", async () => {
      await store().set(key("empty"), new Uint8Array(0), LONG_TTL);
      const got = await store().get(key("empty"));
      assert.ok(got !== undefined, "an empty value read back as a miss");
      assertBytes(got, new Uint8Array(0));
    });

    it(`round-trips a large value (${(largeValueSize / 1024 / 1024).toFixed(1)} MiB, or maxValueSize if smaller)`, async () => {
      const size = Math.min(largeValueSize, store().maxValueSize ?? Number.POSITIVE_INFINITY);
      const value = randomBytes(size);
      await store().set(key("large"), value, LONG_TTL);
      assertBytes(await store().get(key("large")), value);
      // Twice, so that a store reading in chunks is not only tested on a fresh connection.
      assertBytes(await store().get(key("large")), value, "second read");
      assert.equal(await store().delete(key("large")), true);
    });

    itIf(
      has("maxValueSize"),
      "rejects a value over maxValueSize without storing anything, and stores one of exactly maxValueSize",
      async () => {
        const s = store();
        const max = s.maxValueSize;
        if (max === undefined) throw new Error("maxValueSize is declared but missing");
        await s.set(key("limit"), bytes("before"), LONG_TTL);
        await assert.rejects(
          s.set(key("limit"), new Uint8Array(max + 1), LONG_TTL),
          "set of maxValueSize + 1 bytes",
        );
        assertBytes(await s.get(key("limit")), bytes("before"), "the previous value");
        if (s.setIfAbsent) {
          await assert.rejects(
            s.setIfAbsent(key("limit:nx"), new Uint8Array(max + 1), LONG_TTL),
            "setIfAbsent of maxValueSize + 1 bytes",
          );
          assert.equal(await s.get(key("limit:nx")), undefined);
        }
        const value = randomBytes(max);
        await s.set(key("limit"), value, LONG_TTL);
        assertBytes(await s.get(key("limit")), value, "a value of exactly maxValueSize");
        await s.delete(key("limit"));
      },
    );

    it("accepts keys with unicode, spaces, colons and control characters, each distinct", async () => {
      const parts = [
        "ключ",
        "🔑 key",
        "a b",
        "a:b",
        "a::b:",
        "a\tb\nc",
        "e\u0301", // "é" decomposed…
        "\u00e9", // …and precomposed: different keys
        " leading and trailing ",
      ];
      for (const [i, part] of parts.entries())
        await store().set(key(part), bytes(`value ${i}`), LONG_TTL);
      for (const [i, part] of parts.entries()) {
        assertBytes(
          await store().get(key(part)),
          bytes(`value ${i}`),
          `key ${JSON.stringify(part)}`,
        );
      }
    });

    it("accepts long keys (300 B to 8 KiB), distinct when only their last character differs", async () => {
      const keys: string[] = [];
      for (const length of [300, 1_024, 2_100, 8_192]) {
        const body = "k".repeat(length);
        keys.push(key(`${body}a`), key(`${body}b`), key(`${"é".repeat(length / 2)}a`));
      }
      for (const [i, k] of keys.entries()) await store().set(k, bytes(`long ${i}`), LONG_TTL);
      for (const [i, k] of keys.entries()) {
        assertBytes(await store().get(k), bytes(`long ${i}`), `key #${i} (${k.length} chars)`);
      }
      assert.equal(await store().delete(keys[0]!), true);
      assert.equal(await store().get(keys[0]!), undefined);
      assertBytes(await store().get(keys[1]!), bytes("long 1"), "its neighbour");
    });

    it("keeps a value until its TTL and drops it after, per key", async () => {
      const start = Date.now();
      await store().set(key("ttl:short"), bytes("short"), shortTtl);
      await store().set(key("ttl:long"), bytes("long"), LONG_TTL);
      const seen = await observeExpiry(
        async () => (await store().get(key("ttl:short"))) !== undefined,
        start,
        shortTtl,
        expiryGrace,
      );
      assert.ok(seen.presentBeforeTtl > 0, "no read was answered before the TTL passed");
      assertBytes(await store().get(key("ttl:long")), bytes("long"), "the long-TTL key");
      assert.equal(
        await store().delete(key("ttl:short")),
        false,
        "delete of an expired key (a store that expires lazily must not count it)",
      );
    });

    itIf(has("getMany"), "getMany answers aligned with its keys, misses included", async () => {
      const s = store();
      if (!s.getMany) throw new Error("getMany is declared but missing");
      await s.set(key("many:a"), bytes("A"), LONG_TTL);
      await s.set(key("many:b"), new Uint8Array(0), LONG_TTL);
      const keys = [
        key("many:a"),
        key("many:missing"),
        key("many:b"),
        key("many:a"),
        key("many:gone"),
      ];
      const got = await s.getMany(keys);
      assert.equal(got.length, keys.length);
      assertBytes(got[0], bytes("A"), "getMany[0]");
      assert.equal(got[1], undefined, "getMany[1] (missing)");
      assertBytes(got[2], new Uint8Array(0), "getMany[2] (empty value)");
      assertBytes(got[3], bytes("A"), "getMany[3] (repeated key)");
      assert.equal(got[4], undefined, "getMany[4] (missing)");
      assert.deepEqual(await s.getMany([]), []);
    });

    itIf(has("setMany"), "setMany stores every entry with its own ttl", async () => {
      const s = store();
      if (!s.setMany) throw new Error("setMany is declared but missing");
      // Twenty keys: on a cluster they spread over several hash slots.
      const entries = Array.from({ length: 20 }, (_, i) => ({
        key: key(`setMany:${i}`),
        value: i === 0 ? new Uint8Array(0) : bytes(`v${i}`),
        ttlMs: i === 1 ? shortTtl : LONG_TTL,
      }));
      const start = Date.now();
      await s.setMany(entries);
      await s.setMany([]);
      // One key twice in a batch: the last entry wins.
      await s.setMany([
        { key: key("setMany:twice"), value: bytes("first"), ttlMs: LONG_TTL },
        { key: key("setMany:twice"), value: bytes("last"), ttlMs: LONG_TTL },
      ]);
      assertBytes(await s.get(key("setMany:twice")), bytes("last"), "the last entry of a key");
      const got = await Promise.all(entries.map((entry) => s.get(entry.key)));
      for (const [i, entry] of entries.entries()) {
        if (i !== 1) assertBytes(got[i], entry.value, `setMany: key #${i}`);
      }
      await observeExpiry(
        async () => (await s.get(entries[1]!.key)) !== undefined,
        start,
        shortTtl,
        expiryGrace,
      );
      assertBytes(await s.get(entries[2]!.key), bytes("v2"), "the long-ttl entries stay");
    });

    itIf(has("deleteMany"), "deleteMany removes every key, and only those", async () => {
      const s = store();
      if (!s.deleteMany) throw new Error("deleteMany is declared but missing");
      const keys = Array.from({ length: 20 }, (_, i) => key(`deleteMany:${i}`));
      for (const k of keys) await s.set(k, bytes("x"), LONG_TTL);
      await s.set(key("deleteMany:kept"), bytes("kept"), LONG_TTL);
      await s.deleteMany([...keys, key("deleteMany:missing"), keys[0]!]);
      for (const k of keys) assert.equal(await s.get(k), undefined, k);
      assertBytes(await s.get(key("deleteMany:kept")), bytes("kept"));
      await s.deleteMany([]);
    });

    itIf(has("setIfAbsent"), "setIfAbsent stores only when the key is absent", async () => {
      const s = store();
      if (!s.setIfAbsent) throw new Error("setIfAbsent is declared but missing");
      assert.equal(await s.setIfAbsent(key("nx"), bytes("owner-1"), LONG_TTL), true);
      assert.equal(await s.setIfAbsent(key("nx"), bytes("owner-2"), LONG_TTL), false);
      assertBytes(await s.get(key("nx")), bytes("owner-1"));
      await s.delete(key("nx"));
      assert.equal(await s.setIfAbsent(key("nx"), bytes("owner-3"), LONG_TTL), true);
      assertBytes(await s.get(key("nx")), bytes("owner-3"));
    });

    itIf(
      has("setIfAbsent"),
      "setIfAbsent applies its TTL: the key can be taken again once it expired",
      async () => {
        const s = store();
        if (!s.setIfAbsent) throw new Error("setIfAbsent is declared but missing");
        const start = Date.now();
        assert.equal(await s.setIfAbsent(key("nx:ttl"), bytes("lease-1"), shortTtl), true);
        await observeExpiry(
          async () => (await s.get(key("nx:ttl"))) !== undefined,
          start,
          shortTtl,
          expiryGrace,
        );
        if (s.deleteIfEquals) {
          assert.equal(
            await s.deleteIfEquals(key("nx:ttl"), bytes("lease-1")),
            false,
            "deleteIfEquals of an expired lease",
          );
        }
        assert.equal(await s.setIfAbsent(key("nx:ttl"), bytes("lease-2"), LONG_TTL), true);
        assertBytes(await s.get(key("nx:ttl")), bytes("lease-2"));
      },
    );

    itIf(has("setIfAbsent"), "concurrent setIfAbsent on one key: exactly one wins", async () => {
      const s = store();
      if (!s.setIfAbsent) throw new Error("setIfAbsent is declared but missing");
      const contenders = Array.from({ length: 20 }, (_, i) => bytes(`contender-${i}`));
      const won = await Promise.all(
        contenders.map((v) => s.setIfAbsent!(key("nx:race"), v, LONG_TTL)),
      );
      const winners = won.flatMap((w, i) => (w ? [i] : []));
      assert.equal(winners.length, 1, `winners: ${winners.join(", ")}`);
      assertBytes(await s.get(key("nx:race")), contenders[winners[0]!]!);
    });

    itIf(
      has("deleteIfEquals"),
      "deleteIfEquals deletes only while the key holds exactly that value",
      async () => {
        const s = store();
        if (!s.deleteIfEquals) throw new Error("deleteIfEquals is declared but missing");
        const token = Uint8Array.from([1, 2, 3, 0, 255]);
        await s.set(key("cad"), token, LONG_TTL);
        assert.equal(await s.deleteIfEquals(key("cad"), Uint8Array.from([1, 2, 3, 0, 254])), false);
        assert.equal(
          await s.deleteIfEquals(key("cad"), token.subarray(0, 4)),
          false,
          "a prefix of the value",
        );
        assert.equal(
          await s.deleteIfEquals(key("cad"), Uint8Array.from([...token, 0])),
          false,
          "a longer value",
        );
        assertBytes(await s.get(key("cad")), token, "after non-matching deleteIfEquals");
        assert.equal(await s.deleteIfEquals(key("cad"), Uint8Array.from(token)), true);
        assert.equal(await s.get(key("cad")), undefined);
        assert.equal(await s.deleteIfEquals(key("cad"), token), false, "on a missing key");
      },
    );

    itIf(
      has("extendIfEquals"),
      "extendIfEquals renews the life only while the key holds exactly that value",
      async () => {
        const s = store();
        if (!s.extendIfEquals) throw new Error("extendIfEquals is declared but missing");
        const token = bytes("lease-extend-1");
        const start = Date.now();
        await s.set(key("extend"), token, shortTtl);
        assert.equal(
          await s.extendIfEquals(key("extend"), bytes("lease-extend-2"), LONG_TTL),
          false,
        );
        assert.equal(await s.extendIfEquals(key("extend:missing"), token, LONG_TTL), false);
        assert.equal(await s.extendIfEquals(key("extend"), token, LONG_TTL), true);
        // Past the original life (and its grace), the renewed key is still there.
        await new Promise((resolve) =>
          setTimeout(resolve, Math.max(0, start + shortTtl + expiryGrace - Date.now())),
        );
        assertBytes(await s.get(key("extend")), token, "renewed past its first ttl");
        // A short renewal shortens it again: the key expires.
        const again = Date.now();
        assert.equal(await s.extendIfEquals(key("extend"), token, shortTtl), true);
        await observeExpiry(
          async () => (await s.get(key("extend"))) !== undefined,
          again,
          shortTtl,
          expiryGrace,
        );
        assert.equal(await s.extendIfEquals(key("extend"), token, LONG_TTL), false, "expired");
      },
    );

    itIf(
      has("extendManyIfEquals"),
      "extendManyIfEquals renews each key only while it holds its value, one answer per entry",
      async () => {
        const s = store();
        if (!s.extendManyIfEquals) throw new Error("extendManyIfEquals is declared but missing");
        assert.deepEqual(await s.extendManyIfEquals([]), []);
        const token = (i: number) => bytes(`lease-many-${i}`);
        // Longer than one call of the cache's renewer (1,000), so that a store splitting a batch
        // must put the answers back in order.
        const n = 1_100;
        const keys = Array.from({ length: n }, (_, i) => key(`extendMany:${i}`));
        const start = Date.now();
        for (let i = 0; i < n; i += concurrency) {
          await Promise.all(
            keys.slice(i, i + concurrency).map((k, j) => {
              const index = i + j;
              // Every third key holds another value; every fifth is missing.
              if (index % 5 === 4) return undefined;
              const value = index % 3 === 2 ? bytes(`someone-else-${index}`) : token(index);
              return s.set(k, value, shortTtl);
            }),
          );
        }
        const expected = keys.map((_, i) => i % 5 !== 4 && i % 3 !== 2);
        const answers = await s.extendManyIfEquals(
          keys.map((k, i) => ({ key: k, value: token(i), ttlMs: LONG_TTL })),
        );
        assert.equal(answers.length, n, "one answer per entry");
        assert.ok(
          answers.every((answer) => typeof answer === "boolean"),
          "answers are booleans",
        );
        const wrong = answers.flatMap((answer, i) => (answer === expected[i] ? [] : [i]));
        assert.deepEqual(wrong, [], "entries answered wrongly (indexes)");
        // A key that held another value keeps its own life: it expires; the renewed ones do not.
        const other = keys.findIndex((_, i) => i % 3 === 2 && i % 5 !== 4);
        await observeExpiry(
          async () => (await s.get(keys[other]!)) !== undefined,
          start,
          shortTtl,
          expiryGrace,
        );
        assertBytes(await s.get(keys[0]!), token(0), "renewed past its first ttl");
        const last = expected.lastIndexOf(true);
        assert.ok(last >= 1_000);
        assertBytes(await s.get(keys[last]!), token(last), "the last renewed entry");
        // A missing key is not created by a renewal.
        assert.equal(await s.get(keys[4]!), undefined, "a missing key stays missing");
        // Each entry has its own ttl, and a batch may name a key twice.
        const again = Date.now();
        assert.deepEqual(
          await s.extendManyIfEquals([
            { key: keys[0]!, value: token(0), ttlMs: shortTtl },
            { key: keys[1]!, value: token(1), ttlMs: LONG_TTL },
            { key: keys[1]!, value: token(1), ttlMs: LONG_TTL },
          ]),
          [true, true, true],
        );
        await observeExpiry(
          async () => (await s.get(keys[0]!)) !== undefined,
          again,
          shortTtl,
          expiryGrace,
        );
        assertBytes(await s.get(keys[1]!), token(1), "renewed with its own ttl");
        assert.deepEqual(
          await s.extendManyIfEquals([
            { key: keys[0]!, value: token(0), ttlMs: LONG_TTL },
            { key: keys[1]!, value: token(1), ttlMs: LONG_TTL },
          ]),
          [false, true],
          "expired",
        );
      },
    );

    itIf(
      has("takeLease"),
      "takeLease replaces an absent key or a foreign value, never a live lease",
      async () => {
        const s = store();
        if (!s.takeLease) throw new Error("takeLease is declared but missing");
        const lease1 = newLeaseToken();
        const lease2 = newLeaseToken();
        assert.equal(await s.takeLease(key("take"), lease1, LONG_TTL), true, "absent");
        assert.equal(await s.takeLease(key("take"), lease2, LONG_TTL), false, "a live lease");
        assertBytes(await s.get(key("take")), lease1);
        await s.set(key("take"), bytes("not a lease"), LONG_TTL);
        assert.equal(await s.takeLease(key("take"), lease2, LONG_TTL), true, "a foreign value");
        assertBytes(await s.get(key("take")), lease2);
        const won = await Promise.all(
          Array.from({ length: 20 }, () =>
            s.takeLease!(key("take:race"), newLeaseToken(), LONG_TTL),
          ),
        );
        assert.equal(won.filter(Boolean).length, 1, "concurrent takeLease: exactly one wins");
      },
    );

    it("concurrent writers of one key leave exactly one of their values, intact", async () => {
      const s = store();
      const size = 64 * 1024;
      const values = Array.from({ length: 16 }, (_, i) => {
        const v = randomBytes(size);
        v[0] = i;
        return v;
      });
      await Promise.all(values.map((v) => s.set(key("race"), v, LONG_TTL)));
      const got = await s.get(key("race"));
      assert.ok(got !== undefined, "the key is missing after concurrent writes");
      assert.equal(got.byteLength, size);
      const match = values.find((v) => Buffer.from(got).equals(v));
      assert.ok(match, "the stored value is none of the written values (torn or mixed write)");
    });

    it(`many concurrent operations on distinct keys (${concurrency}) each get their own answer`, async () => {
      const s = store();
      const values = Array.from({ length: concurrency }, (_, i) => {
        const v = randomBytes((i * 37) % 3_000);
        return v;
      });
      const k = (i: number) => key(`many-writers:${i}`);
      await Promise.all(values.map((v, i) => s.set(k(i), v, LONG_TTL)));
      // Reads, overwrites and deletes interleaved on the same connection(s).
      const reads = await Promise.all(
        values.map(async (v, i) => {
          if (i % 3 === 1) {
            await s.set(k(i), v.subarray(0, v.length >> 1), LONG_TTL);
            return s.get(k(i));
          }
          if (i % 3 === 2) {
            assert.equal(await s.delete(k(i)), true, `delete of key #${i}`);
            return s.get(k(i));
          }
          return s.get(k(i));
        }),
      );
      for (const [i, v] of values.entries()) {
        if (i % 3 === 2) assert.equal(reads[i], undefined, `key #${i} after delete`);
        else assertBytes(reads[i], i % 3 === 1 ? v.subarray(0, v.length >> 1) : v, `key #${i}`);
      }
      if (s.getMany) {
        const got = await s.getMany(values.map((_, i) => k(i)));
        for (const [i, v] of values.entries()) {
          if (i % 3 === 2) assert.equal(got[i], undefined, `getMany: key #${i}`);
          else
            assertBytes(
              got[i],
              i % 3 === 1 ? v.subarray(0, v.length >> 1) : v,
              `getMany: key #${i}`,
            );
        }
      }
    });

    itIf(
      has("publish") && has("subscribe"),
      "publish reaches a subscriber of the channel (bytes intact), and only that channel's",
      async () => {
        const s = store();
        if (!s.publish || !s.subscribe)
          throw new Error("publish/subscribe is declared but missing");
        const channel = key("channel");
        const received: Buffer[] = [];
        const unsubscribe = await s.subscribe(
          channel,
          (message) => received.push(Buffer.from(message)),
          () => {},
        );
        try {
          const first = Uint8Array.from({ length: 256 }, (_, i) => i);
          await s.publish(key("another-channel"), bytes("not for us"));
          await s.publish(channel, first);
          await s.publish(channel, bytes("second"));
          await waitUntil(() => received.length >= 2, 5_000, "two messages to arrive");
          assertBytes(received[0], first, "first message");
          assertBytes(received[1], bytes("second"), "second message");
          assert.equal(received.length, 2, "a message of another channel was delivered");
        } finally {
          await unsubscribe();
        }
      },
    );

    itIf(
      options.storeAt !== undefined,
      "a server that refuses connections: every operation settles within downTimeout, failing or missing",
      async () => {
        if (!options.storeAt) throw new Error("storeAt is required");
        const port = await closedPort();
        await checkDown(await options.storeAt({ host: "127.0.0.1", port }));
      },
    );

    itIf(
      options.storeAt !== undefined,
      "a server that accepts connections and never answers: every operation settles within downTimeout",
      async () => {
        if (!options.storeAt) throw new Error("storeAt is required");
        const silent = await silentServer();
        try {
          await checkDown(await options.storeAt({ host: "127.0.0.1", port: silent.port }));
        } finally {
          await silent.close();
        }
      },
    );

    /**
     * Every operation against a store whose server is down settles within `downTimeout`: a
     * read rejects or misses, a write rejects (a store must not claim a write it did not make),
     * a conditional operation rejects or answers false. Run twice: all at once on a fresh
     * store, then one by one (a store that noticed the failure must still answer fast).
     * `disconnect()` then resolves.
     */
    async function checkDown(s: Store): Promise<void> {
      const k = key("down");
      const value = bytes("value");
      const checks: Array<[string, () => Promise<void>]> = [
        ["get", async () => assert.equal(await s.get(k), undefined, "get answered a value")],
        ["set", () => assert.rejects(s.set(k, value, LONG_TTL), "set resolved")],
        [
          "delete",
          async () => {
            const out = await s.delete(k).catch(() => false);
            assert.equal(out, false, "delete claimed a removal");
          },
        ],
      ];
      if (s.getMany) {
        checks.push([
          "getMany",
          async () => {
            const out = await s.getMany!([k, `${k}:2`]).catch(() => [undefined, undefined]);
            assert.deepEqual(out, [undefined, undefined], "getMany answered values");
          },
        ]);
      }
      if (s.setIfAbsent) {
        checks.push([
          "setIfAbsent",
          async () => {
            const out = await s.setIfAbsent!(k, value, LONG_TTL).catch(() => false);
            assert.equal(out, false, "setIfAbsent claimed a lease");
          },
        ]);
      }
      if (s.deleteIfEquals) {
        checks.push([
          "deleteIfEquals",
          async () => {
            const out = await s.deleteIfEquals!(k, value).catch(() => false);
            assert.equal(out, false, "deleteIfEquals claimed a removal");
          },
        ]);
      }
      if (s.publish) {
        checks.push(["publish", () => assert.rejects(s.publish!(k, value), "publish resolved")]);
      }
      if (s.subscribe) {
        checks.push([
          "subscribe",
          async () => {
            const unsubscribe = await s.subscribe!(
              k,
              () => {},
              () => {},
            ).catch(() => undefined);
            if (unsubscribe) {
              await unsubscribe();
              assert.fail("subscribe resolved");
            }
          },
        ]);
      }
      const bounded = ([operation, check]: [string, () => Promise<void>]) => {
        // A read that rejects is a miss too.
        const run = operation === "get" ? () => check().catch(rethrowAssertion) : check;
        return withDeadline(run(), downTimeout, `${s.name} ${operation} with the server down`);
      };
      try {
        await Promise.all(checks.map(bounded));
        for (const check of checks) await bounded(check);
      } finally {
        await withDeadline(
          s.disconnect?.() ?? Promise.resolve(),
          disconnectTimeout,
          "disconnect() with the server down",
        );
      }
    }

    itIf(has("disconnect"), "disconnect() resolves promptly", async () => {
      const own = await setup();
      try {
        if (!own.store.disconnect) throw new Error("disconnect is declared but missing");
        await own.store.set(key("disconnect"), bytes("x"), LONG_TTL);
        assertBytes(await own.store.get(key("disconnect")), bytes("x"));
        const started = Date.now();
        await withDeadline(own.store.disconnect(), disconnectTimeout, "disconnect()");
        assert.ok(Date.now() - started < disconnectTimeout);
        // A second call is harmless.
        await withDeadline(own.store.disconnect(), disconnectTimeout, "a second disconnect()");
      } finally {
        await own.teardown?.();
      }
    });
  });
}

/** Let assertion failures through; any other rejection is the failure the test accepts. */
function rethrowAssertion(error: unknown): void {
  if (error instanceof assert.AssertionError) throw error;
}

/** A loopback port where nothing listens (it was free a moment ago). */
function closedPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/** A TCP server that accepts connections, reads everything, and never answers. */
function silentServer(): Promise<{ port: number; close(): Promise<void> }> {
  return new Promise((resolve, reject) => {
    const sockets = new Set<Socket>();
    const server: Server = createServer((socket) => {
      sockets.add(socket);
      socket.on("error", () => {});
      socket.on("close", () => sockets.delete(socket));
      socket.resume();
    });
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address ? address.port : 0;
      resolve({
        port,
        close: () =>
          new Promise<void>((done) => {
            for (const socket of sockets) socket.destroy();
            server.close(() => done());
          }),
      });
    });
  });
}

/** Poll `check` until it holds; fail after `ms`. */
async function waitUntil(check: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) assert.fail(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, POLL_INTERVAL));
  }
}

function bytes(text: string): Uint8Array {
  return new TextEncoder().encode(text);
}

function assertBytes(actual: Uint8Array | undefined, expected: Uint8Array, what = "value"): void {
  assert.ok(actual !== undefined, `${what}: expected ${expected.byteLength} bytes, got undefined`);
  assert.ok(actual instanceof Uint8Array, `${what}: expected a Uint8Array, got ${typeof actual}`);
  assert.equal(actual.byteLength, expected.byteLength, `${what}: length`);
  assert.ok(Buffer.from(actual).equals(Buffer.from(expected)), `${what}: bytes differ`);
}

/**
 * Poll `present` until it answers false. Every read answered before `start + ttl` must see the
 * value (the write happened after `start`, so its expiry is later still); the value must be
 * gone by `start + ttl + grace`.
 */
async function observeExpiry(
  present: () => Promise<boolean>,
  start: number,
  ttl: number,
  grace: number,
): Promise<{ presentBeforeTtl: number; goneAfter: number }> {
  let presentBeforeTtl = 0;
  for (;;) {
    const isPresent = await present();
    const answeredAt = Date.now();
    if (answeredAt < start + ttl) {
      assert.ok(
        isPresent,
        `expired early: gone ${answeredAt - start} ms after the write, TTL ${ttl} ms`,
      );
      presentBeforeTtl++;
    } else if (!isPresent) {
      return { presentBeforeTtl, goneAfter: answeredAt - start };
    } else if (answeredAt > start + ttl + grace) {
      assert.fail(`still present ${answeredAt - start} ms after the write, TTL ${ttl} ms`);
    }
    await new Promise((resolve) => setTimeout(resolve, POLL_INTERVAL));
  }
}

async function withDeadline<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what} did not settle within ${ms} ms`)), ms);
        timer.unref();
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}
