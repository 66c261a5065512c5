import assert from "node:assert/strict";
import { request as httpRequest } from "node:http";
import { describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { Hono } from "hono";
import { stream } from "hono/streaming";
import { cachetHono } from "../../src/adapters/hono.js";
import { createCache } from "../../src/cache.js";
import { listenHono } from "./hono-server.js";

/**
 * Hono-only: the leading request's client goes away. Found from outside: the cache was never
 * told, so a handler that stopped streaming on the abort had its truncated body stored and
 * served, and a handler that never answered held every later request for the key. Over real
 * sockets; the server aborts the request's signal on a premature close.
 */
describe("Hono: the client of the leading request goes away", () => {
  async function serveApp(app: Hono) {
    const { port, close } = await listenHono(app);
    /** A request whose client gives up after `ms`. */
    const abandoned = async (path: string, ms: number) => {
      const req = httpRequest({ host: "127.0.0.1", port, path, agent: false });
      req.on("error", () => {});
      req.on("response", (res) => res.resume());
      req.end();
      await sleep(ms);
      req.destroy();
    };
    const get = async (path: string) => {
      const response = await fetch(`http://127.0.0.1:${port}${path}`, {
        signal: AbortSignal.timeout(5_000),
      });
      return { body: await response.text(), cacheStatus: response.headers.get("cache-status") };
    };
    return { close, abandoned, get };
  }

  it("a body cut short by the abort is not stored", async (t) => {
    const app = new Hono();
    const cached = cachetHono({ cache: createCache(), app });
    let runs = 0;
    app.get("/s", cached({ ttl: "60s" }), (c) => {
      runs++;
      const signal = c.req.raw.signal;
      return stream(c, async (s) => {
        for (let i = 0; i < 10; i++) {
          if (signal.aborted) return; // the handler stops, and ends its stream normally
          await s.write(`chunk${i};`);
          await sleep(40);
        }
      });
    });
    const { close, abandoned, get } = await serveApp(app);
    t.after(close);
    await abandoned("/s", 130);
    await sleep(450);
    const next = await get("/s");
    assert.equal(next.body, Array.from({ length: 10 }, (_, i) => `chunk${i};`).join(""));
    assert.equal(runs, 2, "the cut body was not served from the cache");
  });

  it("a leader that never answers does not hold the requests after it", async (t) => {
    const app = new Hono();
    const cached = cachetHono({ cache: createCache(), app });
    let runs = 0;
    app.get("/l", cached({ ttl: "60s" }), async (c) => {
      runs++;
      if (runs === 1) await new Promise(() => {});
      return c.text(`v${runs}`);
    });
    const { close, abandoned, get } = await serveApp(app);
    t.after(close);
    await abandoned("/l", 150);
    await sleep(100);
    const next = await get("/l");
    assert.equal(next.body, "v2");
    assert.equal(runs, 2);
  });
});
