import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { formatCount, parseCount, parseCounts, parseOptions } from "../../bench/lib/options.js";

const spec = { values: ["keys", "sizes"], flags: ["quick"], usage: "usage: …" };

describe("bench options", () => {
  it("reads counts with k and M suffixes", () => {
    assert.equal(parseCount("1000", "--keys"), 1000);
    assert.equal(parseCount("10k", "--keys"), 10_000);
    assert.equal(parseCount("2.5k", "--keys"), 2500);
    assert.equal(parseCount("1M", "--keys"), 1_000_000);
    assert.equal(parseCount("100_000", "--keys"), 100_000);
    assert.deepEqual(
      parseCounts("1k, 10k,100k,1M,1k", "--sizes"),
      [1000, 10_000, 100_000, 1_000_000],
    );
  });

  it("rejects what is not a whole count in range, naming the option", () => {
    for (const bad of ["", "k", "1.5", "-3", "1G", "0", "1e3"]) {
      assert.throws(() => parseCount(bad, "--keys"), /--keys/, bad);
    }
    assert.throws(() => parseCount("2M", "--keys", 1, 1_000_000), /--keys/);
    assert.throws(() => parseCounts(" , ", "--sizes"), /--sizes/);
  });

  it("formats counts back", () => {
    assert.equal(formatCount(1000), "1k");
    assert.equal(formatCount(1_000_000), "1M");
    assert.equal(formatCount(12_345), "12,345");
  });

  it("parses values, flags and help, and refuses unknown options", () => {
    const o = parseOptions(["--keys", "10k", "--sizes=1k,1M", "--quick"], spec);
    assert.equal(o.values.get("keys"), "10k");
    assert.equal(o.values.get("sizes"), "1k,1M");
    assert.ok(o.flags.has("quick"));
    assert.equal(o.help, false);
    assert.equal(parseOptions(["-h"], spec).help, true);
    assert.throws(() => parseOptions(["--nope"], spec), /unknown option --nope/);
    assert.throws(() => parseOptions(["--keys"], spec), /--keys needs a value/);
    assert.throws(() => parseOptions(["--quick=1"], spec), /unknown option --quick/);
    assert.throws(() => parseOptions(["stray"], spec), /unexpected argument/);
  });
});
