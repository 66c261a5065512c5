import assert from "node:assert/strict";
import { after, before, beforeEach, describe, it } from "node:test";
import type { FastifyInstance } from "fastify";
import { buildApp } from "../../demo/app.js";
import { loadConfig } from "../../demo/config.js";
import {
  type FakeUpstream,
  POSTS,
  type Post,
  startFakeUpstream,
} from "../../demo/fake-upstream.js";
import { freePort } from "../helpers/ports.js";

const ALL_POSTS = JSON.stringify(POSTS, null, 2);

for (const store of ["none", "memory"] as const) {
  describe(`demo app through inject() (CACHE_STORE=${store})`, () => {
    let fake: FakeUpstream;
    let app: FastifyInstance;

    before(async () => {
      fake = await startFakeUpstream({ latencyMs: 0 });
      app = await buildApp(
        loadConfig({
          UPSTREAM_URL: fake.url,
          UPSTREAM_TIMEOUT: "0.3",
          CACHE_STORE: store,
          LOG_LEVEL: "silent",
        }),
      );
      await app.ready();
    });
    after(async () => {
      try {
        await app?.close();
      } finally {
        await fake?.close();
      }
    });
    beforeEach(() => fake.reset());

    it("GET /posts answers the upstream's bytes as JSON", async () => {
      const response = await app.inject({ method: "GET", url: "/posts" });
      assert.equal(response.statusCode, 200);
      assert.equal(response.headers["content-type"], "application/json; charset=utf-8");
      assert.equal(response.body, ALL_POSTS);
      assert.equal(fake.calls(), 1);
    });

    it("GET /posts forwards the query string (?userId=2)", async () => {
      const response = await app.inject({ method: "GET", url: "/posts?userId=2" });
      assert.equal(response.statusCode, 200);
      const posts = response.json<Post[]>();
      assert.equal(posts.length, 10);
      assert.ok(posts.every((p) => p.userId === 2));
    });

    it("GET /posts/:id answers one post", async () => {
      const response = await app.inject({ method: "GET", url: "/posts/7" });
      assert.equal(response.statusCode, 200);
      assert.deepEqual(response.json(), POSTS[6]);
    });

    it("a non-numeric or out-of-range id is a 400 with a JSON error, and costs no upstream call", async () => {
      for (const id of ["abc", "0", "-1", "1.5", "7abc", "99999999999"]) {
        const response = await app.inject({ method: "GET", url: `/posts/${id}` });
        assert.equal(response.statusCode, 400, id);
        const body = response.json<{ error: string }>();
        assert.match(body.error, /^invalid request: params\/id /, id);
        assert.equal(response.headers["cache-control"], "no-store");
      }
      const query = await app.inject({ method: "GET", url: "/posts?userId=abc" });
      assert.equal(query.statusCode, 400);
      assert.match(query.json<{ error: string }>().error, /querystring\/userId/);
      assert.equal(fake.calls(), 0);
    });

    it("an upstream 404 is a 404 with a JSON error, marked no-store", async () => {
      const response = await app.inject({ method: "GET", url: "/posts/999" });
      assert.equal(response.statusCode, 404);
      assert.match(
        response.json<{ error: string }>().error,
        /^not found upstream: .*\/posts\/999$/,
      );
      assert.equal(response.headers["cache-control"], "no-store");
    });

    it("an upstream 5xx is a 502, and is not cached", async () => {
      fake.setMode("fail");
      const failed = await app.inject({ method: "GET", url: "/posts?userId=4" });
      assert.equal(failed.statusCode, 502);
      assert.match(failed.json<{ error: string }>().error, /^upstream answered 500 for /);
      assert.equal(failed.headers["cache-control"], "no-store");

      fake.setMode("ok");
      const recovered = await app.inject({ method: "GET", url: "/posts?userId=4" });
      assert.equal(recovered.statusCode, 200);
      assert.equal(recovered.json<Post[]>().length, 10);
      assert.equal(fake.calls(), 2, "the request after recovery went to the upstream");
    });

    it("invalid JSON from the upstream is a 502", async () => {
      fake.setMode("invalid-json");
      const response = await app.inject({ method: "GET", url: "/posts/3" });
      assert.equal(response.statusCode, 502);
      assert.match(response.json<{ error: string }>().error, /^upstream sent invalid JSON for /);
    });

    it("a hanging upstream is a 504 after UPSTREAM_TIMEOUT", async () => {
      fake.setMode("hang");
      const start = performance.now();
      const response = await app.inject({ method: "GET", url: "/posts/5" });
      const elapsed = performance.now() - start;
      assert.equal(response.statusCode, 504);
      assert.match(response.json<{ error: string }>().error, /did not answer within 300 ms/);
      assert.ok(elapsed >= 280 && elapsed < 2_000, `${elapsed} ms`);
    });

    it(
      store === "none"
        ? "with CACHE_STORE=none nothing is cached: every request reaches the upstream"
        : "caches /posts/:id (one upstream call), never /health or /docs",
      async () => {
        const first = await app.inject({ method: "GET", url: "/posts/8" });
        const second = await app.inject({ method: "GET", url: "/posts/8" });
        assert.equal(first.statusCode, 200);
        assert.equal(second.body, first.body);
        if (store === "none") {
          assert.equal(first.headers["cache-status"], undefined);
          assert.equal(second.headers["cache-status"], undefined);
          assert.equal(fake.calls(), 2);
        } else {
          assert.equal(first.headers["cache-status"], "cachet; fwd=uri-miss; stored");
          // Until the miss is stored, a request shares its response ("collapsed"); then hits.
          let status = String(second.headers["cache-status"]);
          const deadline = Date.now() + 5_000;
          while (status === "cachet; fwd=uri-miss; stored; collapsed" && Date.now() < deadline) {
            await new Promise((resolve) => setTimeout(resolve, 5));
            status = String(
              (await app.inject({ method: "GET", url: "/posts/8" })).headers["cache-status"],
            );
          }
          assert.match(status, /^cachet; hit; ttl=\d+$/);
          assert.equal(fake.calls(), 1);
        }
        for (const url of ["/health", "/docs", "/docs/json"]) {
          await app.inject({ method: "GET", url });
          const again = await app.inject({ method: "GET", url });
          assert.equal(again.headers["cache-status"], undefined, url);
        }
      },
    );

    it("GET /health is 200 and names the store", async () => {
      const response = await app.inject({ method: "GET", url: "/health" });
      assert.equal(response.statusCode, 200);
      assert.deepEqual(response.json(), {
        status: "ok",
        cache: { store, state: "ok" },
        upstream: fake.url,
        ttlSeconds: 60,
      });
      assert.equal(fake.calls(), 0);
    });

    it("serves the OpenAPI document and Swagger UI at /docs, from local assets", async () => {
      const page = await app.inject({ method: "GET", url: "/docs" });
      assert.equal(page.statusCode, 200);
      assert.match(page.headers["content-type"] as string, /^text\/html/);
      assert.match(page.body, /swagger-ui/i);
      // No asset comes from another origin: the docs work offline.
      assert.doesNotMatch(page.body, /(src|href)="https?:\/\//);

      const bundle = await app.inject({ method: "GET", url: "/docs/static/swagger-ui-bundle.js" });
      assert.equal(bundle.statusCode, 200);
      assert.ok(bundle.body.length > 100_000);

      const spec = await app.inject({ method: "GET", url: "/docs/json" });
      assert.equal(spec.statusCode, 200);
      const doc = spec.json<{
        openapi: string;
        paths: Record<string, unknown>;
        components: { schemas: Record<string, unknown> };
      }>();
      assert.match(doc.openapi, /^3\./);
      assert.deepEqual(Object.keys(doc.paths).sort(), [
        "/health",
        "/metrics",
        "/posts",
        "/posts/{id}",
      ]);
      assert.ok("Post" in doc.components.schemas);
    });

    it("an unknown route is a JSON 404", async () => {
      const response = await app.inject({ method: "GET", url: "/users" });
      assert.equal(response.statusCode, 404);
      assert.deepEqual(response.json(), { error: "not found: GET /users" });
    });
  });
}

describe("demo app with an unreachable upstream", () => {
  it("answers 502 naming the reason", async () => {
    const port = await freePort(); // nothing listens there
    const app = await buildApp(
      loadConfig({
        UPSTREAM_URL: `http://127.0.0.1:${port}`,
        CACHE_STORE: "none",
        LOG_LEVEL: "silent",
      }),
    );
    try {
      const response = await app.inject({ method: "GET", url: "/posts" });
      assert.equal(response.statusCode, 502);
      assert.match(
        response.json<{ error: string }>().error,
        /^upstream unreachable: .*ECONNREFUSED/,
      );
    } finally {
      await app.close();
    }
  });
});

describe("POST /cache/invalidate through inject() (memory store)", () => {
  const TOKEN = "test-admin-token-0123456789abcdef";
  let fake: FakeUpstream;
  let app: FastifyInstance;

  before(async () => {
    fake = await startFakeUpstream({ latencyMs: 0 });
    app = await buildApp(
      loadConfig({
        UPSTREAM_URL: fake.url,
        CACHE_STORE: "memory",
        ADMIN_TOKEN: TOKEN,
        LOG_LEVEL: "silent",
      }),
    );
    await app.ready();
  });
  after(async () => {
    try {
      await app?.close();
    } finally {
      await fake?.close();
    }
  });
  beforeEach(() => fake.reset());

  const invalidate = (body: unknown, authorization?: string, contentType = "application/json") =>
    app.inject({
      method: "POST",
      url: "/cache/invalidate",
      headers: {
        "content-type": contentType,
        ...(authorization === undefined ? {} : { authorization }),
      },
      payload: typeof body === "string" ? body : JSON.stringify(body),
    });

  /** GET `url` until it is answered from the cache. */
  async function warm(url: string): Promise<void> {
    const deadline = Date.now() + 5_000;
    for (;;) {
      const response = await app.inject({ method: "GET", url });
      assert.equal(response.statusCode, 200);
      if (/^cachet; hit;/.test(String(response.headers["cache-status"]))) return;
      if (Date.now() > deadline) throw new Error(`no hit for ${url}`);
    }
  }

  it("401 without a token, with a wrong one, or another scheme; nothing is invalidated", async () => {
    await warm("/posts/1");
    const calls = fake.calls();
    for (const authorization of [
      undefined,
      "",
      "Bearer",
      "Bearer wrong-token-0123456789abcdef0",
      `Bearer ${TOKEN}x`,
      `Bearer ${TOKEN.slice(0, -1)}`,
      `Basic ${Buffer.from(`admin:${TOKEN}`).toString("base64")}`,
      TOKEN,
    ]) {
      const response = await invalidate({ tags: ["posts"] }, authorization);
      assert.equal(response.statusCode, 401, String(authorization));
      assert.match(response.json<{ error: string }>().error, /^unauthorized/);
      assert.equal(response.headers["www-authenticate"], 'Bearer realm="cachet demo"');
      assert.equal(response.headers["cache-control"], "no-store");
    }
    // A malformed body without the token is a 401 too: the body is not even parsed.
    assert.equal((await invalidate("{not json", undefined)).statusCode, 401);
    const after = await app.inject({ method: "GET", url: "/posts/1" });
    assert.match(String(after.headers["cache-status"]), /^cachet; hit;/);
    assert.equal(fake.calls(), calls, "still cached");
  });

  it("200 with the token: the tagged responses are gone, others stay", async () => {
    await warm("/posts/1");
    await warm("/posts/2");
    await warm("/posts?userId=1");
    fake.reset();
    fake.editPost(1, { title: "edited at the origin" });
    const response = await invalidate({ tags: ["post:1"] }, `bearer ${TOKEN}`);
    assert.equal(response.statusCode, 200);
    assert.deepEqual(response.json(), {
      invalidated: { tags: ["post:1"], paths: [], soft: false },
    });
    const one = await app.inject({ method: "GET", url: "/posts/1" });
    assert.equal(one.headers["cache-status"], "cachet; fwd=uri-miss; stored");
    assert.equal(one.json<Post>().title, "edited at the origin");
    for (const url of ["/posts/2", "/posts?userId=1"]) {
      const other = await app.inject({ method: "GET", url });
      assert.match(String(other.headers["cache-status"]), /^cachet; hit;/, url);
    }
    assert.equal(fake.calls(), 1);

    // `posts` expires every cached post and list; a path expires every query of that path.
    assert.equal((await invalidate({ tags: ["posts"] }, `Bearer ${TOKEN}`)).statusCode, 200);
    for (const url of ["/posts/2", "/posts?userId=1"]) {
      const miss = await app.inject({ method: "GET", url });
      assert.equal(miss.headers["cache-status"], "cachet; fwd=uri-miss; stored", url);
    }
    await warm("/posts?userId=1");
    await warm("/posts/2");
    const byPath = await invalidate({ paths: ["/posts"] }, `Bearer ${TOKEN}`);
    assert.equal(byPath.statusCode, 200);
    const list = await app.inject({ method: "GET", url: "/posts?userId=1" });
    assert.equal(list.headers["cache-status"], "cachet; fwd=uri-miss; stored");
    const post = await app.inject({ method: "GET", url: "/posts/2" });
    assert.match(String(post.headers["cache-status"]), /^cachet; hit;/, "another path stays");
  });

  it("a malformed body is a 400 naming the problem, never a crash", async () => {
    const auth = `Bearer ${TOKEN}`;
    for (const [body, pattern] of [
      ["{not json", /JSON/i],
      ["", /body/i],
      [[], /JSON object/],
      ["null", /JSON object/],
      ["42", /JSON object/],
      [{}, /give tags or paths/],
      [{ tags: [] }, /give tags or paths/],
      [{ tags: "posts" }, /tags must be an array/],
      [{ tags: [1] }, /every item of tags/],
      [{ tags: [""] }, /every item of tags/],
      [{ tags: ["x".repeat(513)] }, /every item of tags/],
      [{ tags: Array.from({ length: 101 }, (_, i) => `t${i}`) }, /at most 100/],
      [{ tags: ["@ns:http"] }, /reserved/],
      [{ paths: ["posts"] }, /starts with one "\/"/],
      [{ paths: ["//evil.example/posts"] }, /starts with one "\/"/],
      [{ tags: ["posts"], soft: "yes" }, /soft must be a boolean/],
      [{ tags: ["posts"], everything: true }, /unknown field "everything"/],
    ] as const) {
      const response = await invalidate(body, auth);
      assert.equal(response.statusCode, 400, JSON.stringify(body));
      assert.match(response.json<{ error: string }>().error, pattern, JSON.stringify(body));
      assert.equal(response.headers["cache-control"], "no-store");
    }
    const wrongType = await invalidate("tags=posts", auth, "application/x-www-form-urlencoded");
    assert.equal(wrongType.statusCode, 415);
    const huge = await invalidate({ tags: ["x".repeat(70 * 1024)] }, auth);
    assert.equal(huge.statusCode, 413);
    // Still serving.
    assert.equal((await app.inject({ method: "GET", url: "/health" })).statusCode, 200);
  });

  it("soft invalidation is accepted for tags", async () => {
    const response = await invalidate({ tags: ["posts"], soft: true }, `Bearer ${TOKEN}`);
    assert.equal(response.statusCode, 200);
    assert.equal(response.json<{ invalidated: { soft: boolean } }>().invalidated.soft, true);
  });

  it("is in the OpenAPI document, with bearer authentication", async () => {
    const doc = (await app.inject({ method: "GET", url: "/docs/json" })).json<{
      paths: Record<string, unknown>;
      components: { securitySchemes?: Record<string, unknown> };
    }>();
    assert.ok("/cache/invalidate" in doc.paths);
    assert.deepEqual(doc.components.securitySchemes, {
      bearerAuth: { type: "http", scheme: "bearer" },
    });
  });
});

describe("POST /cache/invalidate without ADMIN_TOKEN", () => {
  it("does not exist (404), whatever the headers", async () => {
    const app = await buildApp(
      loadConfig({
        UPSTREAM_URL: "http://127.0.0.1:9",
        CACHE_STORE: "memory",
        LOG_LEVEL: "silent",
      }),
    );
    try {
      for (const authorization of [undefined, "Bearer ", "Bearer anything-at-all-0123456789"]) {
        const response = await app.inject({
          method: "POST",
          url: "/cache/invalidate",
          headers: {
            "content-type": "application/json",
            ...(authorization === undefined ? {} : { authorization }),
          },
          payload: JSON.stringify({ tags: ["posts"] }),
        });
        assert.equal(response.statusCode, 404, String(authorization));
      }
    } finally {
      await app.close();
    }
  });
});
