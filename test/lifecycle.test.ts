import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { describe, it } from "node:test";
import { createCache } from "../src/cache.js";
import { InvalidOptionError, StoreError } from "../src/errors.js";
import { redisStore } from "../src/stores/redis.js";
import { freePort } from "./helpers/ports.js";
import { startRedis } from "./helpers/redis.js";

/** Start-up and shutdown: fail fast when Redis is wrong, let the process go when closed. */
describe("lifecycle: ready() and close()", () => {
  it("ready() resolves once Redis answered; close() twice is fine", async () => {
    const redis = await startRedis();
    try {
      const cache = createCache({ store: redisStore({ url: redis.url }) });
      await cache.ready();
      await cache.set("k", 1);
      assert.equal(await cache.get("k"), 1);
      await cache.close();
      await cache.close();
    } finally {
      await redis.stop();
    }
  });

  it("ready() rejects, saying why, for an unreachable host, a wrong password and a frozen server", async () => {
    const port = await freePort();
    const nobody = createCache({ store: redisStore({ url: `redis://127.0.0.1:${port}` }) });
    await assert.rejects(nobody.ready({ timeout: "2s" }), (error: unknown) => {
      assert.ok(error instanceof StoreError, String(error));
      assert.equal(error.code, "E_STORE");
      assert.match(error.message, /ECONNREFUSED/);
      return true;
    });
    await nobody.close();

    const locked = await startRedis();
    // A password set once the server is up (the helper's readiness probe speaks no AUTH).
    const set = spawnSync(
      "redis-cli",
      ["-p", new URL(locked.url).port, "config", "set", "requirepass", "right"],
      {
        encoding: "utf8",
      },
    );
    assert.equal(set.stdout.trim(), "OK", set.stderr);
    const frozen = await startRedis();
    try {
      const wrong = createCache({
        store: redisStore({ url: `redis://:wrong@127.0.0.1:${new URL(locked.url).port}` }),
      });
      await assert.rejects(wrong.ready({ timeout: "2s" }), (error: unknown) => {
        assert.ok(error instanceof StoreError, String(error));
        assert.match(error.message, /WRONGPASS|NOAUTH|invalid password|AUTH/i);
        return true;
      });
      await wrong.close();

      frozen.pause();
      const stuck = createCache({ store: redisStore({ url: frozen.url }) });
      await assert.rejects(stuck.ready({ timeout: "300ms" }), (error: unknown) => {
        assert.ok(error instanceof StoreError, String(error));
        assert.equal(error.code, "E_STORE_TIMEOUT");
        return true;
      });
      frozen.resume();
      await stuck.close();
    } finally {
      frozen.resume();
      await locked.stop();
      await frozen.stop();
    }
  });

  it("an explicitly undefined url (an unset REDIS_URL) fails at construction", () => {
    assert.throws(
      () => redisStore({ url: process.env.CACHET_SURELY_UNSET_VARIABLE }),
      (error: unknown) => error instanceof InvalidOptionError && error.option === "redisStore.url",
    );
  });

  it("a Fastify app with the plugin on Redis lets the process exit after app.close()", async () => {
    const redis = await startRedis();
    try {
      const script = `
        import Fastify from "fastify";
        import { createCache } from "./src/cache.ts";
        import { redisStore } from "./src/stores/redis.ts";
        import { cachetFastify } from "./src/adapters/fastify.ts";
        const app = Fastify();
        await app.register(cachetFastify, { cache: createCache({ store: redisStore({ url: ${JSON.stringify(redis.url)} }), l1: true }), logger: false });
        app.get("/p", { config: { cache: true } }, async () => ({ ok: true }));
        await app.listen({ port: 0, host: "127.0.0.1" });
        const res = await app.inject({ url: "/p" });
        if (res.statusCode !== 200) process.exit(2);
        await app.close();
        console.log("closed");
      `;
      const child = spawn(
        process.execPath,
        ["--import", "tsx", "--input-type=module", "-e", script],
        {
          cwd: process.cwd(),
          stdio: ["ignore", "pipe", "inherit"],
        },
      );
      let out = "";
      child.stdout.on("data", (d) => (out += d));
      const code = await new Promise<number | null>((resolve) => {
        const timer = setTimeout(() => {
          child.kill("SIGKILL");
          resolve(null);
        }, 15_000);
        child.on("exit", (c) => {
          clearTimeout(timer);
          resolve(c);
        });
      });
      assert.equal(out.trim(), "closed");
      assert.equal(code, 0, "the process exited on its own after app.close()");
    } finally {
      await redis.stop();
    }
  });
});
