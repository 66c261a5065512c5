import assert from "node:assert/strict";
import { unescape as unescapeQuery } from "node:querystring";
import { describe, it } from "node:test";
import fc from "fast-check";
import {
  cacheableTarget,
  canonicalQuery,
  keyHost,
  requestKey,
  routePath,
  splitUrl,
} from "../../src/http/key.js";

/**
 * Property: two requests share a key exactly when they differ only in the order of their
 * query parameters or in headers the route does not declare.
 */

const DECLARED = ["accept-language", "x-tenant"] as const;

interface Req {
  path: string;
  params: string[];
  declared: Record<string, string | undefined>;
  undeclared: Record<string, string>;
}

// Raw (already percent-encoded) characters: `&` never appears raw inside a parameter, but its
// encoded form `%26` does, as do `=`, `+` and `%20`.
const rawChar = fc.constantFrom(
  "a",
  "b",
  "z",
  "0",
  "9",
  "-",
  ".",
  "_",
  "~",
  "%26",
  "%3D",
  "%20",
  "+",
  "=",
  "%2F",
);
const rawText = fc.array(rawChar, { minLength: 1, maxLength: 6 }).map((cs) => cs.join(""));
const segment = fc
  .array(fc.constantFrom("a", "b", "1", "%2F", "-", "é"), { minLength: 1, maxLength: 4 })
  .map((cs) => cs.join(""));
const headerValue = fc
  .array(fc.constantFrom("en", "fr", "x", "1", ",", ";", "q=0.5"), { minLength: 1, maxLength: 4 })
  .map((cs) => cs.join(""));

const request: fc.Arbitrary<Req> = fc.record({
  path: fc.array(segment, { minLength: 1, maxLength: 3 }).map((segs) => `/${segs.join("/")}`),
  params: fc.array(rawText, { maxLength: 5 }),
  declared: fc.record({
    "accept-language": fc.option(headerValue, { nil: undefined }),
    "x-tenant": fc.option(headerValue, { nil: undefined }),
  }),
  undeclared: fc.record({
    host: fc.constantFrom("a.example", "evil.example"),
    "x-forwarded-host": headerValue,
  }),
});

function url(r: Req): string {
  return r.params.length === 0 ? r.path : `${r.path}?${r.params.join("&")}`;
}

function keyOf(r: Req): string {
  const { path, query } = splitUrl(url(r));
  const headers: Record<string, string | undefined> = { ...r.undeclared, ...r.declared };
  return requestKey(undefined, path, query, DECLARED, headers);
}

/** A parameter's name as the frameworks read it: `+` a space, percent-encoding decoded. */
function name(p: string): string {
  return unescapeQuery((p.includes("=") ? p.slice(0, p.indexOf("=")) : p).replace(/\+/g, " "));
}

function equivalent(a: Req, b: Req): boolean {
  // Sorted by name only, stably: equal names keep their order.
  const sorted = (r: Req) =>
    [...r.params].sort((x, y) => (name(x) < name(y) ? -1 : name(x) > name(y) ? 1 : 0)).join("&");
  return (
    a.path === b.path &&
    sorted(a) === sorted(b) &&
    DECLARED.every((h) => a.declared[h] === b.declared[h])
  );
}

describe("HTTP request keys (property-based)", () => {
  it("two random requests share a key exactly when they are equivalent", () => {
    fc.assert(
      fc.property(request, request, (a, b) => {
        assert.equal(keyOf(a) === keyOf(b), equivalent(a, b));
      }),
      { numRuns: 2_000 },
    );
  });

  it("reordering query parameters and changing undeclared headers keeps the key", () => {
    fc.assert(
      fc.property(request, fc.func(fc.integer()), headerValue, (a, order, forwarded) => {
        // Any order that keeps parameters of one name in their relative order.
        const rank = new Map<string, number>();
        for (const p of a.params) if (!rank.has(name(p))) rank.set(name(p), order(name(p)));
        const shuffled = [...a.params].sort(
          (x, y) =>
            rank.get(name(x))! - rank.get(name(y))! ||
            (name(x) < name(y) ? -1 : name(x) > name(y) ? 1 : 0),
        );
        const b: Req = {
          ...a,
          params: shuffled,
          undeclared: { host: "evil.example", "x-forwarded-host": forwarded },
        };
        assert.equal(keyOf(a), keyOf(b));
      }),
      { numRuns: 1_000 },
    );
  });

  it("changing the path, a parameter, or a declared header changes the key", () => {
    const mutation = fc.constantFrom("path", "param", "header", "drop-header");
    fc.assert(
      fc.property(request, mutation, rawText, (a, kind, extra) => {
        let b: Req;
        if (kind === "path") b = { ...a, path: `${a.path}/x` };
        else if (kind === "param") b = { ...a, params: [...a.params, `${extra}-new`] };
        else if (kind === "header")
          b = { ...a, declared: { ...a.declared, "x-tenant": `${a.declared["x-tenant"] ?? ""}!` } };
        else
          b = {
            ...a,
            declared: {
              ...a.declared,
              "accept-language": a.declared["accept-language"] === undefined ? "" : undefined,
            },
          };
        assert.notEqual(keyOf(a), keyOf(b));
      }),
      { numRuns: 1_000 },
    );
  });

  it("keeps keys bounded whatever the input size", () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 3_000 }), fc.string({ maxLength: 3_000 }), (q, h) => {
        const key = requestKey("a.example", "/p", q, ["x-tenant"], { "x-tenant": h });
        assert.ok(key.length <= 201, `key of ${key.length} characters`);
      }),
      { numRuns: 300 },
    );
  });

  it("treats encoded separators as data: ?a=1%26b=2 is not ?a=1&b=2", () => {
    assert.notEqual(canonicalQuery("a=1%26b=2"), canonicalQuery("a=1&b=2"));
    assert.equal(canonicalQuery("b=2&a=1"), canonicalQuery("a=1&b=2"));
    assert.equal(canonicalQuery("&a=1&&"), "?a=1");
    assert.notEqual(canonicalQuery("a=2&a=1"), canonicalQuery("a=1&a=2"));
    assert.equal(canonicalQuery("b=1&a=2&a=1"), "?a=2&a=1&b=1");
  });

  it("keeps the order of parameters whose names decode alike (%61 is a, + and %20 a space)", () => {
    assert.notEqual(canonicalQuery("%61=EVIL&a=1"), canonicalQuery("a=1&%61=EVIL"));
    assert.notEqual(canonicalQuery("a+b=EVIL&a%20b=1"), canonicalQuery("a%20b=1&a+b=EVIL"));
    assert.equal(canonicalQuery("b=2&%61=1&a=3"), "?%61=1&a=3&b=2");
    // Names that are not UTF-8 once decoded compare alike: their order is kept too.
    assert.notEqual(canonicalQuery("%FF=1&%FE=2"), canonicalQuery("%FE=2&%FF=1"));
  });

  it("accepts only origin-form targets made of characters a path and query may hold", () => {
    for (const ok of ["/", "/posts", "/posts?userId=2", "/a/%41?b=%20&c=d?e", "/x:y@z;p=1"]) {
      assert.equal(cacheableTarget(ok), true, ok);
    }
    for (const bad of [
      "/posts#?userId=2",
      "/q?a=1#&a=EVIL",
      "/a b",
      "http://evil.example/list",
      "*",
      "/caf\u00e9",
      "/%zz",
      '/a"b',
      "/a{b}",
      "/a\\b",
      "",
    ]) {
      assert.equal(cacheableTarget(bad), false, bad);
    }
  });

  it("keys hosts case-insensitively and refuses hosts that could forge a key", () => {
    assert.equal(keyHost("Example.COM:8080"), "example.com:8080");
    assert.equal(keyHost("[::1]:80"), "[::1]:80");
    for (const bad of [undefined, "", "evil/x", "a b", "a\nb"])
      assert.equal(keyHost(bad), undefined);
  });

  it("normalizes paths for invalidation the way lenient routers match them", () => {
    const same = [
      "/items/1",
      "/items/%31",
      "/ITEMS/1",
      "/items/1/",
      "//items//1",
      "/items/./1",
      "/x/../items/1",
    ];
    for (const p of same) assert.equal(routePath(p), "/items/1", p);
    assert.equal(routePath("/a%2Fb"), routePath("/A%2fB"));
    assert.notEqual(routePath("/a%2Fb"), routePath("/a/b"));
    assert.equal(routePath("/"), "/");
  });
});
