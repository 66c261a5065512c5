import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { cpSync, mkdtempSync, readdirSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import Fastify from "fastify";
import { cachetFastify } from "../src/adapters/fastify.js";
import { createCache } from "../src/cache.js";
import { InvalidOptionError } from "../src/errors.js";
import { redisStore } from "../src/stores/redis.js";

/** Plain-JavaScript mistakes fail at construction, naming the option; nothing is silent. */

function invalid(option: string, pattern?: RegExp) {
  return (error: unknown) => {
    assert.ok(error instanceof InvalidOptionError, String(error));
    assert.equal(error.option, option);
    if (pattern) assert.match(error.message, pattern);
    return true;
  };
}

describe("clear errors for options a type checker would have caught", () => {
  it("an unknown createCache option fails, suggesting the one meant", () => {
    assert.throws(
      () => createCache({ tll: "60s" } as never),
      invalid("createCache.tll", /did you mean `ttl`\?/),
    );
  });

  it("ioredis-style { host, port } for redisStore fails, saying to give a URL or a client", () => {
    assert.throws(
      () => redisStore({ host: "127.0.0.1", port: 6379 } as never),
      invalid("redisStore.host", /redis:\/\/host:port/),
    );
  });

  it("a route's vary as a string, and an unknown route option, fail at registration", async () => {
    const app = Fastify();
    await app.register(cachetFastify, { cache: createCache(), logger: false });
    assert.throws(
      () =>
        app.get("/a", { config: { cache: { vary: "authorization" as never } } }, async () => "a"),
      invalid("GET /a cache.vary", /array of request header names/),
    );
    assert.throws(
      () => app.get("/b", { config: { cache: { tll: "60s" } as never } }, async () => "b"),
      invalid("GET /b cache.tll", /did you mean `ttl`\?/),
    );
    await app.close();
  });

  it("a factory that is not a function is refused, not a raw TypeError", async () => {
    const cache = createCache();
    await assert.rejects(cache.getOrSet("k", "value" as never), invalid("getOrSet(factory)"));
  });

  it("without the redis package, redisStore() says which package to install", () => {
    // dist/ with every dependency but `redis` and `@redis/*`, as in an app that did not install it.
    const dir = mkdtempSync(join(tmpdir(), "cachet-no-redis-"));
    try {
      const modules = join(dir, "node_modules");
      spawnSync("mkdir", ["-p", modules]);
      for (const name of readdirSync("node_modules")) {
        if (name === "redis" || name === "@redis" || name === ".bin") continue;
        symlinkSync(join(process.cwd(), "node_modules", name), join(modules, name));
      }
      // A copy, not a link: Node resolves modules from a file's real path.
      cpSync(join(process.cwd(), "dist"), join(dir, "dist"), { recursive: true });
      const run = spawnSync(
        process.execPath,
        [
          "--input-type=module",
          "-e",
          `import("${join(dir, "dist", "stores", "redis.js")}").then((m) => { try { m.redisStore({ url: "redis://127.0.0.1:1" }); console.log("no error"); } catch (e) { console.log(e.code, e.message); } })`,
        ],
        { encoding: "utf8", cwd: dir },
      );
      assert.match(
        run.stdout,
        /^E_PEER_MISSING cachet: redisStore needs the `redis` package: npm install redis/,
        run.stderr,
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
