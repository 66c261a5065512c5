import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ageValue, httpDate } from "../../src/http/freshness.js";

describe("HTTP-dates and Age (RFC 9110 §5.6.7, RFC 9111 §5.1)", () => {
  const t = Date.UTC(1994, 10, 6, 8, 49, 37);
  it("reads the three formats, names in any case", () => {
    for (const text of [
      "Sun, 06 Nov 1994 08:49:37 GMT",
      "Sunday, 06-Nov-94 08:49:37 GMT",
      "Sun Nov  6 08:49:37 1994",
      "sun, 06 NOV 1994 08:49:37 gmt",
    ]) {
      assert.equal(httpDate(text, Date.UTC(2026, 0, 1)), t, text);
    }
  });
  it("refuses what is not an HTTP-date, and repeated fields", () => {
    for (const text of [
      "0",
      "Sun, 06 Nov 1994 08:49:37 UTC",
      "Sun, 06 Nov 1994 08:49:37 AEST",
      "Sun, 06 Nov 94 08:49:37 GMT",
      "Sun 06 Nov 1994 08:49:37 GMT",
      "Sun,  06 Nov 1994 08:49:37 GMT",
      "Sun, 06-Nov-1994 08:49:37 GMT",
      "Sun, 06 Nov 1994 08.49.37 GMT",
      "Sun, 06 Nov 1994 8:49:37 GMT",
    ]) {
      assert.equal(httpDate(text), undefined, text);
    }
    assert.equal(
      httpDate(["Sun, 06 Nov 1994 08:49:37 GMT", "Sun, 06 Nov 1994 08:49:37 GMT"]),
      undefined,
    );
  });
  it("reads Age as the first delta-seconds value, ignoring anything else", () => {
    assert.equal(ageValue("30"), 30);
    assert.equal(ageValue("30, 0"), 30);
    assert.equal(ageValue(["7200", "0"]), 7200);
    for (const bad of ["old", "-10", "1.5", "", undefined])
      assert.equal(ageValue(bad), 0, String(bad));
    assert.equal(ageValue("99999999999"), 2 ** 31);
  });
});
