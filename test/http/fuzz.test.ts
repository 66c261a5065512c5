import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { createCache } from "../../src/cache.js";
import { ifNoneMatchHits, notModifiedSince, parseEtagList } from "../../src/http/conditional.js";
import { parseCacheControl, parseVary, splitList } from "../../src/http/headers.js";
import { negotiate } from "../../src/http/record.js";
import { expressAdapter } from "./adapters/express.js";
import { fastifyAdapter } from "./adapters/fastify.js";
import { honoAdapter } from "./adapters/hono.js";
import type { AdapterFactory } from "./harness.js";

/**
 * Malformed Cache-Control, If-None-Match, If-Modified-Since and Accept-Encoding values never
 * throw, and never turn a request into a 5xx.
 */

// Printable ASCII and tab: what an HTTP header value may carry on the wire, with the
// characters these grammars care about over-represented.
const headerChars = fc.oneof(
  {
    weight: 3,
    arbitrary: fc.constantFrom(
      '"',
      ",",
      ";",
      "=",
      "*",
      "W/",
      "q",
      "0",
      "1",
      ".",
      " ",
      "\\",
      "max-age",
      "no-cache",
      "br",
      "gzip",
      "-",
    ),
  },
  {
    weight: 1,
    arbitrary: fc.string({
      unit: fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c)),
      maxLength: 4,
    }),
  },
);
const headerValue = fc.array(headerChars, { maxLength: 30 }).map((parts) => parts.join(""));

describe("header parsers on malformed input", () => {
  it("never throw, and return well-formed results", () => {
    fc.assert(
      fc.property(headerValue, (value) => {
        const cc = parseCacheControl(value);
        for (const [name] of cc) assert.match(name, /^[!#$%&'*+.^_`|~0-9a-z-]+$/);
        for (const tag of parseEtagList(value)) assert.match(tag, /^(\*|(W\/)?"[^"]*")$/);
        ifNoneMatchHits(value, '"abc"');
        notModifiedSince(value, undefined, Date.now());
        parseVary(value);
        splitList(value);
        const coding = negotiate(value, ["br", "gzip"]);
        assert.ok(coding === undefined || coding === "br" || coding === "gzip");
      }),
      { numRuns: 5_000 },
    );
  });
});

for (const [name, adapter] of [
  ["Fastify", fastifyAdapter],
  ["Express", expressAdapter],
  ["Hono", honoAdapter],
] as [string, AdapterFactory][]) {
  describe(`malformed request headers on ${name}`, () => {
    it("never produce a 5xx", async (t) => {
      const app = await adapter({
        cache: createCache(),
        routes: [
          {
            path: "/f",
            cache: { requestDirectives: true, staleWhileRevalidate: "1m" },
            handler: () => ({
              status: 200,
              headers: { "content-type": "application/json" },
              body: JSON.stringify({ data: "x".repeat(2_000) }),
            }),
          },
        ],
      });
      t.after(() => app.close());
      await app.request({ url: "/f" });
      await fc.assert(
        fc.asyncProperty(
          headerValue,
          headerValue,
          headerValue,
          headerValue,
          async (cc, inm, ims, ae) => {
            const res = await app.request({
              url: "/f",
              headers: {
                "cache-control": cc,
                "if-none-match": inm,
                "if-modified-since": ims,
                "accept-encoding": ae,
              },
            });
            assert.ok(
              res.status < 500,
              `status ${res.status} for ${JSON.stringify({ cc, inm, ims, ae })}`,
            );
            assert.ok([200, 304, 504].includes(res.status), `status ${res.status}`);
          },
        ),
        { numRuns: 300 },
      );
    });
  });
}
