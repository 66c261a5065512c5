/**
 * cachet/nestjs over real sockets, on @nestjs/platform-express and @nestjs/platform-fastify:
 * the module, the interceptor (Express) / the plugin through route config (Fastify), the route
 * decorator, invalidation, the HTTP safety defaults, a Redis outage.
 * Decorators are applied with Reflect.decorate (tsx compiles test files without
 * experimentalDecorators); test/nestjs/compile.test.ts compiles real decorator syntax.
 */
import "reflect-metadata";
import assert from "node:assert/strict";
import type { AddressInfo } from "node:net";
import { after, before, describe, it } from "node:test";
import {
  Controller,
  type ExecutionContext,
  Get,
  type INestApplication,
  Module,
  Post,
  UseGuards,
} from "@nestjs/common";
import { NestFactory } from "@nestjs/core";
import { ExpressAdapter } from "@nestjs/platform-express";
import { FastifyAdapter } from "@nestjs/platform-fastify";
import { CACHET, CacheRoute, CachetModule } from "../../src/adapters/nestjs.js";
import { type Cache, createCache } from "../../src/index.js";
import { redisStore } from "../../src/stores/redis.js";
import { type RedisServer, startRedis } from "../helpers/redis.js";
import { send } from "../http/client.js";

interface Counters {
  list: number;
  fails: number;
}

function decorate(target: object, key: string, decorators: MethodDecorator[]): void {
  const descriptor = Object.getOwnPropertyDescriptor(target, key);
  Reflect.decorate(decorators, target, key, descriptor);
}

async function createApp(
  platform: "express" | "fastify",
  cache: Cache,
  calls: Counters,
): Promise<{ app: INestApplication; port: number }> {
  class PostsController {
    list() {
      calls.list++;
      return [{ id: 1, n: calls.list }];
    }
    create() {
      return { ok: true };
    }
    fails() {
      calls.fails++;
      throw "handler failed (not an Error)";
    }
  }
  decorate(PostsController.prototype, "list", [Get(), CacheRoute({ ttl: "60s", tags: ["posts"] })]);
  decorate(PostsController.prototype, "create", [Post()]);
  decorate(PostsController.prototype, "fails", [Get("fails"), CacheRoute(true)]);
  Controller("posts")(PostsController);
  class AppModule {}
  Module({
    imports: [CachetModule.forRoot({ cache })],
    controllers: [PostsController],
  })(AppModule);
  const adapter = platform === "express" ? new ExpressAdapter() : new FastifyAdapter();
  const app = await NestFactory.create(AppModule, adapter, { logger: false });
  await app.listen(0, "127.0.0.1");
  const port = (app.getHttpServer().address() as AddressInfo).port;
  return { app, port };
}

for (const platform of ["express", "fastify"] as const) {
  describe(`cachet/nestjs on @nestjs/platform-${platform}`, () => {
    let app: INestApplication;
    let base: { host: string; port: number };
    const calls: Counters = { list: 0, fails: 0 };
    let cache: Cache;

    before(async () => {
      cache = createCache({ ttl: "60s" });
      const created = await createApp(platform, cache, calls);
      app = created.app;
      base = { host: "127.0.0.1", port: created.port };
    });
    after(async () => {
      await app.close();
    });

    it("caches a @CacheRoute route: miss, then hit with Cache-Status", async () => {
      await cache.clear();
      const before = calls.list;
      const first = await send(base, { url: "/posts" });
      assert.equal(first.status, 200);
      assert.match(String(first.headers["cache-status"]), /fwd=uri-miss; stored/);
      const second = await send(base, { url: "/posts" });
      assert.equal(second.status, 200);
      assert.match(String(second.headers["cache-status"]), /; hit/);
      assert.equal(second.body, first.body);
      assert.equal(calls.list - before, 1);
    });

    it("answers HEAD and conditional requests (304) from the stored response", async () => {
      const full = await send(base, { url: "/posts" });
      const etag = String(full.headers.etag);
      assert.ok(etag.length > 2, "an ETag");
      const head = await send(base, { method: "HEAD", url: "/posts" });
      assert.equal(head.status, 200);
      assert.equal(head.body, "");
      const conditional = await send(base, { url: "/posts", headers: { "if-none-match": etag } });
      assert.equal(conditional.status, 304);
      assert.equal(conditional.body, "");
    });

    it("never shares a response with a request carrying Authorization", async () => {
      await send(base, { url: "/posts" });
      const before = calls.list;
      const authorized = await send(base, {
        url: "/posts",
        headers: { authorization: "Bearer secret" },
      });
      assert.equal(authorized.status, 200);
      assert.equal(calls.list - before, 1, "the handler answered");
      assert.doesNotMatch(String(authorized.headers["cache-status"]), /; hit/);
    });

    it("invalidates by tag through the injected Cache", async () => {
      await send(base, { url: "/posts" });
      const injected = app.get<Cache>(CACHET);
      assert.equal(injected, cache);
      await injected.invalidateTags(["posts"]);
      const before = calls.list;
      const after = await send(base, { url: "/posts" });
      assert.equal(calls.list - before, 1);
      assert.doesNotMatch(String(after.headers["cache-status"]), /; hit/);
    });

    it("a successful POST on the path invalidates its stored responses", async () => {
      await send(base, { url: "/posts" });
      const hit = await send(base, { url: "/posts" });
      assert.match(String(hit.headers["cache-status"]), /; hit/);
      const created = await send(base, { method: "POST", url: "/posts" });
      assert.equal(created.status, 201);
      const before = calls.list;
      const after = await send(base, { url: "/posts" });
      assert.equal(calls.list - before, 1);
      assert.doesNotMatch(String(after.headers["cache-status"]), /; hit/);
    });

    it("a handler throwing a non-Error gets a 500, nothing stored, the app goes on", async () => {
      const first = await send(base, { url: "/posts/fails" });
      assert.equal(first.status, 500);
      const second = await send(base, { url: "/posts/fails" });
      assert.equal(second.status, 500);
      assert.equal(calls.fails, 2);
      assert.equal((await send(base, { url: "/posts" })).status, 200);
    });
  });
}

describe("cachet/nestjs with Redis down", () => {
  let redis: RedisServer;
  before(async () => {
    redis = await startRedis();
  });
  after(async () => {
    await redis.stop().catch(() => {});
  });

  for (const platform of ["express", "fastify"] as const) {
    it(`${platform}: requests are still answered, fast, when redis-server is killed`, async () => {
      await redis.start().catch(() => {});
      const cache = createCache({
        ttl: "60s",
        store: redisStore({ url: redis.url }),
        storeTimeout: 100,
      });
      const calls: Counters = { list: 0, fails: 0 };
      const { app, port } = await createApp(platform, cache, calls);
      const base = { host: "127.0.0.1", port };
      try {
        assert.equal((await send(base, { url: "/posts" })).status, 200);
        await redis.kill();
        for (let i = 0; i < 10; i++) {
          const started = performance.now();
          const reply = await send(base, { url: "/posts" });
          const ms = performance.now() - started;
          assert.equal(reply.status, 200);
          assert.ok(ms < 1_000, `answered in ${ms.toFixed(0)} ms`);
        }
      } finally {
        await app.close();
      }
    });
  }
});

/** A guard on something cachet does not know about: an API key header. */
class ApiKeyGuard {
  canActivate(context: ExecutionContext): boolean {
    const request = context.switchToHttp().getRequest<{ headers: Record<string, unknown> }>();
    return request.headers["x-api-key"] === "let-me-in";
  }
}

async function guardedApp(
  platform: "express" | "fastify",
  options: Parameters<typeof CacheRoute>[0],
): Promise<{ app: INestApplication; base: { host: string; port: number } }> {
  class SecretController {
    secret() {
      return { secret: "only for key holders" };
    }
  }
  decorate(SecretController.prototype, "secret", [Get(), CacheRoute(options)]);
  UseGuards(ApiKeyGuard)(SecretController);
  Controller("secret")(SecretController);
  class AppModule {}
  Module({
    imports: [CachetModule.forRoot({ cache: createCache({ ttl: "60s" }) })],
    controllers: [SecretController],
  })(AppModule);
  const adapter = platform === "express" ? new ExpressAdapter() : new FastifyAdapter();
  const app = await NestFactory.create(AppModule, adapter, { logger: false });
  try {
    await app.listen(0, "127.0.0.1");
  } catch (error) {
    await app.close();
    throw error;
  }
  const port = (app.getHttpServer().address() as AddressInfo).port;
  return { app, base: { host: "127.0.0.1", port } };
}

describe("cachet/nestjs and guards", () => {
  it("express: the interceptor runs after guards, so a cached response never skips one", async () => {
    const { app, base } = await guardedApp("express", { ttl: "60s" });
    try {
      const key = { "x-api-key": "let-me-in" };
      assert.equal((await send(base, { url: "/secret", headers: key })).status, 200);
      const hit = await send(base, { url: "/secret", headers: key });
      assert.match(String(hit.headers["cache-status"]), /; hit/);
      const denied = await send(base, { url: "/secret" });
      assert.equal(denied.status, 403);
      assert.doesNotMatch(denied.body, /only for key holders/);
    } finally {
      await app.close();
    }
  });

  it("fastify: a guarded @CacheRoute that does not say what the guard checks fails at start-up", async () => {
    await assert.rejects(
      guardedApp("fastify", { ttl: "60s" }),
      (error: Error & { code?: string; option?: string }) => {
        assert.equal(error.code, "E_INVALID_OPTION");
        assert.equal(error.option, "SecretController.secret @CacheRoute");
        assert.match(error.message, /before guards run/);
        return true;
      },
    );
  });

  it("fastify: with vary on the header the guard checks, a refused request is never served", async () => {
    const { app, base } = await guardedApp("fastify", { ttl: "60s", vary: ["x-api-key"] });
    try {
      const key = { "x-api-key": "let-me-in" };
      assert.equal((await send(base, { url: "/secret", headers: key })).status, 200);
      const hit = await send(base, { url: "/secret", headers: key });
      assert.match(String(hit.headers["cache-status"]), /; hit/);
      for (const headers of [{}, { "x-api-key": "wrong" }] as Record<string, string>[]) {
        const denied = await send(base, { url: "/secret", headers });
        assert.equal(denied.status, 403);
        assert.doesNotMatch(denied.body, /only for key holders/);
      }
    } finally {
      await app.close();
    }
  });
});
