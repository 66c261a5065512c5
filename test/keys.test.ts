import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { argsKey, digest, KeyNotSerializableError, stableSerialize } from "../src/index.js";
import { MAX_READABLE_ARGS } from "../src/keys.js";

const run = promisify(execFile);

function assertSameKey(a: unknown[], b: unknown[]): void {
  assert.equal(argsKey(a), argsKey(b));
}

function assertDistinct(values: unknown[]): void {
  const keys = values.map((v) => argsKey([v]));
  assert.equal(new Set(keys).size, values.length, `collision among ${keys.join(" | ")}`);
}

function assertNotSerializable(value: unknown, path: RegExp): void {
  assert.throws(
    () => argsKey([value]),
    (error: unknown) => {
      assert.ok(error instanceof KeyNotSerializableError);
      assert.equal(error.code, "E_KEY_NOT_SERIALIZABLE");
      assert.match(error.message, path);
      return true;
    },
  );
}

describe("stable serialization", () => {
  it("has a documented, readable form for short argument lists", () => {
    assert.equal(argsKey([]), "[]");
    assert.equal(argsKey([{ b: 1, a: "x" }]), '[{"a":"x","b":1}]');
    assert.equal(argsKey([1, "1", true, null, undefined]), '[1,"1",true,null,undefined]');
    assert.equal(argsKey([new Date(0)]), "[Date(1970-01-01T00:00:00.000Z)]");
    assert.equal(argsKey([10n]), "[10n]");
    assert.equal(argsKey([Number.NaN]), "[Number(NaN)]");
  });

  it("sorts object keys at every depth", () => {
    assertSameKey(
      [{ b: 1, a: { d: [1, { y: 2, x: 1 }], c: 3 } }],
      [{ a: { c: 3, d: [1, { x: 1, y: 2 }] }, b: 1 }],
    );
    assert.notEqual(argsKey([[1, 2]]), argsKey([[2, 1]]), "array order matters");
  });

  it("tells apart values that JSON would conflate", () => {
    assertDistinct([
      1,
      "1",
      1n,
      "1n",
      true,
      "true",
      null,
      undefined,
      "null",
      Number.NaN,
      Number.POSITIVE_INFINITY,
      Number.NEGATIVE_INFINITY,
      new Date(0),
      new Date(0).toISOString(),
      new Date(Number.NaN),
      [],
      {},
      "",
      new Map(),
      new Set(),
      new Map([["a", 1]]),
      { a: 1 },
      new Set([1]),
      [1],
      new Uint8Array([1]),
      Buffer.from([1]),
      /a/g,
      new URL("https://example.com/a"),
    ]);
    assert.notEqual(argsKey([null]), argsKey([undefined]));
    assert.notEqual(argsKey([[null]]), argsKey([[undefined]]));
  });

  it("treats -0 as 0 and skips properties whose value is undefined (as JSON does)", () => {
    assertSameKey([-0], [0]);
    assertSameKey([{ a: 1, b: undefined }], [{ a: 1 }]);
  });

  it("orders Map and Set members so that insertion order does not matter", () => {
    assertSameKey(
      [
        new Map<unknown, unknown>([
          ["b", 2],
          [1, "one"],
          [{ k: 1 }, [1]],
        ]),
      ],
      [
        new Map<unknown, unknown>([
          [{ k: 1 }, [1]],
          [1, "one"],
          ["b", 2],
        ]),
      ],
    );
    assertSameKey([new Set(["x", 2, { a: 1 }])], [new Set([{ a: 1 }, "x", 2])]);
    assert.notEqual(argsKey([new Map([["a", 1]])]), argsKey([new Map([["a", 2]])]));
    assert.notEqual(argsKey([new Map([[1, 1]])]), argsKey([new Map([["1", 1]])]));
  });

  it("never produces [object Object] or memory addresses", () => {
    class Point {
      constructor(
        readonly x: number,
        readonly y: number,
      ) {}
    }
    class Other {
      constructor(
        readonly x: number,
        readonly y: number,
      ) {}
    }
    const withNullProto = Object.assign(Object.create(null), { a: 1 });
    const text = argsKey([{ nested: { deep: {} } }, new Point(1, 2), withNullProto]);
    assert.doesNotMatch(text, /\[object /);
    assert.equal(argsKey([new Point(1, 2)]), '[Point{"x":1,"y":2}]');
    assert.notEqual(argsKey([new Point(1, 2)]), argsKey([new Other(1, 2)]));
    assert.notEqual(argsKey([new Point(1, 2)]), argsKey([new Point(2, 1)]));
    assertSameKey([withNullProto], [{ a: 1 }]);
  });

  it("uses toJSON for objects that define it", () => {
    const money = { amount: 5, toJSON: () => "5.00 EUR" };
    const other = { amount: 6, toJSON: () => "5.00 EUR" };
    assertSameKey([money], [other]);
    assert.notEqual(argsKey([money]), argsKey(["5.00 EUR"]));
  });

  it("keys byte arrays by their content and type", () => {
    assertSameKey([Buffer.from("abc")], [Buffer.from("abc")]);
    assert.notEqual(argsKey([Buffer.from("abc")]), argsKey([Buffer.from("abd")]));
    const view = new Uint8Array(Buffer.from("xabcx")).subarray(1, 4);
    assertSameKey([view], [new Uint8Array(Buffer.from("abc"))]);
  });

  it("allows the same object twice (only cycles are rejected)", () => {
    const shared = { a: 1 };
    assert.equal(argsKey([shared, shared]), '[{"a":1},{"a":1}]');
    assert.equal(argsKey([[shared, [shared]]]), '[[{"a":1},[{"a":1}]]]');
  });
});

describe("long argument lists", () => {
  it("are hashed with SHA-256 (base64url) behind a # prefix", () => {
    const args = [{ text: "x".repeat(200) }];
    const key = argsKey(args);
    assert.match(key, /^#[A-Za-z0-9_-]{43}$/);
    assert.equal(key, `#${digest(stableSerialize(args))}`);
    assert.equal(argsKey([{ text: "x".repeat(200) }]), key);
    assert.notEqual(argsKey([{ text: `${"x".repeat(199)}y` }]), key);
  });

  it("switch to the digest just past MAX_READABLE_ARGS characters", () => {
    // '["' + n × "a" + '"]' has n + 4 characters.
    const atLimit = ["a".repeat(MAX_READABLE_ARGS - 4)];
    const pastLimit = ["a".repeat(MAX_READABLE_ARGS - 3)];
    assert.equal(argsKey(atLimit).length, MAX_READABLE_ARGS);
    assert.ok(argsKey(atLimit).startsWith("["));
    assert.ok(argsKey(pastLimit).startsWith("#"));
  });
});

describe("values without a stable form", () => {
  it("throw KeyNotSerializableError naming where they are", () => {
    assertNotSerializable(() => 1, /args\[0\] is a function/);
    assertNotSerializable({ callback: () => 1 }, /args\[0\]\.callback is a function/);
    assertNotSerializable(Symbol("s"), /args\[0\] is a symbol/);
    assertNotSerializable([1, Symbol.iterator], /args\[0\]\[1\] is a symbol/);
    assertNotSerializable(new Map([["k", () => 1]]), /args\[0\]\.value is a function/);
    const cycle: Record<string, unknown> = { name: "loop" };
    cycle.self = cycle;
    assertNotSerializable(cycle, /circular/);
    const list: unknown[] = [];
    list.push(list);
    assertNotSerializable(list, /circular/);
  });
});

describe("stable keys across processes", () => {
  it("two node processes derive identical keys from differently built arguments", async () => {
    const child = fileURLToPath(new URL("./fixtures/keys-child.ts", import.meta.url));
    const spawnChild = async (variant: "a" | "b", timezone: string) => {
      const { stdout } = await run(process.execPath, ["--import", "tsx", child, variant], {
        env: { ...process.env, TZ: timezone },
        timeout: 30_000,
      });
      return JSON.parse(stdout) as {
        serialized: string;
        argsKey: string;
        shortKey: string;
        wrapKeys: string[];
        timezone: string;
      };
    };
    const [a, b] = await Promise.all([spawnChild("a", "UTC"), spawnChild("b", "Pacific/Chatham")]);
    // The two processes really differ in what could leak into a naive key.
    assert.notEqual(a.timezone, b.timezone);
    assert.equal(a.serialized, b.serialized);
    assert.equal(a.argsKey, b.argsKey);
    assert.equal(a.shortKey, b.shortKey);
    assert.deepEqual(a.wrapKeys, b.wrapKeys);
    assert.match(a.argsKey, /^#[A-Za-z0-9_-]{43}$/);
    assert.equal(a.shortKey, '[{"a":"x","b":1}]');
    assert.deepEqual(a.wrapKeys, [`searchPosts:${a.argsKey}`, `searchPosts:${a.shortKey}`]);
    // And they agree with this process.
    assert.equal(a.shortKey, argsKey([{ a: "x", b: 1 }]));
    assert.ok(a.serialized.includes("Date(2024-01-31T23:30:00.005Z)"));
  });
});
