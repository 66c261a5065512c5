import assert from "node:assert/strict";
import { randomBytes, randomUUID } from "node:crypto";
import { after, before, describe, it } from "node:test";
import {
  CreateTableCommand,
  type DynamoDBClient,
  GetItemCommand,
  PutItemCommand,
} from "@aws-sdk/client-dynamodb";
import fc from "fast-check";
import { createCache, InvalidOptionError, StoreError } from "../src/index.js";
import {
  createDynamoTable,
  DYNAMODB_MAX_KEY_LENGTH,
  type DynamoDBStore,
  dynamodbStore,
  dynamoKey,
} from "../src/stores/dynamodb.js";
import { storeContract } from "../src/testing/store-contract.js";
import { manualClock } from "./helpers/core.js";
import { type DynaliteServer, startDynalite } from "./helpers/dynalite.js";
import { waitFor } from "./helpers/ports.js";

const CAPABILITIES = [
  "setMany",
  "deleteMany",
  "getMany",
  "setIfAbsent",
  "deleteIfEquals",
  "extendIfEquals",
  "disconnect",
  "maxValueSize",
] as const;
const TABLE = "cachet-test";
const bytes = (text: string) => new TextEncoder().encode(text);
const text = (value: Uint8Array | undefined) =>
  value === undefined ? undefined : Buffer.from(value).toString();

// One dynalite for the file, with the store's table, started on first use.
let server: Promise<DynaliteServer> | undefined;
const dynalite = () =>
  (server ??= startDynalite().then(async (s) => {
    await createDynamoTable({ table: TABLE, clientConfig: s.clientConfig });
    return s;
  }));
after(async () => {
  if (server) await (await server).stop();
});

storeContract(
  "dynamodb (dynalite)",
  async () => {
    const { clientConfig } = await dynalite();
    // A generous timeout: 200 concurrent calls on dynalite (one Node process) on a loaded
    // machine can take seconds; the timeout itself is tested by the server-down cases.
    return {
      store: dynamodbStore({ table: TABLE, clientConfig, timeout: 10_000, connectTimeout: 5_000 }),
    };
  },
  {
    capabilities: CAPABILITIES,
    storeAt: ({ host, port }) =>
      dynamodbStore({
        table: TABLE,
        clientConfig: {
          endpoint: `http://${host}:${port}`,
          region: "us-east-1",
          credentials: { accessKeyId: "x", secretAccessKey: "x" },
        },
        timeout: 300,
        connectTimeout: 300,
      }),
    downTimeout: 2_000,
  },
);

storeContract(
  "dynamodb (dynalite), empty prefix, eventually consistent reads, custom attributes",
  async () => {
    const { clientConfig } = await dynalite();
    const attributes = { key: "id", value: "data", ttl: "expires", expiresAt: "expiresMs" };
    await createDynamoTable({ table: "cachet-custom", clientConfig, attributes });
    return {
      store: dynamodbStore({
        table: "cachet-custom",
        clientConfig,
        prefix: "",
        consistentRead: false,
        attributes,
        timeout: 10_000,
        connectTimeout: 5_000,
      }),
    };
  },
  { capabilities: CAPABILITIES },
);

describe("dynamoKey: partition keys within DynamoDB's limits, collision-free", () => {
  it("keeps a key as it is when it fits", () => {
    assert.equal(dynamoKey("cachet:", "user 1/ключ"), "cachet:user 1/ключ");
    assert.equal(dynamoKey("", "a"), "a");
  });

  it("hashes a key over 2048 bytes (UTF-8), an empty one, and one starting with #", () => {
    const fits = "é".repeat((DYNAMODB_MAX_KEY_LENGTH - 2) / 2);
    assert.equal(dynamoKey("p:", fits), `p:${fits}`);
    assert.match(dynamoKey("p:", `${fits}x`), /^p:#[A-Za-z0-9_-]{43}$/);
    assert.match(dynamoKey("", ""), /^#[A-Za-z0-9_-]{43}$/);
    assert.match(dynamoKey("p:", "#tag"), /^p:#[A-Za-z0-9_-]{43}$/);
  });

  it("a key that looks like a hashed key does not meet it", () => {
    const hashed = dynamoKey("", "x".repeat(3000));
    assert.notEqual(dynamoKey("", hashed), hashed);
  });

  it("hashes keys with lone surrogates apart (DynamoDB would store both as U+FFFD)", () => {
    assert.notEqual(dynamoKey("p:", "\uD800"), dynamoKey("p:", "\uDC00"));
    assert.match(dynamoKey("p:", "a\uD800"), /^p:#/);
  });

  it("property: at most 2048 bytes, never empty, distinct keys stay distinct", () => {
    const keyArb = fc.oneof(
      fc.string({ unit: "grapheme", maxLength: 1200 }),
      fc.string({ unit: "binary", maxLength: 50 }),
      fc.string({ unit: fc.constantFrom("#", "é", "a", "\uD800"), maxLength: 2100 }),
    );
    fc.assert(
      fc.property(fc.uniqueArray(keyArb, { minLength: 2, maxLength: 20 }), (keys) => {
        const out = keys.map((k) => dynamoKey("c:", k));
        for (const k of out) {
          const size = Buffer.byteLength(k);
          assert.ok(size >= 1 && size <= DYNAMODB_MAX_KEY_LENGTH, `${size} bytes`);
        }
        assert.equal(new Set(out).size, keys.length);
      }),
      { numRuns: 200 },
    );
  });
});

describe("dynamodb store on dynalite", () => {
  let db: DynaliteServer;
  let raw: DynamoDBClient;
  let store: DynamoDBStore;
  const run = randomUUID().slice(0, 8);
  const key = (part: string) => `specific:${run}:${part}`;
  const rawItem = async (k: string) =>
    (
      await raw.send(
        new GetItemCommand({
          TableName: TABLE,
          Key: { pk: { S: dynamoKey("cachet:", k) } },
          ConsistentRead: true,
        }),
      )
    ).Item;

  before(async () => {
    db = await dynalite();
    raw = db.client();
    store = dynamodbStore({
      table: TABLE,
      clientConfig: db.clientConfig,
      timeout: 10_000,
      connectTimeout: 5_000,
    });
  });
  after(async () => {
    raw?.destroy();
    await store?.disconnect();
  });

  it("writes the value as a binary attribute, the TTL attribute in Unix seconds and the expiry in ms", async () => {
    const before = Date.now();
    await store.set(key("format"), Uint8Array.from([0, 255, 1]), 90_000);
    const item = await rawItem(key("format"));
    assert.ok(item);
    assert.deepEqual([...(item.v?.B ?? [])], [0, 255, 1]);
    const expiresAt = Number(item.exp?.N);
    assert.ok(expiresAt >= before + 90_000 && expiresAt <= Date.now() + 90_000);
    assert.equal(Number(item.ttl?.N), Math.ceil(expiresAt / 1000));
  });

  it("an expired item DynamoDB has not deleted yet is a miss, absent for setIfAbsent, not counted by delete", async () => {
    // DynamoDB deletes expired items lazily (up to days later; dynalite never): write one
    // that expired a second ago, as DynamoDB would still hold it.
    const expired = Date.now() - 1_000;
    for (const part of ["lazy", "lazy:nx", "lazy:cad", "lazy:del"]) {
      await raw.send(
        new PutItemCommand({
          TableName: TABLE,
          Item: {
            pk: { S: dynamoKey("cachet:", key(part)) },
            v: { B: bytes("stale") },
            exp: { N: String(expired) },
            ttl: { N: String(Math.ceil(expired / 1000)) },
          },
        }),
      );
    }
    assert.ok(await rawItem(key("lazy")), "the expired item is still in the table");
    assert.equal(await store.get(key("lazy")), undefined);
    assert.deepEqual(await store.getMany([key("lazy"), key("lazy:nx")]), [undefined, undefined]);
    assert.equal(await store.setIfAbsent(key("lazy:nx"), bytes("lease"), 60_000), true);
    assert.equal(text(await store.get(key("lazy:nx"))), "lease");
    assert.equal(await store.deleteIfEquals(key("lazy:cad"), bytes("stale")), false);
    assert.equal(await store.delete(key("lazy:del")), false);
    assert.equal(await rawItem(key("lazy:del")), undefined, "the delete still removed it");
  });

  it("an item this store did not write (no expiry attribute) is a miss", async () => {
    await raw.send(
      new PutItemCommand({
        TableName: TABLE,
        Item: { pk: { S: dynamoKey("cachet:", key("foreign")) }, v: { B: bytes("x") } },
      }),
    );
    assert.equal(await store.get(key("foreign")), undefined);
  });

  it("getMany over 100 keys (BatchGetItem's limit): chunks, duplicates and misses, aligned", async () => {
    const keys: string[] = [];
    for (let i = 0; i < 250; i++) keys.push(key(`many:${i}`));
    await Promise.all(
      keys.map((k, i) => (i % 5 === 4 ? undefined : store.set(k, bytes(`v${i}`), 60_000))),
    );
    const asked = [...keys, keys[0]!, keys[200]!, key("many:missing")];
    const got = await store.getMany(asked);
    assert.equal(got.length, asked.length);
    for (let i = 0; i < 250; i++) {
      assert.equal(text(got[i]), i % 5 === 4 ? undefined : `v${i}`, `key #${i}`);
    }
    assert.equal(text(got[250]), "v0");
    assert.equal(text(got[251]), "v200");
    assert.equal(got[252], undefined);
  });

  it("getMany retries unprocessed keys (a response over the size limit comes back in parts)", async () => {
    // dynalite, like DynamoDB, stops a BatchGetItem response past a size limit (about 1.4 MB
    // here, 16 MB on AWS) and returns the rest as UnprocessedKeys.
    const client = db.client();
    let batches = 0;
    client.middlewareStack.add(
      (next, context) => async (args) => {
        if (context.commandName === "BatchGetItemCommand") batches++;
        return next(args);
      },
      { step: "initialize", name: "countBatches" },
    );
    const counted = dynamodbStore({ table: TABLE, client, timeout: 5_000 });
    try {
      const values = Array.from({ length: 20 }, () => randomBytes(300 * 1024));
      const keys = values.map((_, i) => key(`big:${i}`));
      await Promise.all(values.map((v, i) => counted.set(keys[i]!, v, 60_000)));
      const got = await counted.getMany(keys);
      for (const [i, v] of values.entries()) {
        assert.ok(got[i] && Buffer.from(got[i]!).equals(v), `key #${i}`);
      }
      assert.ok(batches > 1, `one BatchGetItem answered everything (${batches})`);
    } finally {
      await counted.disconnect();
      client.destroy();
    }
  });

  it("setMany and deleteMany write in BatchWriteItem chunks of 25", async () => {
    const client = db.client();
    let batches = 0;
    client.middlewareStack.add(
      (next, context) => async (args) => {
        if (context.commandName === "BatchWriteItemCommand") batches++;
        return next(args);
      },
      { step: "initialize", name: "countBatchWrites" },
    );
    const counted = dynamodbStore({ table: TABLE, client, timeout: 5_000 });
    try {
      const keys = Array.from({ length: 60 }, (_, i) => key(`batch-write:${i}`));
      await counted.setMany(keys.map((k, i) => ({ key: k, value: bytes(`v${i}`), ttlMs: 60_000 })));
      assert.equal(batches, 3, "60 puts: three BatchWriteItem calls");
      const got = await counted.getMany(keys);
      for (let i = 0; i < keys.length; i++) assert.equal(text(got[i]), `v${i}`, `key #${i}`);
      batches = 0;
      await counted.deleteMany([...keys.slice(0, 50), keys[0]!]);
      assert.equal(batches, 2, "50 distinct deletes: two BatchWriteItem calls");
      const after = await counted.getMany(keys);
      for (let i = 0; i < keys.length; i++) {
        assert.equal(text(after[i]), i < 50 ? undefined : `v${i}`, `#${i}`);
      }
    } finally {
      await counted.disconnect();
      client.destroy();
    }
  });

  it("a value of exactly maxValueSize fits one item, even with a 2048-byte key", async () => {
    assert.equal(store.maxValueSize, 400 * 1024 - 4 * 1024);
    const longKey = key("k".repeat(DYNAMODB_MAX_KEY_LENGTH - "cachet:".length - key("").length));
    assert.equal(Buffer.byteLength(dynamoKey("cachet:", longKey)), DYNAMODB_MAX_KEY_LENGTH);
    const value = randomBytes(store.maxValueSize);
    await store.set(longKey, value, 60_000);
    assert.ok(Buffer.from((await store.get(longKey))!).equals(value));
    await assert.rejects(store.set(longKey, randomBytes(store.maxValueSize + 1), 60_000), {
      name: "StoreError",
      message: /exceeds maxValueSize/,
    });
  });

  it("createDynamoTable: creates the table once, reports TTL as unsupported on dynalite, checks the key", async () => {
    const name = `created-${run}`;
    const first = await createDynamoTable({ table: name, client: raw });
    // dynalite implements no UpdateTimeToLive: the read-side check is all there is.
    assert.deepEqual(first, { created: true, ttl: "unsupported" });
    const second = await createDynamoTable({ table: name, client: raw });
    assert.deepEqual(second, { created: false, ttl: "unsupported" });
    const own = dynamodbStore({ table: name, client: raw });
    await own.set("k", bytes("v"), 60_000);
    assert.equal(text(await own.get("k")), "v");
    await own.disconnect();

    const other = `other-key-${run}`;
    await raw.send(
      new CreateTableCommand({
        TableName: other,
        AttributeDefinitions: [{ AttributeName: "id", AttributeType: "N" }],
        KeySchema: [{ AttributeName: "id", KeyType: "HASH" }],
        BillingMode: "PAY_PER_REQUEST",
      }),
    );
    await assert.rejects(
      createDynamoTable({ table: other, client: raw }),
      /exists with another key/,
    );
  });

  it("a missing table: calls reject with the SDK's reason", async () => {
    const missing = dynamodbStore({ table: "no-such-table", clientConfig: db.clientConfig });
    try {
      await assert.rejects(missing.get("k"), (error: unknown) => {
        assert.ok(error instanceof StoreError);
        assert.match(error.message, /ResourceNotFound|non-existent table|not found/i);
        return true;
      });
      assert.equal(missing.status, "failing");
    } finally {
      await missing.disconnect();
    }
  });

  it("validates its options, naming the option", () => {
    const cases: Array<[() => unknown, string]> = [
      [() => dynamodbStore(undefined as never), "dynamodbStore(options)"],
      [() => dynamodbStore({} as never), "dynamodbStore.table"],
      [() => dynamodbStore({ table: "ab" }), "dynamodbStore.table"],
      [() => dynamodbStore({ table: "bad name" }), "dynamodbStore.table"],
      [() => dynamodbStore({ table: "tbl", prefix: 1 as never }), "dynamodbStore.prefix"],
      [() => dynamodbStore({ table: "tbl", timeout: "never" }), "dynamodbStore.timeout"],
      [() => dynamodbStore({ table: "tbl", connectTimeout: 0 }), "dynamodbStore.connectTimeout"],
      [
        () => dynamodbStore({ table: "tbl", consistentRead: "yes" as never }),
        "dynamodbStore.consistentRead",
      ],
      [() => dynamodbStore({ table: "tbl", attributes: { key: "v" } }), "dynamodbStore.attributes"],
      [
        () => dynamodbStore({ table: "tbl", attributes: { ttl: "" } }),
        "dynamodbStore.attributes.ttl",
      ],
      [() => dynamodbStore({ table: "tbl", client: {} as never }), "dynamodbStore.client"],
      [
        () => dynamodbStore({ table: "tbl", client: raw, clientConfig: {} }),
        "dynamodbStore.client",
      ],
    ];
    for (const [make, option] of cases) {
      assert.throws(make, (error: unknown) => {
        assert.ok(error instanceof InvalidOptionError, String(error));
        assert.equal(error.option, option);
        return true;
      });
    }
  });

  it("works with a caller's client, and leaves it usable on disconnect", async () => {
    const own = dynamodbStore({ table: TABLE, client: raw });
    await own.set(key("client"), bytes("theirs"), 60_000);
    assert.equal(text(await own.get(key("client"))), "theirs");
    await own.disconnect();
    await assert.rejects(own.get(key("client")), /disconnected/);
    assert.ok(await rawItem(key("client")), "the caller's client still works");
  });
});

describe("dynamodb store when the server fails", () => {
  let db: DynaliteServer;
  before(async () => {
    db = await startDynalite();
    await createDynamoTable({ table: TABLE, clientConfig: db.clientConfig });
  });
  after(async () => {
    await db?.stop();
  });

  it("killed: calls fail fast; restarted (empty, table recreated): works again without a new store", async () => {
    const store = dynamodbStore({ table: TABLE, clientConfig: db.clientConfig, timeout: 2_000 });
    try {
      await store.set("k", bytes("before"), 60_000);
      assert.equal(store.status, "ready");
      await db.kill();
      const started = Date.now();
      await assert.rejects(store.get("k"), StoreError);
      assert.ok(Date.now() - started < 1_500, `took ${Date.now() - started} ms`);
      assert.equal(store.status, "failing");
      await db.start();
      await createDynamoTable({ table: TABLE, clientConfig: db.clientConfig });
      await store.set("k", bytes("after"), 60_000);
      assert.equal(text(await store.get("k")), "after");
      assert.equal(store.status, "ready");
    } finally {
      await store.disconnect();
    }
  });

  it("paused: calls reject with E_STORE_TIMEOUT after `timeout`; resumed: works again", async () => {
    const store = dynamodbStore({ table: TABLE, clientConfig: db.clientConfig, timeout: 300 });
    try {
      await store.set("p", bytes("v"), 60_000);
      db.pause();
      const started = Date.now();
      const results = await Promise.allSettled([
        store.get("p"),
        store.getMany(["p", "q"]),
        store.set("p", bytes("w"), 60_000),
      ]);
      const elapsed = Date.now() - started;
      for (const result of results) {
        assert.equal(result.status, "rejected");
        assert.equal((result as PromiseRejectedResult).reason.code, "E_STORE_TIMEOUT");
      }
      assert.ok(elapsed >= 290 && elapsed < 1_500, `rejected after ${elapsed} ms`);
      db.resume();
      await waitFor(async () => {
        await store.set("p2", bytes("after"), 60_000);
        return text(await store.get("p2")) === "after";
      }, "the resumed server to answer");
    } finally {
      db.resume();
      await store.disconnect();
    }
  });
});

describe("the cache on DynamoDB", () => {
  let db: DynaliteServer;
  before(async () => {
    db = await dynalite();
  });

  const make = (prefix: string, options: Parameters<typeof createCache>[0] = {}) =>
    createCache({
      store: dynamodbStore({
        table: TABLE,
        clientConfig: db.clientConfig,
        prefix,
        timeout: 10_000,
        connectTimeout: 5_000,
      }),
      l1: true,
      // dynalite answers in a few ms, but a loaded test machine can stall it for longer: these
      // tests are about behaviour, and a timed-out call would turn a hit into a miss.
      storeTimeout: 10_000,
      ...options,
    });

  it("getOrSet and invalidateTags work end to end with an in-process tier", async () => {
    const prefix = `e2e-${randomUUID().slice(0, 8)}:`;
    const cache = make(prefix);
    const other = make(prefix);
    try {
      let calls = 0;
      const load = (c = cache) =>
        c.getOrSet("post:1", async () => ({ id: 1, calls: ++calls }), {
          ttl: "1m",
          tags: ["posts"],
        });
      assert.deepEqual(await load(), { id: 1, calls: 1 });
      assert.deepEqual(await load(), { id: 1, calls: 1 });
      assert.deepEqual(await load(other), { id: 1, calls: 1 }, "another instance reads it from L2");
      await cache.invalidateTags(["posts"]);
      assert.deepEqual(await load(), { id: 1, calls: 2 });
      assert.equal(calls, 2);
    } finally {
      await Promise.all([cache.close(), other.close()]);
    }
  });

  it("the fleet-wide lease (conditional writes): two instances, one factory call", async () => {
    const prefix = `lease-${randomUUID().slice(0, 8)}:`;
    const a = make(prefix, { lease: true });
    const b = make(prefix, { lease: true });
    try {
      let calls = 0;
      let release!: () => void;
      const gate = new Promise<void>((resolve) => {
        release = resolve;
      });
      const factory = async () => {
        calls++;
        await gate;
        return "value";
      };
      const results = Promise.all([a.getOrSet("k", factory), b.getOrSet("k", factory)]);
      await waitFor(() => calls > 0, "the lease holder's factory to start");
      release();
      assert.deepEqual(await results, ["value", "value"]);
      assert.equal(calls, 1);
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
  });

  it("values over the store's maxValueSize are served, not stored, and never open the breaker", async () => {
    const cache = make(`big-${randomUUID().slice(0, 8)}:`, { l1: false, breakerThreshold: 3 });
    const errors: string[] = [];
    cache.on("error", ({ error }) => errors.push(String(error)));
    try {
      const large = "x".repeat(500 * 1024); // over 400 KB once encoded
      for (let i = 0; i < 6; i++) {
        assert.equal(await cache.getOrSet(`big:${i}`, () => large), large);
      }
      assert.equal(cache.storeState, "closed", "six refused writes in a row opened the breaker");
      assert.equal(errors.length, 6);
      assert.match(errors[0]!, /exceeds the store's maxValueSize/);
      assert.equal(await cache.get("big:0"), undefined, "not stored");
      await cache.set("small", "fits");
      assert.equal(await cache.get("small"), "fits");
    } finally {
      await cache.close();
    }
  });

  it("without a bus, another instance's L1 copy is bounded by l1MaxTtl", async () => {
    const prefix = `l1-${randomUUID().slice(0, 8)}:`;
    const clock = manualClock(Date.now());
    const a = make(prefix, { l1MaxTtl: "5s", ttl: "1h", clock });
    const b = make(prefix, { l1MaxTtl: "5s", ttl: "1h", clock });
    try {
      await a.set("k", "v1");
      assert.equal(await b.getOrSet("k", () => "from b"), "v1");
      await a.set("k", "v2");
      assert.equal(await b.getOrSet("k", () => "from b"), "v1", "b serves its L1 copy");
      clock.advance(5_001);
      assert.equal(await b.getOrSet("k", () => "from b"), "v2", "past l1MaxTtl: re-read from L2");
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
  });
});
