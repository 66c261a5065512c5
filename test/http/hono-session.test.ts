import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Hono } from "hono";
import { setCookie } from "hono/cookie";
import { cachetHono } from "../../src/adapters/hono.js";
import { createCache } from "../../src/cache.js";
import { listenHono } from "./hono-server.js";

/**
 * Hono-only: a session layer mounted around the cached route issues its cookie after
 * `await next()`, once the cached middleware has returned (the way Hono session middleware
 * works). Found from outside: the response was stored with the first visitor's page (their
 * CSRF token) and served to the next one. Over a real socket.
 */
describe("Hono: a Set-Cookie added by middleware after the cached route returned", () => {
  async function serveApp(after: (c: import("hono").Context) => Promise<void> | void) {
    const app = new Hono();
    const cached = cachetHono({ cache: createCache(), app });
    let visitors = 0;
    let runs = 0;
    app.use("*", async (c, next) => {
      const sid = `s${++visitors}`;
      c.set("sid" as never, sid as never);
      await next();
      await after(c);
      setCookie(c, "sid", sid, { httpOnly: true });
    });
    app.get("/form", cached({ ttl: "60s" }), (c) => {
      runs++;
      return c.html(`<input name=csrf value="csrf-of-${c.get("sid" as never)}">`);
    });
    const { port, close } = await listenHono(app);
    const get = async (path: string) => {
      const response = await fetch(`http://127.0.0.1:${port}${path}`, {
        signal: AbortSignal.timeout(3_000),
      });
      return {
        body: await response.text(),
        cookie: response.headers.get("set-cookie"),
        cacheStatus: response.headers.get("cache-status"),
      };
    };
    return { get, close, runs: () => runs };
  }

  it("is seen: the page is not stored, and the next visitor gets their own", async (t) => {
    const { get, close, runs } = await serveApp(() => {});
    t.after(close);
    const first = await get("/form");
    assert.match(first.body, /csrf-of-s1/);
    assert.match(String(first.cookie), /^sid=s1/);
    const second = await get("/form");
    assert.match(second.body, /csrf-of-s2/, "not the first visitor's page");
    assert.equal(runs(), 2);
  });

  it("is seen when the middleware awaits before setting it (a microtask later)", async (t) => {
    const { get, close, runs } = await serveApp(async () => {
      await Promise.resolve();
      await null;
    });
    t.after(close);
    await get("/form");
    assert.match((await get("/form")).body, /csrf-of-s2/);
    assert.equal(runs(), 2);
  });
});
