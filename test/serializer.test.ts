import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { isDeepStrictEqual } from "node:util";
import { findUnsupported } from "../src/fidelity.js";
import {
  type Cache,
  createCache,
  encodeEntry,
  jsonSerializer,
  msgpackSerializer,
  OutdatedEntryError,
  registerCodec,
  type Serializer,
  UnsupportedValueError,
} from "../src/index.js";
import { MapStore, manualClock } from "./helpers/core.js";

function roundTrip(serializer: Serializer, value: unknown): unknown {
  const encoded = serializer.serialize(value);
  return serializer.deserialize(Buffer.from(encoded));
}

/** Deep-equal in content and in the prototype of every object along the way. */
function assertFaithful(out: unknown, value: unknown): void {
  assert.ok(isDeepStrictEqual(out, value), `not deep-equal: ${String(value)}`);
  assertSamePrototypes(out, value, new Set());
}

function assertSamePrototypes(out: unknown, value: unknown, seen: Set<unknown>): void {
  if (value === null || typeof value !== "object" || seen.has(value)) return;
  seen.add(value);
  assert.equal(Object.getPrototypeOf(out), Object.getPrototypeOf(value));
  if (value instanceof Map) {
    const outValues = [...(out as Map<unknown, unknown>).values()];
    let i = 0;
    for (const v of value.values()) assertSamePrototypes(outValues[i++], v, seen);
  } else if (!ArrayBuffer.isView(value)) {
    for (const key of Object.keys(value)) {
      assertSamePrototypes(
        (out as Record<string, unknown>)[key],
        (value as Record<string, unknown>)[key],
        seen,
      );
    }
  }
}

const supported: Record<string, unknown> = {
  "a Date": new Date(Date.UTC(2026, 11, 5, 10, 0, 0, 7)),
  "a Map with object keys": new Map<unknown, unknown>([
    [1, { a: 2 }],
    ["k", new Date(0)],
  ]),
  "a Set": new Set([1, "a", null]),
  "a small BigInt": 12n,
  "a large BigInt": 2n ** 200n + 1n,
  "a large negative BigInt": -(2n ** 70n),
  "a Uint8Array": new Uint8Array([1, 2, 255]),
  "a Float64Array": new Float64Array([1.5, Number.NaN]),
  "a BigInt64Array": new BigInt64Array([-1n, 2n]),
  "a Buffer": Buffer.from("héllo"),
  "an ArrayBuffer": new Uint8Array([9, 8]).buffer,
  "nested undefined": { a: undefined, b: [undefined, 1] },
  NaN: Number.NaN,
  Infinity: Number.POSITIVE_INFINITY,
  "-Infinity": Number.NEGATIVE_INFINITY,
  "a RegExp": /a+b/giu,
  "a plain nested object": { users: [{ id: 1, name: "Ada", tags: ["x"] }], total: 2 ** 60 },
  "a string with a surrogate pair": "a😀b",
  "an empty string": "",
  "a large integer": Number.MAX_SAFE_INTEGER,
};

describe("msgpackSerializer (the default): what a hit returns is what was stored", () => {
  for (const [name, value] of Object.entries(supported)) {
    it(`round-trips ${name}`, () => {
      assert.equal(msgpackSerializer.unsupported?.(value), undefined);
      assertFaithful(roundTrip(msgpackSerializer, value), value);
    });
  }

  it("round-trips an invalid Date (isDeepStrictEqual never equates two of them)", () => {
    const out = roundTrip(msgpackSerializer, new Date(Number.NaN));
    assert.ok(out instanceof Date && Number.isNaN(out.getTime()));
  });

  it("keeps a Buffer a Buffer and a Uint8Array a Uint8Array", () => {
    const out = roundTrip(msgpackSerializer, { b: Buffer.from("x"), u: new Uint8Array([1]) }) as {
      b: unknown;
      u: unknown;
    };
    assert.ok(Buffer.isBuffer(out.b));
    assert.ok(!Buffer.isBuffer(out.u) && out.u instanceof Uint8Array);
  });

  it("keeps cycles and shared references", () => {
    const shared = { n: 1 };
    const value: Record<string, unknown> = { a: shared, b: [shared] };
    value.self = value;
    const out = roundTrip(msgpackSerializer, value) as typeof value;
    assert.equal(out.self, out);
    assert.equal(out.a, (out.b as unknown[])[0]);
  });
});

class Money {
  constructor(
    readonly amount: bigint,
    readonly currency: string,
  ) {}
}
registerCodec({
  type: 41,
  Class: Money,
  write: (m: Money) => [m.amount, m.currency] as const,
  read: ([amount, currency]: readonly [bigint, string]) => new Money(amount, currency),
});

describe("codecs for your classes", () => {
  it("stores an instance of a registered class as that class", () => {
    const value = { price: new Money(1999n, "EUR") };
    assert.equal(msgpackSerializer.unsupported?.(value), undefined);
    const out = roundTrip(msgpackSerializer, value) as typeof value;
    assert.ok(out.price instanceof Money);
    assert.deepEqual(out, value);
  });

  it("refuses a type number out of 1–100", () => {
    assert.throws(
      () => registerCodec({ type: 0, Class: Money, write: () => 0, read: () => new Money(0n, "") }),
      RangeError,
    );
  });
});

function refused(serializer: Serializer, value: unknown, path: string, reason: RegExp): void {
  const found = serializer.unsupported?.(value);
  assert.ok(found, `${serializer.name} should refuse ${path}`);
  assert.equal(found.path, path);
  assert.match(found.reason, reason);
  assert.throws(
    () => serializer.serialize(value),
    (error: unknown) => {
      assert.ok(error instanceof UnsupportedValueError);
      assert.equal(error.code, "E_VALUE_UNSUPPORTED");
      assert.equal(error.path, path);
      assert.equal(error.serializer, serializer.name);
      assert.ok(error.message.includes(path), error.message);
      return true;
    },
  );
}

class User {
  id = 1;
}

describe("msgpackSerializer refuses what it cannot round-trip, naming the path", () => {
  const sparse: unknown[] = [1];
  sparse[2] = 3;
  const extra = Object.assign([1], { note: "x" });
  const cases: Array<[string, unknown, string, RegExp]> = [
    ["a function", () => 1, "value", /function/],
    [
      "a nested function",
      { users: [{}, {}, {}, { createdBy: () => 1 }] },
      "value.users[3].createdBy",
      /function/,
    ],
    ["a symbol", { s: Symbol("x") }, "value.s", /symbol/],
    ["a class instance", { u: new User() }, "value.u", /instance of User.*codec/],
    ["an Error", { e: new Error("x") }, "value.e", /instance of Error/],
    ["a Promise", [Promise.resolve(1)], "value[0]", /instance of Promise/],
    ["a WeakMap", { "my-key": new WeakMap() }, 'value["my-key"]', /instance of WeakMap/],
    ["a boxed number", { n: new Number(1) }, "value.n", /instance of Number/],
    ["-0", { z: -0 }, "value.z", /-0/],
    ["a lone surrogate", { s: "a\ud800b" }, "value.s", /lone surrogate/],
    ["a trailing lone surrogate", ["\udc00"], "value[0]", /lone surrogate/],
    ["a sparse array", sparse, "value[1]", /sparse/],
    ["an array with extra properties", extra, "value", /extra properties/],
    ["a null-prototype object", { o: Object.create(null) }, "value.o", /null prototype/],
    ["symbol keys", { o: { [Symbol("k")]: 1 } }, "value.o", /symbol keys/],
    ["inside a Map", new Map([["k", { f: () => 1 }]]), 'value.get("k").f', /function/],
    ["a Map key", new Map([[Symbol("k"), 1]]), "value.keys()[0]", /symbol/],
    ["inside a Set", new Set([1, () => 1]), "value.values()[1]", /function/],
  ];
  for (const [name, value, path, reason] of cases) {
    it(`refuses ${name} at ${path}`, () => refused(msgpackSerializer, value, path, reason));
  }
});

describe("jsonSerializer: refuses what JSON would change", () => {
  const circular: Record<string, unknown> = {};
  circular.me = circular;
  const cases: Array<[string, unknown, string, RegExp]> = [
    ["a Date", { at: new Date(0) }, "value.at", /instance of Date/],
    ["a Map", { m: new Map() }, "value.m", /instance of Map/],
    ["a Set", [new Set()], "value[0]", /instance of Set/],
    ["a Buffer", { b: Buffer.from("x") }, "value.b", /instance of Buffer/],
    ["a BigInt", { n: 1n }, "value.n", /BigInt/],
    ["NaN", { n: Number.NaN }, "value.n", /NaN/],
    ["Infinity", [Number.POSITIVE_INFINITY], "value[0]", /Infinity/],
    ["nested undefined", { a: { b: undefined } }, "value.a.b", /undefined/],
    ["undefined in an array", [1, undefined], "value[1]", /undefined/],
    ["a cycle", circular, "value.me", /circular/],
    ["-0", -0, "value", /-0/],
    ["a function", { f() {} }, "value.f", /function/],
  ];
  for (const [name, value, path, reason] of cases) {
    it(`refuses ${name} at ${path}`, () => refused(jsonSerializer, value, path, reason));
  }

  it("accepts plain data, shared references (as copies) and lone surrogates", () => {
    const shared = { n: 1 };
    for (const value of [{ a: [1, "x", null, true, { b: 2.5 }] }, [shared, shared], "a\ud800"]) {
      assert.equal(jsonSerializer.unsupported?.(value), undefined);
      assertFaithful(roundTrip(jsonSerializer, value), value);
    }
  });
});

describe("the walker", () => {
  it("visits a shared subtree once under the default rules (cost is linear in the value)", () => {
    // 2^40 paths, 40 distinct objects: a walk per path would never finish.
    let node: unknown = { leaf: 1 };
    for (let i = 0; i < 40; i++) node = { l: node, r: node };
    assert.equal(msgpackSerializer.unsupported?.(node), undefined);
  });

  it("is only the serializer's own rules: a serializer without `unsupported` is not checked", () => {
    assert.equal(
      findUnsupported(new Date(0), {
        prototypes: new Set([Date.prototype]),
        bigint: false,
        nestedUndefined: false,
        nonFinite: false,
        loneSurrogates: false,
        cycles: false,
      }),
      undefined,
    );
  });
});

// Three tiers: memory only, a remote store only, memory over a remote store.
function caches(serializer?: Serializer): Array<[string, Cache, MapStore | undefined]> {
  const clock = manualClock();
  const remote = new MapStore(clock);
  const tiered = new MapStore(clock);
  const withSerializer = serializer ? { serializer } : {};
  return [
    ["memory-only", createCache({ clock, ...withSerializer }), undefined],
    ["remote-only", createCache({ clock, store: remote, ...withSerializer }), remote],
    ["tiered", createCache({ clock, store: tiered, l1: true, ...withSerializer }), tiered],
  ];
}

function assertRefused(error: unknown, key: string, path: string): true {
  assert.ok(error instanceof UnsupportedValueError, `expected UnsupportedValueError, got ${error}`);
  assert.equal(error.code, "E_VALUE_UNSUPPORTED");
  assert.equal(error.key, key);
  assert.equal(error.path, path);
  assert.ok(error.message.includes(`"${key}"`) && error.message.includes(path), error.message);
  return true;
}

describe("the cache refuses an unsupported value at once, in every tier", () => {
  for (const [tier, cache, store] of caches()) {
    it(`${tier}: set rejects with the key and the path; nothing is stored`, async () => {
      const value = { users: [{ id: 1, createdBy: () => "x" }] };
      await assert.rejects(cache.set("u", value), (e) =>
        assertRefused(e, "u", "value.users[0].createdBy"),
      );
      assert.equal(await cache.get("u"), undefined);
      assert.equal(store?.data.size ?? 0, 0);
    });

    it(`${tier}: getOrSet gives the error to the caller; the factory runs once per call`, async () => {
      let runs = 0;
      const factory = async () => {
        runs++;
        return { when: new Date(0), pending: Promise.resolve() };
      };
      for (let call = 1; call <= 3; call++) {
        await assert.rejects(cache.getOrSet("p", factory), (e) =>
          assertRefused(e, "p", "value.pending"),
        );
        assert.equal(runs, call);
      }
      assert.equal(store?.data.size ?? 0, 0);
    });

    it(`${tier}: a Map stored is a Map read`, async () => {
      const value = new Map([["a", new Set([new Date(5)])]]);
      await cache.set("m", value);
      if (store) {
        // Read through a second cache on the same store: what another process would see.
        const clock = manualClock();
        const other = createCache({ clock, store });
        assertFaithful(await other.get("m"), value);
      }
      assertFaithful(await cache.get("m"), value);
    });
  }

  for (const [tier, cache] of caches(jsonSerializer)) {
    it(`${tier} with jsonSerializer: a Date is refused in memory as in the remote store`, async () => {
      await assert.rejects(cache.set("d", { at: new Date(0) }), (e) =>
        assertRefused(e, "d", "value.at"),
      );
    });
  }
});

describe("entries written before the upgrade (format 3) or by another serializer", () => {
  it("are misses, never decoded; the first one is reported, the others are quiet", async () => {
    const clock = manualClock();
    const store = new MapStore(clock);
    const cache = createCache({ clock, store });
    const errors: unknown[] = [];
    cache.on("error", (e) => errors.push(e.error));
    const json = encodeEntry(
      {
        value: { at: "2026" },
        createdAt: clock.t,
        freshUntil: clock.t + 60_000,
        staleUntil: clock.t + 60_000,
        tags: ["@ns:"],
      },
      jsonSerializer,
    );
    // Version 3: magic, version, then the fields that follow the serializer's name in 4.
    const v3 = Buffer.concat([json.subarray(0, 2), Buffer.from([3]), json.subarray(8)]);
    for (let i = 0; i < 5; i++) store.put(`old${i}`, v3);
    store.put("other", json);
    for (let i = 0; i < 5; i++) assert.equal(await cache.get(`old${i}`), undefined);
    assert.equal(await cache.get("other"), undefined);
    assert.equal(errors.length, 1);
    assert.ok(errors[0] instanceof OutdatedEntryError);
    // The next write replaces it with a readable entry.
    assert.deepEqual(await cache.getOrSet("old0", () => ({ at: new Date(0) })), {
      at: new Date(0),
    });
    assert.deepEqual(await createCache({ clock, store }).get("old0"), { at: new Date(0) });
  });
});
