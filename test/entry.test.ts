import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { deepFreeze } from "../src/entry.js";
import type { Entry, Serializer } from "../src/index.js";
import {
  CorruptEntryError,
  decodeEntry,
  encodeEntry,
  jsonSerializer,
  msgpackSerializer,
  OutdatedEntryError,
  rawSerializer,
} from "../src/index.js";

// Offsets of the documented layout (src/entry.ts, version 4), for the json serializer (its
// 4-byte name follows the version).
const VERSION_AT = 2;
const NAME_LENGTH_AT = 3;
const H = 4 + 4;
const FLAGS_AT = H;
const CREATED_AT = H + 1;
const FRESH_AT = H + 9;
const STALE_AT = H + 17;
const SWR_AT = H + 25;
const GRACE_AT = H + 33;
const DELTA_AT = H + 41;
const PAYLOAD_LENGTH_AT = H + 49;
const TAG_COUNT_AT = H + 53;
const FIXED_HEADER = H + 55;

const T = 1_700_000_000_000;

function entry<V>(value: V, tags: readonly string[] = ["@ns:", "post:1"]): Entry<V> {
  return {
    value,
    createdAt: T,
    freshUntil: T + 60_000,
    staleUntil: T + 120_000,
    swr: 60_000,
    grace: 30_000,
    delta: 12.5,
    tags,
  };
}

function assertCorrupt(bytes: Uint8Array, reason: RegExp, serializer: Serializer = jsonSerializer) {
  assert.throws(
    () => decodeEntry("the-key", bytes, serializer),
    (error: unknown) => {
      assert.ok(error instanceof CorruptEntryError, `expected CorruptEntryError, got ${error}`);
      assert.equal(error.code, "E_CORRUPT_ENTRY");
      assert.equal(error.key, "the-key");
      assert.match(error.message, /the-key/);
      assert.match(error.message, reason);
      return true;
    },
  );
}

describe("entry round trip", () => {
  it("keeps value, timestamps and tags", () => {
    const original = entry({ title: "héllo", ids: [1, 2], nested: { ok: true } }, [
      "@ns:",
      "post:1",
      "ünïcödé 🏷",
    ]);
    const decoded = decodeEntry("k", encodeEntry(original, jsonSerializer), jsonSerializer);
    assert.deepEqual(decoded, original);
  });

  it("keeps an entry without tags", () => {
    const original = entry("v", []);
    assert.deepEqual(
      decodeEntry("k", encodeEntry(original, jsonSerializer), jsonSerializer),
      original,
    );
  });

  it("keeps fractional timestamps exactly", () => {
    const original = { ...entry(1), createdAt: T + 2 ** -9, freshUntil: T + 1000 + 2 ** -9 };
    assert.deepEqual(
      decodeEntry("k", encodeEntry(original, jsonSerializer), jsonSerializer),
      original,
    );
  });

  it("tells undefined from null, without a payload for undefined", () => {
    const undef = encodeEntry(entry(undefined, []), jsonSerializer);
    const nul = encodeEntry(entry(null, []), jsonSerializer);
    assert.equal(undef.length, FIXED_HEADER);
    assert.equal(undef[FLAGS_AT], 1);
    assert.equal(undef.readUInt32BE(PAYLOAD_LENGTH_AT), 0);
    assert.equal(nul[FLAGS_AT], 0);
    const decodedUndef = decodeEntry("k", undef, jsonSerializer);
    assert.ok("value" in decodedUndef);
    assert.equal(decodedUndef.value, undefined);
    assert.equal(decodeEntry("k", nul, jsonSerializer).value, null);
  });

  it("stores raw bytes as they are", () => {
    const body = Buffer.from([0, 1, 2, 0xff, 0xfe, 0x0a, 0x0d, 0]);
    const bytes = encodeEntry(entry(body), rawSerializer);
    assert.deepEqual(bytes.subarray(bytes.length - body.length), body);
    const decoded = decodeEntry<Buffer>("k", bytes, rawSerializer);
    assert.ok(Buffer.isBuffer(decoded.value));
    assert.deepEqual(decoded.value, body);
    const empty = decodeEntry<Buffer>(
      "k",
      encodeEntry(entry(Buffer.alloc(0)), rawSerializer),
      rawSerializer,
    );
    assert.equal(empty.value.length, 0);
  });

  it("accepts a serializer that returns a string or bytes", () => {
    const viaBytes: Serializer = {
      name: "json-bytes",
      serialize: (v) => new TextEncoder().encode(JSON.stringify(v)),
      deserialize: (b) => JSON.parse(b.toString("utf8")),
    };
    const original = entry({ a: "ü" });
    assert.deepEqual(decodeEntry("k", encodeEntry(original, viaBytes), viaBytes), original);
    const sameName: Serializer = { ...viaBytes, name: "json" };
    assert.deepEqual(decodeEntry("k", encodeEntry(original, jsonSerializer), sameName), original);
  });

  it("decodes from a Uint8Array view that is not a Buffer and not at offset 0", () => {
    const encoded = encodeEntry(entry({ n: 1 }), jsonSerializer);
    const backing = new Uint8Array(encoded.length + 10);
    backing.set(encoded, 7);
    const view = new Uint8Array(backing.buffer, 7, encoded.length);
    assert.deepEqual(decodeEntry("k", view, jsonSerializer), entry({ n: 1 }));
  });
});

describe("entry validation: every malformed input is a CorruptEntryError", () => {
  const good = () => encodeEntry(entry({ n: 123456 }), jsonSerializer);

  it("too short for the header", () => {
    for (let n = 0; n < FIXED_HEADER; n++) assertCorrupt(good().subarray(0, n), /too short/);
  });

  it("not a cachet entry (magic)", () => {
    const bytes = good();
    bytes[0] = 0x7b; // "{"
    assertCorrupt(bytes, /not a cachet entry/);
    const other = good();
    other[1] = 0;
    assertCorrupt(other, /not a cachet entry/);
    assertCorrupt(
      Buffer.from(JSON.stringify({ value: 1, expiresAt: 2, padding: "x".repeat(40) })),
      /not a cachet entry/,
    );
  });

  it("negative or non-finite stale windows", () => {
    for (const at of [SWR_AT, GRACE_AT]) {
      for (const bad of [-1, Number.NaN, Number.POSITIVE_INFINITY]) {
        const bytes = good();
        bytes.writeDoubleBE(bad, at);
        assertCorrupt(bytes, /invalid stale windows/);
      }
    }
  });

  it("a negative or non-finite delta", () => {
    for (const bad of [-1, Number.NaN]) {
      const bytes = good();
      bytes.writeDoubleBE(bad, DELTA_AT);
      assertCorrupt(bytes, /invalid delta/);
    }
  });

  it("an unknown format version", () => {
    for (const version of [0, 1, 2, 5, 255]) {
      const bytes = good();
      bytes[VERSION_AT] = version;
      assertCorrupt(bytes, new RegExp(`unknown format version ${version}`));
    }
  });

  it("unknown flags", () => {
    const bytes = good();
    bytes[FLAGS_AT] = 0b10;
    assertCorrupt(bytes, /unknown flags 2/);
  });

  it("inconsistent timestamps", () => {
    const cases: Array<[number, number]> = [
      [CREATED_AT, Number.NaN],
      [FRESH_AT, Number.POSITIVE_INFINITY],
      [STALE_AT, Number.NEGATIVE_INFINITY],
      [FRESH_AT, T - 1], // fresh before created
      [STALE_AT, T + 59_999], // stale end before fresh end
    ];
    for (const [at, value] of cases) {
      const bytes = good();
      bytes.writeDoubleBE(value, at);
      assertCorrupt(bytes, /inconsistent timestamps/);
    }
  });

  it("truncated tags", () => {
    const bytes = encodeEntry(entry(1, ["abc"]), jsonSerializer);
    // More tags announced than present: the second tag's length header is past the end.
    const twoTags = Buffer.from(bytes.subarray(0, FIXED_HEADER + 2 + 3));
    twoTags.writeUInt16BE(2, TAG_COUNT_AT);
    twoTags.writeUInt32BE(0, PAYLOAD_LENGTH_AT);
    assertCorrupt(twoTags, /truncated tags/);
    // A tag longer than what follows.
    const longTag = Buffer.from(bytes);
    longTag.writeUInt16BE(500, FIXED_HEADER);
    assertCorrupt(longTag, /truncated tags/);
    // Cut inside the tag list.
    assertCorrupt(bytes.subarray(0, FIXED_HEADER + 1), /truncated tags/);
    assertCorrupt(bytes.subarray(0, FIXED_HEADER + 4), /truncated tags/);
  });

  it("a truncated payload, even one that would still parse", () => {
    const bytes = good(); // payload "{"n":123456}"
    for (let cut = 1; cut <= 11; cut++) {
      assertCorrupt(bytes.subarray(0, bytes.length - cut), /truncated payload/);
    }
    const number = encodeEntry(entry(123456), jsonSerializer);
    assertCorrupt(number.subarray(0, number.length - 1), /truncated payload/); // "12345" parses
    const raw = encodeEntry(entry(Buffer.from("a body")), rawSerializer);
    assertCorrupt(raw.subarray(0, raw.length - 2), /truncated payload/, rawSerializer);
  });

  it("bytes after the payload", () => {
    assertCorrupt(Buffer.concat([good(), Buffer.from(" ")]), /bytes after the payload/);
  });

  it("a payload after an undefined value", () => {
    const bytes = encodeEntry(entry(1, []), jsonSerializer);
    bytes[FLAGS_AT] = 1;
    assertCorrupt(bytes, /payload after an undefined value/);
  });

  it("a payload the serializer rejects, with the serializer's error as cause", () => {
    const broken: Serializer = { ...jsonSerializer, serialize: () => "{not json" };
    const bytes = encodeEntry(entry("x"), broken);
    assert.throws(
      () => decodeEntry("the-key", bytes, jsonSerializer),
      (error: unknown) => {
        assert.ok(error instanceof CorruptEntryError);
        assert.match(error.message, /the json serializer rejected the payload/);
        assert.ok(error.cause instanceof SyntaxError);
        return true;
      },
    );
  });
});

describe("entries of another format or serializer: misses, never mis-decoded", () => {
  it("records the serializer's name in the header", () => {
    const bytes = encodeEntry(entry({ n: 1 }), jsonSerializer);
    assert.equal(bytes[VERSION_AT], 4);
    assert.equal(bytes[NAME_LENGTH_AT], 4);
    assert.equal(bytes.toString("utf8", 4, 8), "json");
  });

  it("a version 3 entry (the previous format, JSON payload) is an OutdatedEntryError", () => {
    const current = encodeEntry(entry({ n: 1 }), jsonSerializer);
    // Version 3 had no serializer name: magic, version, then flags and the same fields.
    const v3 = Buffer.concat([current.subarray(0, 2), Buffer.from([3]), current.subarray(H)]);
    for (const serializer of [jsonSerializer, msgpackSerializer]) {
      assert.throws(
        () => decodeEntry("old", v3, serializer),
        (error: unknown) => {
          assert.ok(error instanceof OutdatedEntryError);
          assert.ok(error instanceof CorruptEntryError);
          assert.equal(error.code, "E_CORRUPT_ENTRY");
          assert.match(error.message, /format version 3/);
          return true;
        },
      );
    }
  });

  it("an entry written by another serializer is not decoded by this one", () => {
    const value = { when: "2026-12-05", list: [1, 2] };
    const asJson = encodeEntry(entry(value), jsonSerializer);
    const asPack = encodeEntry(entry(value), msgpackSerializer);
    assert.throws(() => decodeEntry("k", asJson, msgpackSerializer), OutdatedEntryError);
    assert.throws(() => decodeEntry("k", asPack, jsonSerializer), /written with the msgpack/);
    assert.throws(() => decodeEntry("k", asPack, rawSerializer), OutdatedEntryError);
    assert.deepEqual(decodeEntry("k", asPack, msgpackSerializer).value, value);
    // The CLI reads any payload as bytes on purpose.
    const raw = decodeEntry<Buffer>("k", asJson, rawSerializer, { anySerializer: true });
    assert.equal(raw.value.toString(), JSON.stringify(value));
  });
});

describe("entry encoding limits", () => {
  it("rejects more than 65535 tags and tags over 65535 bytes", () => {
    const many = Array.from({ length: 65_536 }, (_, i) => `t${i}`);
    assert.throws(() => encodeEntry(entry(1, many), jsonSerializer), RangeError);
    assert.throws(() => encodeEntry(entry(1, ["x".repeat(65_536)]), jsonSerializer), RangeError);
    // The limits themselves are fine.
    const atLimit = encodeEntry(entry(1, ["x".repeat(65_535)]), jsonSerializer);
    assert.equal(decodeEntry("k", atLimit, jsonSerializer).tags[0]?.length, 65_535);
  });

  it("lets the serializer's error through", () => {
    assert.throws(() => encodeEntry(entry(10n), jsonSerializer), {
      code: "E_VALUE_UNSUPPORTED",
      path: "value",
    });
    const throwing: Serializer = {
      ...jsonSerializer,
      serialize: () => {
        throw new TypeError("nope");
      },
    };
    assert.throws(() => encodeEntry(entry(1), throwing), TypeError);
    assert.throws(() => encodeEntry(entry("text"), rawSerializer), /raw serializer/);
  });
});

describe("deepFreeze", () => {
  it("freezes nested objects and arrays, through cycles, leaving byte arrays alone", () => {
    const value: Record<string, unknown> = { list: [{ n: 1 }], bytes: Buffer.from("ab") };
    value.self = value;
    deepFreeze(value);
    assert.ok(Object.isFrozen(value));
    assert.ok(Object.isFrozen(value.list));
    assert.ok(Object.isFrozen((value.list as object[])[0]));
    (value.bytes as Buffer)[0] = 0x41;
    assert.equal((value.bytes as Buffer).toString(), "Ab");
  });

  it("walks into an object that is already frozen", () => {
    const inner = { n: 1 };
    deepFreeze(Object.freeze({ inner }));
    assert.ok(Object.isFrozen(inner));
  });

  it("returns primitives unchanged", () => {
    assert.equal(deepFreeze(1), 1);
    assert.equal(deepFreeze(null), null);
    assert.equal(deepFreeze(undefined), undefined);
  });
});
