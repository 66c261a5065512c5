import assert from "node:assert/strict";
import { once } from "node:events";
import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import { describe, it } from "node:test";
import express from "express";
import onHeaders from "on-headers";
import { cachetExpress } from "../../src/adapters/express.js";
import { createCache } from "../../src/cache.js";
import { waitFor } from "../helpers/ports.js";
import { manualClock } from "./suite.js";

/**
 * Express-only ways of setting headers that the shared suite cannot express: headers passed
 * to `writeHead`, and headers added while the head is written, the way express-session and
 * cookie-session add `Set-Cookie` (through on-headers). Over a real socket, as in production.
 */

async function listen(app: express.Express): Promise<{ url: string; server: Server }> {
  const server = app.listen(0, "127.0.0.1");
  await once(server, "listening");
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}`, server };
}

function stop(server: Server): void {
  server.closeAllConnections();
  server.close();
}

async function get(url: string, headers: Record<string, string> = {}) {
  const res = await fetch(url, { headers });
  return { status: res.status, headers: res.headers, body: await res.text() };
}

describe("Express: headers set while the head is written", () => {
  it("never stores a response whose Cache-Control and Set-Cookie come through writeHead", async (t) => {
    const cached = cachetExpress({ cache: createCache() });
    const app = express();
    let visitor = 0;
    app.get("/form", cached({ ttl: "60s" }), (_req, res) => {
      const token = `csrf-${++visitor}`;
      res.writeHead(200, {
        "content-type": "text/html",
        "cache-control": "private",
        "set-cookie": `token=${token}`,
      });
      res.end(`<input value="${token}">`);
    });
    const { url, server } = await listen(app);
    t.after(() => stop(server));
    const first = await get(`${url}/form`);
    assert.equal(first.body, '<input value="csrf-1">');
    assert.match(String(first.headers.get("cache-status")), /detail=(set-cookie|private)/);
    const second = await get(`${url}/form`);
    assert.equal(second.body, '<input value="csrf-2">', "the first visitor's token is not shared");
    assert.equal(second.headers.get("set-cookie"), "token=csrf-2");
  });

  it("never stores a response to which on-headers middleware adds Set-Cookie (express-session, cookie-session)", async (t) => {
    const cached = cachetExpress({ cache: createCache() });
    const app = express();
    let sessions = 0;
    // What express-session does: set the cookie when the head is written, after the handler.
    app.use((_req, res, next) => {
      onHeaders(res, function setSessionCookie(this: express.Response) {
        this.setHeader("set-cookie", `sid=s${++sessions}; HttpOnly`);
      });
      next();
    });
    app.get("/page", cached({ ttl: "60s" }), (_req, res) => {
      res.type("text/plain").send("same page for everyone, but a session each");
    });
    const { url, server } = await listen(app);
    t.after(() => stop(server));
    const first = await get(`${url}/page`);
    assert.equal(first.headers.get("set-cookie"), "sid=s1; HttpOnly");
    assert.match(String(first.headers.get("cache-status")), /detail=set-cookie/);
    const second = await get(`${url}/page`);
    assert.equal(second.headers.get("set-cookie"), "sid=s2; HttpOnly", "no session is replayed");
    assert.doesNotMatch(String(second.headers.get("cache-status")), /hit/);
    assert.equal(sessions, 2);
  });

  it("stores a response whose head is written explicitly, with the headers given to writeHead", async (t) => {
    const cached = cachetExpress({ cache: createCache() });
    const app = express();
    let runs = 0;
    app.get("/doc", cached({ ttl: "60s" }), (_req, res) => {
      runs++;
      res.writeHead(200, "Fine", { "content-type": "text/plain", "x-doc": "yes" });
      res.write("part one, ");
      res.end("part two");
    });
    const { url, server } = await listen(app);
    t.after(() => stop(server));
    const first = await get(`${url}/doc`);
    assert.equal(first.body, "part one, part two");
    const hit = await get(`${url}/doc`);
    assert.equal(hit.body, "part one, part two");
    assert.equal(hit.headers.get("x-doc"), "yes");
    assert.equal(hit.headers.get("content-type"), "text/plain");
    assert.match(String(hit.headers.get("cache-status")), /^cachet; hit/);
    assert.equal(runs, 1);
  });

  it("refreshes in the background over a real connection and keeps serving (no process-wide patching)", async (t) => {
    const clock = manualClock();
    const cached = cachetExpress({ cache: createCache({ clock }) });
    const app = express();
    let runs = 0;
    app.get("/swr", cached({ ttl: "10s", staleWhileRevalidate: "1m" }), (_req, res) => {
      res.json({ run: ++runs });
    });
    app.get("/sie", cached({ ttl: "10s", staleIfError: "1m", timeout: "1s" }), (_req, res) => {
      res.json({ run: runs });
    });
    app.get("/health", (_req, res) => {
      res.send("ok");
    });
    const { url, server } = await listen(app);
    t.after(() => stop(server));
    assert.equal(JSON.parse((await get(`${url}/swr`)).body).run, 1);
    await get(`${url}/sie`);
    clock.advance(11_000);
    const stale = await get(`${url}/swr`);
    assert.equal(JSON.parse(stale.body).run, 1);
    assert.match(String(stale.headers.get("cache-status")), /stale-while-revalidate/);
    await waitFor(() => runs === 2, "the background refresh");
    await waitFor(
      async () => JSON.parse((await get(`${url}/swr`)).body).run === 2,
      "the refreshed entry",
    );
    const refreshed = await get(`${url}/sie`);
    assert.equal(refreshed.status, 200);
    assert.equal((await get(`${url}/health`)).body, "ok");
  });
});
