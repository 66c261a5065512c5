import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { createCache } from "../../src/cache.js";
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
    options: { http?: Parameters<AdapterFactory>[0]["http"] } = {},
  ): Promise<Harness & { clock: ReturnType<typeof manualClock> }> {
    const clock = manualClock();
    const cache = createCache({ clock });
    const harness = await adapter({
      cache,
      routes,
      ...(options.http ? { http: options.http } : {}),
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
        assert.match(String(first.headers.etag), /^"[A-Za-z0-9_-]{27}"$/);

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
        for (const inm of [etag, `"nope", ${etag}`, `W/${etag}`, "*"]) {
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
          await tick();
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
        assert.equal(
          statuses.filter((s) => s === "cachet; fwd=uri-miss; stored; collapsed").length,
          199,
        );
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
