import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Hono } from "hono";
import { cachetHono } from "../../src/adapters/hono.js";
import { createCache } from "../../src/cache.js";
import { listenHono } from "./hono-server.js";

/** Hono-only: what a handler can throw (Hono hands non-Error values up the chain). */
describe("Hono: a handler that throws a value that is not an Error", () => {
  it("answers with an error and releases the key, so later requests run the handler again", async (t) => {
    const app = new Hono();
    const cached = cachetHono({ cache: createCache(), app });
    let runs = 0;
    app.get("/flaky", cached({ ttl: "60s" }), (c) => {
      runs++;
      if (runs === 1) throw "not an Error";
      return c.text(`ok after ${runs}`);
    });
    const { port, close } = await listenHono(app);
    t.after(close);
    const url = `http://127.0.0.1:${port}/flaky`;
    const first = await fetch(url, { signal: AbortSignal.timeout(3_000) });
    assert.equal(first.status, 500);
    await first.arrayBuffer();
    const second = await fetch(url, { signal: AbortSignal.timeout(3_000) });
    assert.equal(second.status, 200, "the key is not held by the failed request");
    assert.equal(await second.text(), "ok after 2");
    const hit = await fetch(url, { signal: AbortSignal.timeout(3_000) });
    assert.match(String(hit.headers.get("cache-status")), /^cachet; hit/);
    assert.equal(runs, 2);
  });
});
