import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { compareProfiles } from "../../bench/profile.js";

/** A profile of `root → parserOnHeadersComplete → writev` and `root → (garbage collector)`. */
function profile(writevUs: number, gcUs: number, idleUs: number) {
  const frame = (functionName: string, url = "") => ({
    functionName,
    url,
    lineNumber: 0,
    columnNumber: 0,
  });
  return {
    nodes: [
      { id: 1, callFrame: frame("(root)"), children: [2, 4, 5] },
      { id: 2, callFrame: frame("parserOnHeadersComplete", "node:_http_common"), children: [3] },
      { id: 3, callFrame: frame("writev") },
      { id: 4, callFrame: frame("(garbage collector)") },
      { id: 5, callFrame: frame("(idle)") },
    ],
    samples: [3, 4, 5],
    timeDeltas: [writevUs, gcUs, idleUs],
    startTime: 0,
    endTime: writevUs + gcUs + idleUs,
  };
}

describe("bench/profile.ts: two profiles compared per request", () => {
  it("divides each phase by the requests served, idle time left out", (t) => {
    const dir = mkdtempSync(join(tmpdir(), "cachet-profile-"));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const a = join(dir, "a.cpuprofile");
    const b = join(dir, "b.cpuprofile");
    writeFileSync(a, JSON.stringify(profile(3000, 1000, 5000)));
    writeFileSync(b, JSON.stringify(profile(2000, 0, 9000)));
    const md = compareProfiles(
      { name: "cachet-x", file: a, requests: 100 },
      { name: "limit-x", file: b, requests: 200 },
    );
    // a: 4,000 µs busy over 100 requests; b: 2,000 µs over 200.
    assert.match(
      md,
      /\| \*\*busy CPU per request\*\* \| \*\*40\.0\*\* \| \*\*10\.0\*\* \| \*\*30\.0\*\* \|/,
    );
    assert.match(md, /\| kernel write of the response \(`writev`\) \| 30\.0 \| 10\.0 \| 20\.0 \|/);
    assert.match(md, /\| HTTP request parsed, routed, handled[^|]*\| 30\.0 \| 10\.0 \| 20\.0 \|/);
    assert.match(md, /\| garbage collector \(main thread\) \| 10\.0 \| 0\.0 \| 10\.0 \|/);
    assert.match(md, /^# cachet-x against limit-x/);
  });
});
