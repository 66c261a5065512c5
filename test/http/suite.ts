import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { brotliDecompressSync, gunzipSync, gzipSync } from "node:zlib";
import { createCache } from "../../src/cache.js";
import { HttpCache } from "../../src/http/http-cache.js";
import { waitFor } from "../helpers/ports.js";
import type { AdapterFactory, Harness, TestRequest, TestResponse, TestRoute } from "./harness.js";

/** A clock the tests move by hand. */
export function manualClock(start = 1_700_000_000_000) {
  let now = start;
  return {
    now: () => now,
    advance(ms: number) {
      now += ms;
    },
  };
}

/** A handler that counts its runs. */
export function counted(
  answer: (request: TestRequest, run: number) => TestResponse | Promise<TestResponse>,
) {
  let runs = 0;
  const handler = (request: TestRequest) => answer(request, ++runs);
  return {
    handler,
    get runs() {
      return runs;
    },
  };
}

const tick = () => new Promise((r) => setTimeout(r, 5));

/**
 * The HTTP behaviour suite: every rule, run against one adapter. Each framework's test file
 * calls this with its harness, so the rules hold the same on all of them.
 */
export function httpSuite(name: string, adapter: AdapterFactory): void {
  async function setup(
    routes: TestRoute[],
    options: { http?: Parameters<AdapterFactory>[0]["http"]; trustProxy?: boolean } = {},
  ): Promise<Harness & { clock: ReturnType<typeof manualClock> }> {
    const clock = manualClock();
    const cache = createCache({ clock });
    const harness = await adapter({
      cache,
      routes,
      ...(options.http ? { http: options.http } : {}),
      ...(options.trustProxy ? { trustProxy: true } : {}),
    });
    return Object.assign(harness, { clock });
  }

  const json = (body: unknown, extra: Record<string, string> = {}): TestResponse => ({
    status: 200,
    headers: { "content-type": "application/json; charset=utf-8", ...extra },
    body: JSON.stringify(body),
  });

  describe(`HTTP cache on ${name}`, () => {
    describe("hits and misses", () => {
      it("stores a miss and serves the next request from the stored bytes, with Age, ETag and Cache-Status", async (t) => {
        const h = counted((_req, run) => json({ posts: [1, 2, 3], run }));
        const app = await setup([{ path: "/posts", cache: { ttl: "60s" }, handler: h.handler }]);
        t.after(() => app.close());

        const first = await app.request({ url: "/posts" });
        assert.equal(first.status, 200);
        assert.equal(first.headers["cache-status"], "cachet; fwd=uri-miss; stored");
        // The framework's own validator when it makes one (Express: weak), else cachet's.
        assert.match(String(first.headers.etag), /^(W\/)?"[^"]+"$/);

        app.clock.advance(5_000);
        const second = await app.request({ url: "/posts" });
        assert.equal(second.status, 200);
        assert.equal(second.body, first.body);
        assert.equal(second.headers["cache-status"], "cachet; hit; ttl=55");
        assert.equal(second.headers.age, "5");
        assert.equal(second.headers.etag, first.headers.etag);
        assert.equal(second.headers["content-type"], "application/json; charset=utf-8");
        assert.equal(second.headers["content-length"], String(Buffer.byteLength(first.body)));
        assert.equal(h.runs, 1, "the handler does not run on a hit");
      });

      it("expires entries after the route's ttl", async (t) => {
        const h = counted((_req, run) => json({ run }));
        const app = await setup([{ path: "/r", cache: { ttl: 10_000 }, handler: h.handler }]);
        t.after(() => app.close());
        await app.request({ url: "/r" });
        app.clock.advance(9_999);
        assert.equal(
          (await app.request({ url: "/r" })).headers["cache-status"],
          "cachet; hit; ttl=0",
        );
        app.clock.advance(1);
        const after = await app.request({ url: "/r" });
        assert.equal(after.headers["cache-status"], "cachet; fwd=uri-miss; stored");
        assert.equal(JSON.parse(after.body).run, 2);
      });

      it("keys on the query with its parameters sorted, respecting encoded bytes", async (t) => {
        const h = counted((req) => json({ url: req.url }));
        const app = await setup([{ path: "/q", cache: true, handler: h.handler }]);
        t.after(() => app.close());
        await app.request({ url: "/q?b=2&a=1" });
        const sorted = await app.request({ url: "/q?a=1&b=2" });
        assert.equal(sorted.headers["cache-status"], "cachet; hit; ttl=60");
        assert.equal(JSON.parse(sorted.body).url, "/q?b=2&a=1");
        const encoded = await app.request({ url: "/q?a=1%26b=2" });
        assert.equal(encoded.headers["cache-status"], "cachet; fwd=uri-miss; stored");
        const other = await app.request({ url: "/q?a=1&b=3" });
        assert.equal(other.headers["cache-status"], "cachet; fwd=uri-miss; stored");
        assert.equal(h.runs, 3);
      });

      it("gives the same strong ETag for the same body in separate instances", async (t) => {
        const route = (): TestRoute => ({
          path: "/same",
          cache: true,
          handler: () => json({ same: true }),
        });
        const a = await setup([route()]);
        const b = await setup([route()]);
        t.after(() => Promise.all([a.close(), b.close()]));
        const ea = (await a.request({ url: "/same" })).headers.etag;
        const eb = (await b.request({ url: "/same" })).headers.etag;
        assert.ok(ea);
        assert.equal(ea, eb);
      });

      it("keeps an ETag the handler set", async (t) => {
        const app = await setup([
          { path: "/e", cache: true, handler: () => json({ x: 1 }, { etag: '"v42"' }) },
        ]);
        t.after(() => app.close());
        await app.request({ url: "/e" });
        const hit = await app.request({ url: "/e" });
        assert.equal(hit.headers.etag, '"v42"');
        const conditional = await app.request({ url: "/e", headers: { "if-none-match": '"v42"' } });
        assert.equal(conditional.status, 304);
      });
    });

    describe("conditional requests and HEAD", () => {
      it("answers If-None-Match with 304 (lists, weak comparison, *) and 200 otherwise", async (t) => {
        const app = await setup([{ path: "/c", cache: true, handler: () => json({ c: 1 }) }]);
        t.after(() => app.close());
        const etag = String((await app.request({ url: "/c" })).headers.etag);
        const opaque = etag.replace(/^W\//, "");
        for (const inm of [etag, `"nope", ${etag}`, `W/${opaque}`, opaque, "*"]) {
          const res = await app.request({ url: "/c", headers: { "if-none-match": inm } });
          assert.equal(res.status, 304, `If-None-Match: ${inm}`);
          assert.equal(res.body, "");
          assert.equal(res.headers.etag, etag);
          assert.equal(res.headers["cache-status"], "cachet; hit; ttl=60");
          assert.equal(res.headers["content-type"], undefined, "304 carries no content headers");
        }
        const miss = await app.request({ url: "/c", headers: { "if-none-match": '"other"' } });
        assert.equal(miss.status, 200);
        assert.notEqual(miss.body, "");
      });

      it("answers the leader's own conditional request with 304 once the full response is stored", async (t) => {
        const h = counted(() => json({ v: 1 }, { etag: '"v1"' }));
        const app = await setup([{ path: "/lead", cache: true, handler: h.handler }]);
        t.after(() => app.close());
        const first = await app.request({ url: "/lead", headers: { "if-none-match": '"v1"' } });
        assert.equal(first.status, 304);
        assert.equal(first.body, "");
        assert.equal(first.headers.etag, '"v1"');
        const full = await app.request({ url: "/lead" });
        assert.equal(full.status, 200, "the stored response is the full one");
        assert.equal(full.body, JSON.stringify({ v: 1 }));
        assert.match(String(full.headers["content-type"]), /^application\/json/, "its head too");
        assert.equal(h.runs, 1);
      });

      it("answers HEAD from the stored GET, without a body", async (t) => {
        const h = counted(() => json({ head: "from get" }));
        const app = await setup([{ path: "/h", cache: true, handler: h.handler }]);
        t.after(() => app.close());
        const get = await app.request({ url: "/h" });
        const head = await app.request({ method: "HEAD", url: "/h" });
        assert.equal(head.status, 200);
        assert.equal(head.body, "");
        assert.equal(head.headers["content-length"], String(Buffer.byteLength(get.body)));
        assert.equal(head.headers.etag, get.headers.etag);
        assert.equal(head.headers["cache-status"], "cachet; hit; ttl=60");
        assert.equal(h.runs, 1);
      });
    });

    describe("safe by default", () => {
      it("stores the heuristically cacheable statuses by default and replays them exactly", async (t) => {
        const answers: Record<string, TestResponse> = {
          "/s/404": { status: 404, body: "not here" },
          "/s/410": { status: 410, body: "gone" },
          "/s/301": { status: 301, headers: { location: "/elsewhere" }, body: "" },
          "/s/204": { status: 204 },
        };
        const h = counted((req) => answers[req.url]!);
        const app = await setup(
          Object.keys(answers).map((path) => ({ path, cache: true, handler: h.handler })),
        );
        t.after(() => app.close());
        for (const url of Object.keys(answers)) await app.request({ url });
        for (const [url, answer] of Object.entries(answers)) {
          const hit = await app.request({ url });
          assert.equal(hit.status, answer.status, url);
          assert.equal(hit.body, String(answer.body ?? ""), url);
          assert.equal(hit.headers["cache-status"], "cachet; hit; ttl=60", url);
        }
        assert.equal((await app.request({ url: "/s/301" })).headers.location, "/elsewhere");
        assert.equal(h.runs, 4);
        // Preconditions apply to 2xx responses only (RFC 9110 §13.2.1): a stored 404 or 301 is
        // answered as itself, never as a 304 (found from outside: `If-None-Match: *` got 304).
        for (const [url, answer] of Object.entries(answers)) {
          if (answer.status === 204) continue;
          for (const conditional of [
            { "if-none-match": "*" } as Record<string, string>,
            { "if-modified-since": new Date(Date.now() + 86_400_000).toUTCString() },
          ]) {
            const res = await app.request({ url, headers: conditional });
            assert.equal(res.status, answer.status, `${url} ${JSON.stringify(conditional)}`);
          }
        }
        assert.equal(
          (await app.request({ url: "/s/301", headers: { "if-none-match": "*" } })).headers
            .location,
          "/elsewhere",
        );
      });

      it("never stores other statuses, and honours a route's own allow-list", async (t) => {
        const failing = counted(() => ({ status: 500, body: "boom" }));
        const found = counted(() => ({ status: 302, headers: { location: "/x" }, body: "" }));
        const strict = counted(() => ({ status: 404, body: "nope" }));
        const app = await setup([
          { path: "/500", cache: true, handler: failing.handler },
          { path: "/302", cache: true, handler: found.handler },
          { path: "/strict", cache: { statuses: [200] }, handler: strict.handler },
        ]);
        t.after(() => app.close());
        for (const url of ["/500", "/302", "/strict"]) {
          await app.request({ url });
          const again = await app.request({ url });
          assert.match(
            String(again.headers["cache-status"]),
            /^cachet; fwd=uri-miss; detail=status-\d+$/,
            url,
          );
        }
        assert.equal(failing.runs + found.runs + strict.runs, 6);
      });

      for (const [what, headers, reason] of [
        ["Set-Cookie", { "set-cookie": "sid=abc" }, "set-cookie"],
        ["Cache-Control: private", { "cache-control": "private, max-age=60" }, "private"],
        ["Cache-Control: no-store", { "cache-control": "no-store" }, "no-store"],
        ["Vary: *", { vary: "*" }, "vary-star"],
        ["Cache-Control: no-cache", { "cache-control": "no-cache" }, "no-cache"],
        // The targeted fields that govern a shared cache (RFC 9213): found from outside, a
        // route with its own ttl stored (and served to the next user) what they marked private.
        ["CDN-Cache-Control: private", { "cdn-cache-control": "private" }, "private"],
        ["Cachet-Cache-Control: private", { "cachet-cache-control": "private" }, "private"],
        [
          "CDN-Cache-Control: no-cache (Cache-Control public)",
          { "cache-control": "public, max-age=60", "cdn-cache-control": "no-cache" },
          "no-cache",
        ],
      ] as const) {
        it(`never stores a response with ${what}`, async (t) => {
          const h = counted(() => ({ status: 200, headers: { ...headers }, body: "personal" }));
          const app = await setup([{ path: "/p", cache: true, handler: h.handler }]);
          t.after(() => app.close());
          const first = await app.request({ url: "/p" });
          assert.equal(first.headers["cache-status"], `cachet; fwd=uri-miss; detail=${reason}`);
          await app.request({ url: "/p" });
          assert.equal(h.runs, 2);
        });
      }

      it("neither serves nor stores for a request with Authorization unless the route keys on the user", async (t) => {
        const h = counted((req) => json({ user: req.headers.authorization ?? "anonymous" }));
        const app = await setup([{ path: "/me", cache: true, handler: h.handler }]);
        t.after(() => app.close());
        await app.request({ url: "/me" }); // stores the anonymous response
        const authed = await app.request({
          url: "/me",
          headers: { authorization: "Bearer alice" },
        });
        assert.equal(JSON.parse(authed.body).user, "Bearer alice", "not served the shared entry");
        assert.equal(authed.headers["cache-status"], "cachet; fwd=bypass; detail=personal-request");
        const anonymous = await app.request({ url: "/me" });
        assert.equal(
          JSON.parse(anonymous.body).user,
          "anonymous",
          "alice's response was not stored",
        );
        assert.equal(h.runs, 2);
      });

      it("caches per user when the route varies on authorization, and shares when it is public", async (t) => {
        const perUser = counted((req) => json({ user: req.headers.authorization }));
        const shared = counted(() => json({ same: "for all" }));
        const app = await setup([
          { path: "/mine", cache: { vary: ["authorization"] }, handler: perUser.handler },
          { path: "/catalog", cache: { public: true }, handler: shared.handler },
        ]);
        t.after(() => app.close());
        for (const user of ["Bearer alice", "Bearer bob", "Bearer alice", "Bearer bob"]) {
          const res = await app.request({ url: "/mine", headers: { authorization: user } });
          assert.equal(JSON.parse(res.body).user, user);
        }
        assert.equal(perUser.runs, 2);
        await app.request({ url: "/catalog", headers: { authorization: "Bearer alice" } });
        const bob = await app.request({
          url: "/catalog",
          headers: { authorization: "Bearer bob" },
        });
        assert.equal(bob.headers["cache-status"], "cachet; hit; ttl=60");
        assert.equal(shared.runs, 1);
      });

      it("treats a configured session cookie like Authorization", async (t) => {
        const h = counted((req) => json({ cookie: req.headers.cookie ?? null }));
        const app = await setup([{ path: "/s", cache: true, handler: h.handler }], {
          http: { sessionCookies: ["sid"] },
        });
        t.after(() => app.close());
        const withSession = await app.request({
          url: "/s",
          headers: { cookie: "theme=dark; sid=123" },
        });
        assert.equal(
          withSession.headers["cache-status"],
          "cachet; fwd=bypass; detail=personal-request",
        );
        const other = await app.request({ url: "/s", headers: { cookie: "theme=dark" } });
        assert.equal(other.headers["cache-status"], "cachet; fwd=uri-miss; stored");
        assert.equal(h.runs, 2);
      });

      it("does not cache other methods", async (t) => {
        const h = counted(() => json({ ok: true }));
        const app = await setup([{ method: "POST", path: "/w", cache: true, handler: h.handler }]);
        t.after(() => app.close());
        const res = await app.request({
          method: "POST",
          url: "/w",
          body: "{}",
          headers: { "content-type": "application/json" },
        });
        assert.equal(res.headers["cache-status"], "cachet; fwd=method");
        await app.request({
          method: "POST",
          url: "/w",
          body: "{}",
          headers: { "content-type": "application/json" },
        });
        assert.equal(h.runs, 2);
      });

      it("passes a response larger than maxEntrySize through unstored", async (t) => {
        const h = counted(() => ({ status: 200, body: "x".repeat(2_000) }));
        const app = await setup([{ path: "/big", cache: true, handler: h.handler }], {
          http: { maxEntrySize: 1_000 },
        });
        t.after(() => app.close());
        const res = await app.request({ url: "/big" });
        assert.equal(res.body.length, 2_000);
        assert.equal(res.headers["cache-status"], "cachet; fwd=uri-miss; detail=too-large");
        await app.request({ url: "/big" });
        assert.equal(h.runs, 2);
      });

      it("keys on declared vary headers", async (t) => {
        const h = counted((req) => ({
          status: 200,
          headers: { vary: "accept-language" },
          body: `hello in ${req.headers["accept-language"]}`,
        }));
        const app = await setup([
          { path: "/hello", cache: { vary: ["accept-language"] }, handler: h.handler },
        ]);
        t.after(() => app.close());
        for (const lang of ["en", "fr", "en", "fr"]) {
          const res = await app.request({ url: "/hello", headers: { "accept-language": lang } });
          assert.equal(res.body, `hello in ${lang}`);
        }
        assert.equal(h.runs, 2);
      });

      it("ignores Host and X-Forwarded-* unless declared", async (t) => {
        const h = counted((req) => json({ host: req.headers["x-forwarded-host"] ?? null }));
        const app = await setup([{ path: "/fh", cache: true, handler: h.handler }]);
        t.after(() => app.close());
        await app.request({ url: "/fh" });
        const poisoned = await app.request({
          url: "/fh",
          headers: { "x-forwarded-host": "evil.example" },
        });
        assert.equal(
          JSON.parse(poisoned.body).host,
          null,
          "the forwarded host did not reach a stored response",
        );
        assert.equal(h.runs, 1);
      });
    });

    describe("request coalescing", () => {
      it("runs the handler once for 200 concurrent cold requests", async (t) => {
        const h = counted(async () => {
          // Long enough for many of the 200 connections to arrive while it runs.
          await new Promise((r) => setTimeout(r, 100));
          return json({ expensive: true });
        });
        const app = await setup([{ path: "/cold", cache: true, handler: h.handler }]);
        t.after(() => app.close());
        const replies = await Promise.all(
          Array.from({ length: 200 }, () => app.request({ url: "/cold" })),
        );
        assert.equal(h.runs, 1);
        assert.ok(replies.every((r) => r.status === 200 && r.body === replies[0]!.body));
        const statuses = replies.map((r) => r.headers["cache-status"]);
        assert.equal(statuses.filter((s) => s === "cachet; fwd=uri-miss; stored").length, 1);
        // Over real sockets, requests that arrive after the response was stored are hits.
        const collapsed = statuses.filter((s) => s === "cachet; fwd=uri-miss; stored; collapsed");
        const hits = statuses.filter((s) => s === "cachet; hit; ttl=60");
        assert.equal(collapsed.length + hits.length, 199);
        assert.ok(collapsed.length > 0, "some requests waited on the leader");
      });

      it("never hands a response that may not be stored to the waiting requests", async (t) => {
        const h = counted(async (_req, run) => {
          await tick();
          return { status: 200, headers: { "set-cookie": `sid=${run}` }, body: `private ${run}` };
        });
        const app = await setup([{ path: "/private", cache: true, handler: h.handler }]);
        t.after(() => app.close());
        const replies = await Promise.all(
          Array.from({ length: 20 }, () => app.request({ url: "/private" })),
        );
        assert.equal(h.runs, 20, "every request ran its own handler");
        const cookies = replies.map((r) => String(r.headers["set-cookie"]));
        assert.equal(new Set(cookies).size, 20, "no two clients got the same session");
        for (const r of replies)
          assert.equal(r.body, `private ${String(r.headers["set-cookie"]).slice(4)}`);
      });

      it("releases waiting requests when the leader's handler fails", async (t) => {
        const h = counted(async (_req, run) => {
          await tick();
          return run === 1 ? { throws: true } : json({ run });
        });
        const app = await setup([{ path: "/flaky", cache: true, handler: h.handler }]);
        t.after(() => app.close());
        const replies = await Promise.all(
          Array.from({ length: 10 }, () => app.request({ url: "/flaky" })),
        );
        assert.equal(replies[0]!.status, 500);
        assert.ok(
          replies.slice(1).every((r) => r.status === 200),
          "waiters ran their own handler",
        );
        const stored = await app.request({ url: "/flaky" });
        assert.equal(stored.status, 200);
        assert.equal(stored.headers["cache-status"], "cachet; hit; ttl=60");
      });
    });

    describe("leaks and poisoning (each found by trying the adapter as an attacker would)", () => {
      const perUser = (req: TestRequest): TestResponse => {
        const cookie = String(req.headers.cookie ?? "");
        return {
          status: 200,
          headers: { vary: "Cookie", "content-type": "text/plain" },
          body: cookie ? `page of ${cookie}` : "anonymous page",
        };
      };

      it("a background refresh stores a Vary: Cookie response for its own user only", async (t) => {
        const h = counted(perUser);
        const app = await setup(
          [{ path: "/me", cache: { ttl: "10s", staleWhileRevalidate: "1m" }, handler: h.handler }],
          { http: { compress: false } },
        );
        t.after(() => app.close());
        const as = (cookie?: string) =>
          app.request({ url: "/me", headers: cookie ? { cookie } : {} });
        assert.equal((await as("u=a")).body, "page of u=a");
        app.clock.advance(11_000);
        // After the ttl: A's stale page at once, and a background refresh with A's headers;
        // user B gets a page of their own.
        assert.equal((await as("u=a")).body, "page of u=a");
        assert.equal((await as("u=b")).body, "page of u=b");
        await waitFor(() => h.runs >= 3, "the background refresh");
        await new Promise((r) => setTimeout(r, 20));
        for (const [cookie, body] of [
          ["u=c", "page of u=c"],
          [undefined, "anonymous page"],
          ["u=a", "page of u=a"],
          ["u=b", "page of u=b"],
        ] as const) {
          const res = await as(cookie);
          assert.equal(res.body, body, `${cookie ?? "anonymous"} got ${res.body}`);
        }
      });

      it("a Vary that grows under a secondary key never serves one user's page to others", async (t) => {
        const h = counted((req) => {
          const lang = String(req.headers["accept-language"] ?? "en");
          const cookie = req.headers.cookie;
          return cookie
            ? {
                status: 200,
                headers: { vary: "Accept-Language, Cookie", "content-type": "text/plain" },
                body: `${lang}: private page of ${cookie}`,
              }
            : {
                status: 200,
                headers: { vary: "Accept-Language", "content-type": "text/plain" },
                body: `${lang}: public page`,
              };
        });
        const app = await setup([{ path: "/home", cache: true, handler: h.handler }], {
          http: { compress: false },
        });
        t.after(() => app.close());
        const get = (lang: string, cookie?: string) =>
          app.request({
            url: "/home",
            headers: { "accept-language": lang, ...(cookie ? { cookie } : {}) },
          });
        assert.equal((await get("en")).body, "en: public page");
        assert.equal((await get("fr", "u=a")).body, "fr: private page of u=a");
        assert.equal((await get("fr")).body, "fr: public page");
        // The last stored fr response says it varies on the language only, so RFC 9111 §4.1 lets
        // it answer B too; what must never happen is B getting A's page.
        const b = (await get("fr", "u=b")).body;
        assert.ok(["fr: public page", "fr: private page of u=b"].includes(b), b);
        const a = (await get("fr", "u=a")).body;
        assert.ok(["fr: public page", "fr: private page of u=a"].includes(a), a);
        assert.equal((await get("en")).body, "en: public page");
        const again = await get("fr");
        assert.equal(again.body, "fr: public page");
      });

      it("a configured session cookie is personal on a route that keys on Authorization", async (t) => {
        const h = counted((req) => ({
          status: 200,
          headers: { "content-type": "text/plain" },
          body: `page for ${req.headers.cookie ?? "nobody"}`,
        }));
        const app = await setup(
          [{ path: "/acct", cache: { vary: ["authorization"] }, handler: h.handler }],
          { http: { sessionCookies: ["sid"] } },
        );
        t.after(() => app.close());
        const a = await app.request({ url: "/acct", headers: { cookie: "sid=a1" } });
        assert.equal(a.body, "page for sid=a1");
        assert.equal(a.headers["cache-status"], "cachet; fwd=bypass; detail=personal-request");
        const b = await app.request({ url: "/acct", headers: { cookie: "sid=b2" } });
        assert.equal(b.body, "page for sid=b2");
        const anonymous = await app.request({ url: "/acct" });
        assert.equal(anonymous.body, "page for nobody");
        assert.equal(h.runs, 3);
      });

      it("a target with a fragment is never stored under the URL without it", async (t) => {
        const h = counted((req) => ({
          status: 200,
          headers: { "content-type": "text/plain" },
          body: `handler saw ${req.url}`,
        }));
        const app = await setup([
          { path: "/posts", cache: true, handler: h.handler },
          { path: "/q", cache: true, handler: h.handler },
        ]);
        t.after(() => app.close());
        const poison = await app.rawTarget("/posts#?userId=2");
        assert.doesNotMatch(String(poison.headers["cache-status"] ?? ""), /stored|hit/);
        const plain = await app.request({ url: "/posts" });
        assert.equal(plain.body, "handler saw /posts");
        await app.rawTarget("/q?a=1#&a=EVIL");
        const honest = await app.request({ url: "/q?a=1" });
        assert.equal(honest.body, "handler saw /q?a=1");
        assert.doesNotMatch(String(honest.headers["cache-status"]), /hit/);
        for (const raw of ["/posts?x=a b", '/posts?x="q"', "/posts?x={y}"]) {
          const res = await app.rawTarget(raw);
          assert.doesNotMatch(String(res.headers["cache-status"] ?? ""), /stored|hit/, raw);
        }
      });

      it("a host from X-Forwarded-Host (trusted proxy) or an absolute-form target keys its own entry", async (t) => {
        const h = counted((req) => ({
          status: 200,
          headers: { "content-type": "text/html" },
          body: `<a href="https://${req.host}/next">next</a>`,
        }));
        const app = await setup(
          [
            { path: "/list", cache: true, handler: h.handler },
            { path: "/other", cache: true, handler: h.handler },
          ],
          { trustProxy: true },
        );
        t.after(() => app.close());
        const planted = await app.request({
          url: "/list",
          headers: { "x-forwarded-host": "evil.example" },
        });
        // Fastify and Express trust the proxy here; Hono has no such setting and sees Host.
        if (name !== "Hono") assert.match(planted.body, /evil\.example/, "the handler saw it");
        const victim = await app.request({ url: "/list" });
        assert.doesNotMatch(victim.body, /evil/, victim.body);
        // Absolute-form first: the host is the target's for frameworks that read it (Hono).
        await app.rawTarget("http://evil.example/other");
        const other = await app.request({ url: "/other" });
        assert.doesNotMatch(other.body, /evil/, other.body);
      });

      it("a handler that throws a value that is not an Error answers 500 and holds no key", async (t) => {
        const h = counted((_req, run) =>
          run === 1 ? { throws: "value" } : { status: 200, body: `run ${run}` },
        );
        const app = await setup([{ path: "/flaky", cache: true, handler: h.handler }]);
        t.after(() => app.close());
        const failed = await app.request({ url: "/flaky" });
        assert.equal(failed.status, 500);
        const next = await app.request({ url: "/flaky" });
        assert.equal(next.body, "run 2", "the key was released");
        assert.match(String((await app.request({ url: "/flaky" })).headers["cache-status"]), /hit/);
      });

      it("repeated query parameters keep their order in the key", async (t) => {
        const h = counted((req) => ({
          status: 200,
          headers: { "content-type": "text/plain" },
          body: `a is ${new URL(req.url, "http://x").searchParams.get("a")}`,
        }));
        const app = await setup([{ path: "/q", cache: true, handler: h.handler }]);
        t.after(() => app.close());
        assert.equal((await app.request({ url: "/q?a=EVIL&a=1" })).body, "a is EVIL");
        const honest = await app.request({ url: "/q?a=1&a=EVIL" });
        assert.equal(honest.body, "a is 1");
        assert.equal(honest.headers["cache-status"], "cachet; fwd=uri-miss; stored");
        const sorted = await app.request({ url: "/q?b=2&a=1&a=EVIL" });
        assert.equal(sorted.body, "a is 1");
        // However a name is spelled (found from outside: the names were sorted still encoded,
        // so an attacker's `?%61=EVIL&a=1` was served to `?a=1&%61=EVIL`).
        assert.equal((await app.request({ url: "/q?%61=EVIL2&a=1" })).body, "a is EVIL2");
        const victim = await app.request({ url: "/q?a=1&%61=EVIL2" });
        assert.equal(victim.body, "a is 1");
        assert.equal(victim.headers["cache-status"], "cachet; fwd=uri-miss; stored");
      });

      it("path invalidation reaches every URL the framework routes to the same resource", async (t) => {
        let version = 1;
        const h = counted(() => ({
          status: 200,
          headers: { "content-type": "text/plain" },
          body: `item v${version}`,
        }));
        const app = await setup([
          { path: "/items/:id", cache: true, handler: h.handler },
          {
            method: "PUT",
            path: "/items/:id",
            handler: () => {
              version++;
              return { status: 204 };
            },
          },
        ]);
        t.after(() => app.close());
        // Each framework routes some of these to the handler (Express all of them).
        const urls = ["/items/1", "/items/%31", "/ITEMS/1", "/items/1/"];
        const routed: string[] = [];
        for (const url of urls) {
          const res = await app.request({ url });
          if (res.status === 200 && res.body === "item v1") routed.push(url);
        }
        assert.ok(routed.includes("/items/1") && routed.includes("/items/%31"), `${routed}`);
        for (const url of routed) {
          assert.equal((await app.request({ url })).headers["cache-status"], "cachet; hit; ttl=60");
        }
        const put = await app.request({
          method: "PUT",
          url: "/items/1",
          headers: { "content-type": "text/plain" },
          body: "x",
        });
        assert.equal(put.status, 204);
        for (const url of routed) {
          const res = await app.request({ url });
          assert.equal(res.body, "item v2", `${url} after PUT /items/1`);
        }
      });

      it("any method not known to be safe invalidates, not only POST, PUT, PATCH and DELETE", () => {
        for (const method of ["POST", "PUT", "PATCH", "DELETE", "PROPFIND", "M-SEARCH", "PURGE"]) {
          assert.equal(HttpCache.isUnsafe(method), true, method);
        }
        for (const method of ["GET", "HEAD", "OPTIONS", "TRACE"]) {
          assert.equal(HttpCache.isUnsafe(method), false, method);
        }
      });
    });

    describe("keying", () => {
      it("honours a response's own Vary through a marker: each variant is stored apart (vary-miss)", async (t) => {
        const h = counted((req) => ({
          status: 200,
          headers: { vary: "X-Tenant", "content-type": "text/plain" },
          body: `data of ${req.headers["x-tenant"]}`,
        }));
        const app = await setup([{ path: "/t", cache: true, handler: h.handler }], {
          http: { compress: false },
        });
        t.after(() => app.close());
        const get = (tenant: string) => app.request({ url: "/t", headers: { "x-tenant": tenant } });
        assert.equal((await get("a")).headers["cache-status"], "cachet; fwd=uri-miss; stored");
        const b = await get("b");
        assert.equal(b.body, "data of b");
        assert.equal(b.headers["cache-status"], "cachet; fwd=vary-miss; stored");
        for (const tenant of ["a", "b", "a"]) {
          const res = await get(tenant);
          assert.equal(res.body, `data of ${tenant}`);
          assert.equal(res.headers["cache-status"], "cachet; hit; ttl=60");
        }
        assert.equal(h.runs, 2);
      });

      it("hashes long keys so that a key never grows with the input", async (t) => {
        const app = await setup([{ path: "/long", cache: true, handler: () => json({ ok: 1 }) }], {
          http: { exposeKey: true },
        });
        t.after(() => app.close());
        const res = await app.request({ url: `/long?q=${"x".repeat(5_000)}` });
        const key = /key="([^"]*)"/.exec(String(res.headers["cache-status"]))?.[1];
        assert.ok(key?.startsWith("#"), `hashed key, got ${key}`);
        assert.ok(key !== undefined && key.length < 60);
        const short = await app.request({ url: "/long?b=2&a=1" });
        assert.match(String(short.headers["cache-status"]), /key="[^"/]+\/long\?a=1&b=2"/);
      });

      it("uses a route's key function", async (t) => {
        const h = counted(() => json({ shared: true }));
        const app = await setup([
          {
            path: "/k",
            cache: { key: (req) => `k:${req.headers["x-shard"] ?? "none"}` },
            handler: h.handler,
          },
        ]);
        t.after(() => app.close());
        await app.request({ url: "/k?a=1", headers: { "x-shard": "1" } });
        const same = await app.request({ url: "/k?b=2", headers: { "x-shard": "1" } });
        assert.equal(same.headers["cache-status"], "cachet; hit; ttl=60");
        await app.request({ url: "/k?a=1", headers: { "x-shard": "2" } });
        assert.equal(h.runs, 2);
      });
    });

    describe("streamed responses", () => {
      it("buffers a streamed body within the size limit and stores it", async (t) => {
        const h = counted(() => ({ status: 200, body: "streamed body", stream: true }));
        const app = await setup([{ path: "/st", cache: true, handler: h.handler }]);
        t.after(() => app.close());
        const first = await app.request({ url: "/st" });
        assert.equal(first.body, "streamed body");
        const hit = await app.request({ url: "/st" });
        assert.equal(hit.body, "streamed body");
        // Served from the stored record: a hit, or — when the leader's flight is still
        // writing the entry as this request arrives — collapsed onto it.
        assert.match(
          String(hit.headers["cache-status"]),
          /^cachet; (hit; ttl=60|fwd=uri-miss; stored; collapsed)$/,
        );
        assert.equal(h.runs, 1);
        await waitFor(
          async () =>
            (await app.request({ url: "/st" })).headers["cache-status"] === "cachet; hit; ttl=60",
          "a plain hit",
        );
        assert.equal(h.runs, 1);
      });

      it("passes a streamed body beyond the size limit through, whole and unstored", async (t) => {
        const big = "y".repeat(50_000);
        const h = counted(() => ({ status: 200, body: big, stream: true }));
        const app = await setup([{ path: "/bigst", cache: true, handler: h.handler }], {
          http: { maxEntrySize: 10_000 },
        });
        t.after(() => app.close());
        const first = await app.request({ url: "/bigst" });
        assert.equal(first.body, big);
        const second = await app.request({ url: "/bigst" });
        assert.equal(second.body, big);
        assert.equal(h.runs, 2);
      });
    });

    describe("freshness from the response", () => {
      it("takes freshness from s-maxage, max-age, Expires − Date (and a heuristic only when asked) when the route asks for it", async (t) => {
        const app = await setup([
          {
            path: "/smax",
            cache: { fromResponse: true },
            handler: () => json({ a: 1 }, { "cache-control": "public, max-age=100, s-maxage=10" }),
          },
          {
            path: "/max",
            cache: { fromResponse: true },
            handler: () => json({ b: 1 }, { "cache-control": "max-age=30" }),
          },
          {
            path: "/zero",
            cache: { fromResponse: true },
            handler: () => json({ c: 1 }, { "cache-control": "max-age=0" }),
          },
          {
            // Explicit freshness only: the route's ttl is not a fallback for the origin's silence.
            path: "/none",
            cache: { fromResponse: true, ttl: "5s" },
            handler: () => json({ d: 1 }),
          },
          {
            // Heuristic freshness when asked: 10% of the 100 s since Last-Modified.
            path: "/heuristic",
            cache: { fromResponse: true, heuristic: true },
            handler: () =>
              json(
                { e: 1 },
                {
                  date: new Date(app.clock.now()).toUTCString(),
                  "last-modified": new Date(app.clock.now() - 100_000).toUTCString(),
                },
              ),
          },
          {
            path: "/expires",
            cache: { fromResponse: true },
            handler: () =>
              json(
                { f: 1 },
                {
                  date: new Date(app.clock.now()).toUTCString(),
                  expires: new Date(app.clock.now() + 20_000).toUTCString(),
                },
              ),
          },
          {
            path: "/expired",
            cache: { fromResponse: true },
            handler: () => json({ g: 1 }, { expires: "0" }),
          },
        ]);
        t.after(() => app.close());
        for (const url of [
          "/smax",
          "/max",
          "/zero",
          "/none",
          "/heuristic",
          "/expires",
          "/expired",
        ]) {
          await app.request({ url });
        }
        assert.equal(
          (await app.request({ url: "/smax" })).headers["cache-status"],
          "cachet; hit; ttl=10",
        );
        assert.equal(
          (await app.request({ url: "/max" })).headers["cache-status"],
          "cachet; hit; ttl=30",
        );
        for (const url of ["/zero", "/none", "/expired"]) {
          // Never a hit: not stored, or (with a validator, as Express adds) only revalidated.
          assert.doesNotMatch(
            String((await app.request({ url })).headers["cache-status"]),
            /hit/,
            url,
          );
        }
        assert.equal(
          (await app.request({ url: "/heuristic" })).headers["cache-status"],
          "cachet; hit; ttl=10",
        );
        assert.equal(
          (await app.request({ url: "/expires" })).headers["cache-status"],
          "cachet; hit; ttl=20",
        );
        app.clock.advance(11_000);
        // Stale after s-maxage: fetched again (or revalidated, with Express's ETag), and stored.
        assert.match(
          String((await app.request({ url: "/smax" })).headers["cache-status"]),
          /^cachet; fwd=(uri-miss|stale); .*stored$/,
        );
      });

      it("honours stale-while-revalidate from the response: stale at once, one refresh, then fresh", async (t) => {
        const h = counted((_req, run) =>
          json({ run }, { "cache-control": "max-age=10, stale-while-revalidate=30" }),
        );
        const app = await setup([
          { path: "/swr", cache: { fromResponse: true }, handler: h.handler },
        ]);
        t.after(() => app.close());
        await app.request({ url: "/swr" });
        app.clock.advance(12_000);
        const stale = await app.request({ url: "/swr" });
        assert.equal(JSON.parse(stale.body).run, 1);
        assert.equal(
          stale.headers["cache-status"],
          "cachet; hit; ttl=-2; detail=stale-while-revalidate",
        );
        await waitFor(() => h.runs === 2, "the background refresh");
        await waitFor(
          async () => JSON.parse((await app.request({ url: "/swr" })).body).run === 2,
          "the refreshed entry",
        );
        assert.equal(h.runs, 2);
      });
    });

    describe("the origin decides (RFC 9111 shared cache)", () => {
      it("revalidates a stale response with its validators; a 304 freshens it, headers and all", async (t) => {
        const seen: (string | undefined)[] = [];
        const h = counted((req) => {
          const inm = req.headers["if-none-match"];
          seen.push(typeof inm === "string" ? inm : undefined);
          if (inm === '"v1"') {
            return {
              status: 304,
              headers: { etag: '"v1"', "cache-control": "max-age=10", "x-rev": "2" },
            };
          }
          return json({ v: 1 }, { etag: '"v1"', "cache-control": "max-age=10", "x-rev": "1" });
        });
        const app = await setup([
          { path: "/v", cache: { fromResponse: true }, handler: h.handler },
        ]);
        t.after(() => app.close());
        const first = await app.request({ url: "/v" });
        assert.equal(first.headers["x-rev"], "1");
        app.clock.advance(11_000);
        const revalidated = await app.request({ url: "/v" });
        assert.equal(revalidated.status, 200);
        assert.equal(revalidated.body, first.body, "the stored body, not an empty 304");
        assert.equal(revalidated.headers["x-rev"], "2", "headers updated from the 304");
        assert.deepEqual(seen, [undefined, '"v1"'], "the refresh carried the stored validator");
        const hit = await app.request({ url: "/v" });
        assert.match(String(hit.headers["cache-status"]), /^cachet; hit; ttl=(9|10)$/);
        assert.equal(hit.headers["x-rev"], "2");
        assert.equal(hit.body, first.body);
        assert.equal(h.runs, 2);
      });

      it("a 304 for another representation is followed by an unconditional request (RFC 9111 §4.3.4)", async (t) => {
        const seen: (string | undefined)[] = [];
        const h = counted((req, run) => {
          const inm = req.headers["if-none-match"];
          seen.push(typeof inm === "string" ? inm : undefined);
          // An origin that answers any conditional with a 304 of its current tag.
          if (inm !== undefined) return { status: 304, headers: { etag: '"v2"' } };
          return json({ run }, { etag: `"v${run === 1 ? 1 : 2}"`, "cache-control": "max-age=10" });
        });
        const app = await setup([
          { path: "/m304", cache: { fromResponse: true }, handler: h.handler },
        ]);
        t.after(() => app.close());
        await app.request({ url: "/m304" });
        app.clock.advance(11_000);
        const refreshed = await app.request({ url: "/m304" });
        assert.equal(refreshed.status, 200, "not a 304 the client never asked for");
        assert.equal(refreshed.body, JSON.stringify({ run: 3 }), "the full new response");
        assert.deepEqual(seen, [undefined, '"v1"', undefined]);
      });

      it("honours the origin's Age and Date, and replays the stored Date on hits", async (t) => {
        const date = new Date(1_700_000_000_000 - 30_000).toUTCString();
        const app = await setup([
          {
            path: "/aged",
            cache: { fromResponse: true },
            handler: () => json({ a: 1 }, { "cache-control": "max-age=100", age: "30", date }),
          },
          {
            path: "/too-old",
            cache: { fromResponse: true },
            handler: () => json({ b: 1 }, { "cache-control": "max-age=100", age: "200" }),
          },
        ]);
        t.after(() => app.close());
        await app.request({ url: "/aged" });
        app.clock.advance(5_000);
        const hit = await app.request({ url: "/aged" });
        assert.equal(hit.headers.age, "35");
        assert.equal(hit.headers["cache-status"], "cachet; hit; ttl=65");
        assert.equal(hit.headers.date, date, "the origin's Date, not a new one");
        await app.request({ url: "/too-old" });
        const again = await app.request({ url: "/too-old" });
        assert.doesNotMatch(String(again.headers["cache-status"]), /hit/);
      });

      it("never serves stale what must-revalidate, no-cache or s-maxage forbid, even when the origin fails", async (t) => {
        let failing = false;
        const answer = (cc: string) => () =>
          failing ? { status: 503, body: "down" } : json({ ok: true }, { "cache-control": cc });
        const app = await setup([
          {
            path: "/mr",
            cache: { fromResponse: true, staleIfError: "1h" },
            handler: answer("max-age=10, must-revalidate"),
          },
          {
            path: "/sm",
            cache: { fromResponse: true, staleIfError: "1h" },
            handler: answer("s-maxage=10"),
          },
          {
            path: "/ok",
            cache: { fromResponse: true, staleIfError: "1h" },
            handler: answer("max-age=10"),
          },
        ]);
        t.after(() => app.close());
        for (const url of ["/mr", "/sm", "/ok"]) await app.request({ url });
        failing = true;
        app.clock.advance(11_000);
        assert.equal((await app.request({ url: "/mr" })).status, 503);
        assert.equal((await app.request({ url: "/sm" })).status, 503);
        const stale = await app.request({ url: "/ok" });
        assert.equal(stale.status, 200, "stale-if-error where nothing forbids it");
        assert.match(String(stale.headers["cache-status"]), /detail=stale-if-error/);
      });

      it("clamps freshness an origin promises for centuries instead of failing (max-age=2^31+, a far Expires)", async (t) => {
        const app = await setup([
          {
            path: "/forever",
            cache: { fromResponse: true },
            handler: () => json({ a: 1 }, { "cache-control": "max-age=99999999999" }),
          },
          {
            path: "/far",
            cache: { fromResponse: true, staleIfError: "1h" },
            handler: () =>
              json(
                { b: 1 },
                {
                  date: new Date(app.clock.now()).toUTCString(),
                  expires: "Fri, 01 Jan 2300 00:00:00 GMT",
                },
              ),
          },
        ]);
        t.after(() => app.close());
        for (const url of ["/forever", "/far"]) {
          assert.equal((await app.request({ url })).status, 200, url);
          const hit = await app.request({ url });
          assert.match(String(hit.headers["cache-status"]), /^cachet; hit; ttl=\d+$/, url);
        }
      });

      it("obeys CDN-Cache-Control and Cachet-Cache-Control over Cache-Control (RFC 9213)", async (t) => {
        const h = counted((req) => {
          if (req.url === "/cdn-fresh")
            return json(
              { a: 1 },
              { "cache-control": "no-store", "cdn-cache-control": "max-age=60" },
            );
          if (req.url === "/cdn-no-store")
            return json(
              { b: 1 },
              { "cache-control": "max-age=60", "cdn-cache-control": "no-store" },
            );
          if (req.url === "/ours")
            return json(
              { c: 1 },
              {
                "cache-control": "max-age=5",
                "cdn-cache-control": "max-age=10",
                "cachet-cache-control": "max-age=30",
              },
            );
          // Not a valid structured field: ignored, Cache-Control governs.
          return json(
            { d: 1 },
            { "cache-control": "no-store", "cdn-cache-control": "max-age=60, &&&" },
          );
        });
        const app = await setup(
          ["/cdn-fresh", "/cdn-no-store", "/ours", "/invalid"].map((path) => ({
            path,
            cache: { fromResponse: true },
            handler: h.handler,
          })),
        );
        t.after(() => app.close());
        for (const url of ["/cdn-fresh", "/cdn-no-store", "/ours", "/invalid"]) {
          await app.request({ url });
        }
        assert.equal(
          (await app.request({ url: "/cdn-fresh" })).headers["cache-status"],
          "cachet; hit; ttl=60",
        );
        assert.doesNotMatch(
          String((await app.request({ url: "/cdn-no-store" })).headers["cache-status"]),
          /hit/,
        );
        const ours = await app.request({ url: "/ours" });
        assert.equal(ours.headers["cache-status"], "cachet; hit; ttl=30");
        assert.equal(
          ours.headers["cachet-cache-control"],
          undefined,
          "cachet's own field is not passed on",
        );
        assert.equal(ours.headers["cdn-cache-control"], "max-age=10", "a CDN's field is");
        assert.doesNotMatch(
          String((await app.request({ url: "/invalid" })).headers["cache-status"]),
          /hit/,
        );
      });

      it("stores every header but hop-by-hop ones, and drops those private= names", async (t) => {
        const app = await setup([
          {
            path: "/h",
            cache: { fromResponse: true },
            handler: () =>
              json(
                { h: 1 },
                {
                  "cache-control": 'max-age=60, private="x-user"',
                  "content-security-policy": "default-src 'self'",
                  "x-frame-options": "DENY",
                  "x-custom": "kept",
                  "x-user": "alice",
                  "x-hop": "dropped",
                  connection: "x-hop",
                },
              ),
          },
        ]);
        t.after(() => app.close());
        await app.request({ url: "/h" });
        const hit = await app.request({ url: "/h" });
        assert.equal(hit.headers["cache-status"], "cachet; hit; ttl=60");
        assert.equal(hit.headers["content-security-policy"], "default-src 'self'");
        assert.equal(hit.headers["x-frame-options"], "DENY");
        assert.equal(hit.headers["x-custom"], "kept");
        assert.equal(hit.headers["x-user"], undefined);
        assert.equal(hit.headers["x-hop"], undefined);
      });
    });

    describe("stale serving", () => {
      it("serves stale while one background refresh runs (route staleWhileRevalidate)", async (t) => {
        const h = counted(async (_req, run) => {
          // The refresh outlasts the 20 concurrent stale reads.
          if (run > 1) await new Promise((r) => setTimeout(r, 300));
          return json({ run });
        });
        const app = await setup([
          { path: "/sw", cache: { ttl: "10s", staleWhileRevalidate: "1m" }, handler: h.handler },
        ]);
        t.after(() => app.close());
        await app.request({ url: "/sw" });
        app.clock.advance(15_000);
        const replies = await Promise.all(
          Array.from({ length: 20 }, () => app.request({ url: "/sw" })),
        );
        for (const r of replies) {
          assert.equal(JSON.parse(r.body).run, 1);
          assert.equal(
            r.headers["cache-status"],
            "cachet; hit; ttl=-5; detail=stale-while-revalidate",
          );
        }
        await waitFor(() => h.runs === 2, "one background refresh");
        await waitFor(
          async () => JSON.parse((await app.request({ url: "/sw" })).body).run === 2,
          "the new entry",
        );
        assert.equal(h.runs, 2, "exactly one refresh for 20 stale reads");
      });

      it("never shows the handler its refresh marker (a proxying handler would pass the secret on)", async (t) => {
        const markers: unknown[] = [];
        const h = counted((req, run) => {
          markers.push(req.headers["x-cachet-dispatch"]);
          return json({ run });
        });
        const app = await setup([
          { path: "/m", cache: { ttl: "10s", staleWhileRevalidate: "1m" }, handler: h.handler },
        ]);
        t.after(() => app.close());
        await app.request({ url: "/m" });
        app.clock.advance(11_000);
        await app.request({ url: "/m" });
        await waitFor(() => h.runs === 2, "the background refresh");
        assert.deepEqual(markers, [undefined, undefined]);
      });

      it("serves the stale response with 200 when the handler fails within staleIfError, and the error after", async (t) => {
        let failing = false;
        const h = counted((_req, run) =>
          failing ? { status: 502, body: "upstream down" } : json({ run }),
        );
        const app = await setup([
          { path: "/grace", cache: { ttl: "10s", staleIfError: "1m" }, handler: h.handler },
        ]);
        t.after(() => app.close());
        const original = await app.request({ url: "/grace" });
        failing = true;
        app.clock.advance(11_000);
        const stale = await app.request({ url: "/grace" });
        assert.equal(stale.status, 200);
        assert.equal(stale.body, original.body);
        assert.equal(
          stale.headers["cache-status"],
          "cachet; fwd=stale; fwd-status=502; ttl=-1; detail=stale-if-error",
        );
        const runsAfterFailure = h.runs;
        const again = await app.request({ url: "/grace" });
        assert.equal(again.status, 200);
        assert.equal(again.headers["cache-status"], "cachet; hit; ttl=-1; detail=stale-backoff");
        assert.equal(
          h.runs,
          runsAfterFailure,
          "the failing handler is not called on every request",
        );
        app.clock.advance(60_000);
        const after = await app.request({ url: "/grace" });
        assert.equal(after.status, 502);
        assert.equal(after.body, "upstream down");
      });
      it("an origin answering with a response that may not be stored is answered, not replaced by the stale copy", async (t) => {
        // Found from outside: within staleIfError, a healthy origin's new response with a
        // Set-Cookie (or private, no-store) was treated as a failure; clients kept getting the
        // old body, without the cookie, for the whole window (RFC 5861 §4 is about errors).
        let personal = false;
        const h = counted((_req, run) =>
          personal
            ? { status: 200, headers: { "set-cookie": `sid=s${run}` }, body: `new ${run}` }
            : { status: 200, body: "old" },
        );
        const app = await setup([
          { path: "/sie", cache: { ttl: "10s", staleIfError: "1h" }, handler: h.handler },
        ]);
        t.after(() => app.close());
        assert.equal((await app.request({ url: "/sie" })).body, "old");
        personal = true;
        app.clock.advance(11_000);
        for (const run of [2, 3]) {
          const res = await app.request({ url: "/sie" });
          assert.equal(res.body, `new ${run}`);
          assert.equal(res.headers["set-cookie"]?.toString(), `sid=s${run}`);
          assert.match(String(res.headers["cache-status"]), /detail=set-cookie/);
        }
        assert.equal(h.runs, 3, "no backoff: the origin did not fail");
      });
    });

    describe("serving", () => {
      it("answers If-Modified-Since with 304 when not modified since, and only without If-None-Match", async (t) => {
        const lastModified = "Tue, 10 Nov 2026 10:00:00 GMT";
        const app = await setup([
          {
            path: "/lm",
            cache: true,
            handler: () => json({ lm: 1 }, { "last-modified": lastModified }),
          },
        ]);
        t.after(() => app.close());
        await app.request({ url: "/lm" });
        const same = await app.request({
          url: "/lm",
          headers: { "if-modified-since": lastModified },
        });
        assert.equal(same.status, 304);
        assert.equal(same.headers["last-modified"], lastModified);
        const later = await app.request({
          url: "/lm",
          headers: { "if-modified-since": "Wed, 11 Nov 2026 10:00:00 GMT" },
        });
        assert.equal(later.status, 304);
        const earlier = await app.request({
          url: "/lm",
          headers: { "if-modified-since": "Mon, 09 Nov 2026 10:00:00 GMT" },
        });
        assert.equal(earlier.status, 200);
        const both = await app.request({
          url: "/lm",
          headers: { "if-modified-since": lastModified, "if-none-match": '"other"' },
        });
        assert.equal(both.status, 200, "If-None-Match takes precedence (RFC 9110 §13.1.3)");
        const junk = await app.request({
          url: "/lm",
          headers: { "if-modified-since": "not a date" },
        });
        assert.equal(junk.status, 200);
      });

      it("sends Cache-Control downstream with the remaining freshness when asked", async (t) => {
        const app = await setup(
          [
            {
              path: "/dc",
              cache: { ttl: "60s" },
              handler: () => json({ dc: 1 }, { "cache-control": "no-transform" }),
            },
          ],
          { http: { downstreamCacheControl: true } },
        );
        t.after(() => app.close());
        assert.equal(
          (await app.request({ url: "/dc" })).headers["cache-control"],
          "public, max-age=60",
        );
        app.clock.advance(20_000);
        assert.equal(
          (await app.request({ url: "/dc" })).headers["cache-control"],
          "public, max-age=40",
        );
      });

      it("sends the route's tags as Surrogate-Key or Cache-Tag when asked", async (t) => {
        const route = (): TestRoute => ({
          path: "/sk/:id",
          cache: { tags: (req) => ["posts", `post:${req.url.split("/").pop()}`] },
          handler: () => json({ sk: 1 }),
        });
        const fastly = await setup([route()], { http: { surrogateKeys: "surrogate-key" } });
        const cloudflare = await setup([route()], { http: { surrogateKeys: "cache-tag" } });
        t.after(() => Promise.all([fastly.close(), cloudflare.close()]));
        assert.equal(
          (await fastly.request({ url: "/sk/7" })).headers["surrogate-key"],
          "posts post:7",
        );
        assert.equal(
          (await fastly.request({ url: "/sk/7" })).headers["surrogate-key"],
          "posts post:7",
        );
        assert.equal(
          (await cloudflare.request({ url: "/sk/8" })).headers["cache-tag"],
          "posts,post:8",
        );
      });
    });

    describe("client directives", () => {
      it("ignores a client's no-cache unless the route opts in", async (t) => {
        const h = counted((_req, run) => json({ run }));
        const app = await setup([
          { path: "/closed", cache: true, handler: h.handler },
          { path: "/open", cache: { requestDirectives: true }, handler: h.handler },
        ]);
        t.after(() => app.close());
        await app.request({ url: "/closed" });
        const ignored = await app.request({
          url: "/closed",
          headers: { "cache-control": "no-cache" },
        });
        assert.equal(ignored.headers["cache-status"], "cachet; hit; ttl=60");
        await app.request({ url: "/open" });
        const refetched = await app.request({
          url: "/open",
          headers: { "cache-control": "no-cache" },
        });
        assert.equal(refetched.headers["cache-status"], "cachet; fwd=request; stored");
        assert.equal(JSON.parse(refetched.body).run, 3);
        const next = await app.request({ url: "/open" });
        assert.equal(JSON.parse(next.body).run, 3, "the refetched response was stored");
      });

      it("stores nothing for no-store and answers only-if-cached with 504 on a miss", async (t) => {
        const h = counted((_req, run) => json({ run }));
        const app = await setup([
          { path: "/d", cache: { requestDirectives: true }, handler: h.handler },
        ]);
        t.after(() => app.close());
        const onlyMiss = await app.request({
          url: "/d",
          headers: { "cache-control": "only-if-cached" },
        });
        assert.equal(onlyMiss.status, 504);
        assert.equal(h.runs, 0);
        const noStore = await app.request({ url: "/d", headers: { "cache-control": "no-store" } });
        assert.equal(noStore.headers["cache-status"], "cachet; fwd=request; detail=no-store");
        const stored = await app.request({ url: "/d" });
        assert.equal(stored.headers["cache-status"], "cachet; fwd=uri-miss; stored");
        const onlyHit = await app.request({
          url: "/d",
          headers: { "cache-control": "only-if-cached" },
        });
        assert.equal(onlyHit.status, 200);
        assert.equal(onlyHit.headers["cache-status"], "cachet; hit; ttl=60");
      });
    });

    describe("compression", () => {
      it("stores br and gzip once and serves each client what it accepts, identity otherwise", async (t) => {
        const payload = {
          items: Array.from({ length: 200 }, (_, i) => ({ id: i, title: `item number ${i}` })),
        };
        const h = counted(() => json(payload));
        const app = await setup([{ path: "/z", cache: true, handler: h.handler }]);
        t.after(() => app.close());
        const identity = await app.request({ url: "/z" });
        await waitFor(
          async () =>
            (await app.request({ url: "/z", headers: { "accept-encoding": "br" } })).headers[
              "content-encoding"
            ] === "br",
          "the compressed entry",
        );
        const raw = async (encoding: string) => {
          const res = await app.requestRaw({ url: "/z", headers: { "accept-encoding": encoding } });
          return res;
        };
        const br = await raw("gzip, deflate, br");
        assert.equal(br.headers["content-encoding"], "br");
        assert.deepEqual(JSON.parse(brotliDecompressSync(br.rawBody).toString()), payload);
        assert.equal(br.headers["content-length"], String(br.rawBody.length));
        const gz = await raw("gzip");
        assert.equal(gz.headers["content-encoding"], "gzip");
        assert.deepEqual(JSON.parse(gunzipSync(gz.rawBody).toString()), payload);
        const plain = await raw("identity");
        assert.equal(plain.headers["content-encoding"], undefined);
        assert.equal(plain.rawBody.toString(), identity.body);
        const refused = await raw("br;q=0, gzip;q=0");
        assert.equal(refused.headers["content-encoding"], undefined);
        for (const res of [br, gz, plain])
          assert.match(String(res.headers.vary), /accept-encoding/i);
        assert.equal(
          new Set([br, gz, plain].map((r) => r.headers.etag)).size,
          3,
          "one strong ETag per coding",
        );
        const conditional = await app.request({
          url: "/z",
          headers: { "accept-encoding": "br", "if-none-match": String(br.headers.etag) },
        });
        assert.equal(conditional.status, 304);
        assert.equal(h.runs, 1);
      });

      it("leaves small and already-encoded bodies alone", async (t) => {
        const app = await setup([
          { path: "/small", cache: true, handler: () => json({ s: 1 }) },
          {
            path: "/pre",
            cache: true,
            handler: () => ({
              status: 200,
              headers: {
                "content-type": "application/json",
                "content-encoding": "gzip",
                vary: "Accept-Encoding",
              },
              body: gzipSync(JSON.stringify({ big: "z".repeat(5_000) })),
            }),
          },
        ]);
        t.after(() => app.close());
        await app.request({ url: "/small" });
        const small = await app.requestRaw({ url: "/small", headers: { "accept-encoding": "br" } });
        assert.equal(small.headers["content-encoding"], undefined);
        await app.request({ url: "/pre", headers: { "accept-encoding": "gzip" } });
        const pre = await app.requestRaw({ url: "/pre", headers: { "accept-encoding": "gzip" } });
        assert.equal(pre.headers["content-encoding"], "gzip");
        assert.equal(JSON.parse(gunzipSync(pre.rawBody).toString()).big.length, 5_000);
      });
    });

    describe("invalidation", () => {
      it("expires the cached GET of a path after a successful unsafe request, and of its Location", async (t) => {
        const list = counted((_req, run) => json({ list: run }));
        const item = counted((_req, run) => json({ item: run }));
        const app = await setup([
          { path: "/items", cache: true, handler: list.handler },
          { path: "/items/7", cache: true, handler: item.handler },
          { path: "/items/8", cache: true, handler: item.handler },
          {
            method: "POST",
            path: "/items",
            handler: (req) => ({
              status: req.headers["x-fail"] ? 500 : 201,
              headers: { location: req.headers["x-location"] as string },
              body: "",
            }),
          },
        ]);
        t.after(() => app.close());
        await app.request({ url: "/items" });
        await app.request({ url: "/items?page=2" });
        await app.request({ url: "/items/7" });
        await app.request({ url: "/items/8" });
        const post = (headers: Record<string, string>) =>
          app.request({
            method: "POST",
            url: "/items",
            body: "{}",
            headers: { "content-type": "application/json", ...headers },
          });

        await post({ "x-fail": "1", "x-location": "/items/7" });
        assert.equal(
          (await app.request({ url: "/items" })).headers["cache-status"],
          "cachet; hit; ttl=60",
          "a failed POST invalidates nothing",
        );

        await post({ "x-location": "/items/7" });
        assert.equal(
          (await app.request({ url: "/items" })).headers["cache-status"],
          "cachet; fwd=uri-miss; stored",
        );
        assert.equal(
          (await app.request({ url: "/items?page=2" })).headers["cache-status"],
          "cachet; fwd=uri-miss; stored",
        );
        assert.equal(
          (await app.request({ url: "/items/7" })).headers["cache-status"],
          "cachet; fwd=uri-miss; stored",
        );
        assert.equal(
          (await app.request({ url: "/items/8" })).headers["cache-status"],
          "cachet; hit; ttl=60",
        );

        await post({ "x-location": "http://other.example/items/8" });
        assert.equal(
          (await app.request({ url: "/items/8" })).headers["cache-status"],
          "cachet; hit; ttl=60",
          "another origin's Location is ignored",
        );
      });

      it("invalidates by path and by tag through the API, never through a request header", async (t) => {
        const h = counted((_req, run) => json({ run }));
        const app = await setup([
          { path: "/a", cache: { tags: ["group"] }, handler: h.handler },
          { path: "/b", cache: true, handler: h.handler },
        ]);
        t.after(() => app.close());
        await app.request({ url: "/a" });
        await app.request({ url: "/b" });
        for (const header of [
          "x-cachet-invalidate",
          "cache-control",
          "pragma",
          "x-cachet-dispatch",
        ]) {
          await app.request({ url: "/a", headers: { [header]: "no-cache" } });
        }
        assert.equal(
          (await app.request({ url: "/a" })).headers["cache-status"],
          "cachet; hit; ttl=60",
        );
        await app.http.invalidateTags(["group"]);
        assert.equal(
          (await app.request({ url: "/a" })).headers["cache-status"],
          "cachet; fwd=uri-miss; stored",
        );
        await app.http.invalidatePaths(["/b?ignored=query"]);
        assert.equal(
          (await app.request({ url: "/b" })).headers["cache-status"],
          "cachet; fwd=uri-miss; stored",
        );
      });
    });

    describe("configuration", () => {
      it("fails at registration when a route's options are invalid, naming the option", async () => {
        await assert.rejects(
          setup([{ path: "/bad", cache: { ttl: "soon" }, handler: () => json({}) }]),
          (error: Error & { code?: string; option?: string }) => {
            assert.equal(error.code, "E_INVALID_OPTION");
            assert.match(String(error.option), /cache\.ttl$/);
            assert.match(error.message, /"soon"/);
            return true;
          },
        );
      });

      it("omits Cache-Status when turned off", async (t) => {
        const app = await setup([{ path: "/quiet", cache: true, handler: () => json({}) }], {
          http: { cacheStatus: false },
        });
        t.after(() => app.close());
        await app.request({ url: "/quiet" });
        const hit = await app.request({ url: "/quiet" });
        assert.equal(hit.headers["cache-status"], undefined);
        assert.equal(hit.headers.age, "0");
      });

      it("leaves routes without cache config alone", async (t) => {
        const h = counted(() => json({ plain: true }));
        const app = await setup([{ path: "/plain", handler: h.handler }]);
        t.after(() => app.close());
        const res = await app.request({ url: "/plain" });
        await app.request({ url: "/plain" });
        assert.equal(res.headers["cache-status"], undefined);
        assert.equal(h.runs, 2);
      });
    });
  });
}
