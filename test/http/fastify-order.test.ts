/**
 * A route registered before the Fastify plugin never reaches its `onRoute` hook: it used to be
 * silently uncached (issue 14). It is now found at its first request, served by the same HTTP
 * core, and a warning names it. Over a real socket.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import Fastify, { type FastifyInstance } from "fastify";
import { cachetFastify } from "../../src/adapters/fastify.js";
import { createCache } from "../../src/index.js";

describe("a route registered before the Fastify plugin", { timeout: 30_000 }, () => {
  let app: FastifyInstance;
  let base: string;
  let calls = 0;
  const warnings: string[] = [];

  before(async () => {
    app = Fastify({
      logger: {
        level: "warn",
        stream: {
          write(line: string) {
            warnings.push(String(JSON.parse(line).msg));
          },
        },
      },
    });
    app.get("/early", { config: { cache: { ttl: "60s", tags: ["posts"] } } }, async () => ({
      n: ++calls,
    }));
    app.post("/early", async () => ({ ok: true }));
    app.get("/plain", async () => ({ n: ++calls }));
    await app.register(cachetFastify, { cache: createCache() });
    app.get("/late", { config: { cache: { ttl: "60s" } } }, async () => ({ n: ++calls }));
    await app.listen({ port: 0, host: "127.0.0.1" });
    const address = app.server.address();
    assert.ok(address && typeof address === "object");
    base = `http://127.0.0.1:${address.port}`;
  });
  after(async () => {
    await app?.close();
  });

  it("is cached like the others, and a warning names it once", async () => {
    const first = await fetch(`${base}/early`);
    assert.match(first.headers.get("cache-status") ?? "", /fwd=uri-miss; stored/);
    const firstBody = await first.json();
    const second = await fetch(`${base}/early`);
    assert.match(second.headers.get("cache-status") ?? "", /^cachet; hit/);
    assert.deepEqual(await second.json(), firstBody);
    const head = await fetch(`${base}/early`, { method: "HEAD" });
    assert.match(head.headers.get("cache-status") ?? "", /^cachet; hit/);
    const named = warnings.filter((w) => w.includes("GET /early"));
    assert.equal(named.length, 1, warnings.join("\n"));
    assert.match(named[0]!, /registered before the cachet plugin/);
  });

  it("its unsafe sibling registered early still invalidates the path", async () => {
    await fetch(`${base}/early`);
    const post = await fetch(`${base}/early`, { method: "POST" });
    assert.equal(post.status, 200);
    const after = await fetch(`${base}/early`);
    assert.doesNotMatch(after.headers.get("cache-status") ?? "", /; hit/);
  });

  it("leaves other early routes alone, and routes after the plugin as they were", async () => {
    const plain = await fetch(`${base}/plain`);
    assert.equal(plain.headers.get("cache-status"), null);
    await plain.json();
    await fetch(`${base}/late`);
    const late = await fetch(`${base}/late`);
    assert.match(late.headers.get("cache-status") ?? "", /^cachet; hit/);
    assert.equal(
      warnings.filter((w) => w.includes("/late") || w.includes("/plain")).length,
      0,
      warnings.join("\n"),
    );
  });
});

describe("the Fastify plugin registered before every route", () => {
  it("adds no global hook: a route without cache config runs none of cachet's hooks", async () => {
    const app = Fastify();
    await app.register(cachetFastify, { cache: createCache() });
    app.get("/plain", async () => "plain");
    app.get("/cached", { config: { cache: { ttl: "60s" } } }, async () => "cached");
    await app.ready();
    const hooks = app.printRoutes({ includeHooks: true, commonPrefix: false });
    const plain = hooks.slice(hooks.indexOf("/plain (GET)"), hooks.indexOf("/cached"));
    const cached = hooks.slice(hooks.indexOf("/cached (GET)"));
    assert.doesNotMatch(plain, /cachet/, `the plain route's hooks:\n${plain}`);
    assert.match(cached, /cachetOnRequest/);
    assert.match(cached, /cachetOnSend/);
    assert.doesNotMatch(hooks, /cachetEarly/);
    const first = await app.inject({ url: "/cached" });
    assert.equal(first.headers["cache-status"], "cachet; fwd=uri-miss; stored");
    const hit = await app.inject({ url: "/cached" });
    assert.match(String(hit.headers["cache-status"]), /^cachet; hit; ttl=(59|60)$/);
    assert.equal(hit.body, "cached");
    await app.close();
  });
});

describe("a route registered before the plugin, and a session hook added after it", {
  timeout: 30_000,
}, () => {
  it("a Set-Cookie the later onSend hook adds is seen: the page is not shared", async (t) => {
    // Found from outside: the early route's onSend is a global hook, and hooks added after the
    // plugin (a session's cookie) ran after it; the first visitor's page was stored.
    const app = Fastify();
    let visitors = 0;
    app.get("/form", { config: { cache: { ttl: "60s" } } }, async (request, reply) => {
      reply.type("text/html");
      return `csrf-of-${(request as unknown as { sid: string }).sid}`;
    });
    await app.register(cachetFastify, { cache: createCache(), logger: false });
    app.addHook("onRequest", async (request) => {
      (request as unknown as { sid: string }).sid = `s${++visitors}`;
    });
    app.addHook("onSend", async (request, reply, payload) => {
      reply.header("set-cookie", `sid=${(request as unknown as { sid: string }).sid}`);
      return payload;
    });
    await app.listen({ port: 0, host: "127.0.0.1" });
    t.after(() => app.close());
    const address = app.server.address();
    assert.ok(address && typeof address === "object");
    const url = `http://127.0.0.1:${address.port}/form`;
    const first = await fetch(url);
    assert.equal(await first.text(), "csrf-of-s1");
    const second = await fetch(url);
    assert.equal(await second.text(), "csrf-of-s2", "not the first visitor's page");
    assert.equal(second.headers.get("set-cookie"), "sid=s2");
  });
});
