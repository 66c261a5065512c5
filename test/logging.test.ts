import assert from "node:assert/strict";
import { Writable } from "node:stream";
import { after, before, describe, it } from "node:test";
import Fastify from "fastify";
import { cachetFastify } from "../src/adapters/fastify.js";
import { useLogger } from "../src/engine/core.js";
import { engineOf } from "../src/engine/registry.js";
import type { Logger } from "../src/index.js";
import { createCache, InvalidOptionError } from "../src/index.js";
import { redisStore } from "../src/stores/redis.js";
import { MapStore, manualClock } from "./helpers/core.js";
import { waitFor } from "./helpers/ports.js";
import { type RedisServer, startRedis } from "./helpers/redis.js";

interface Line {
  readonly level: "error" | "warn" | "info" | "debug";
  readonly obj: Record<string, unknown>;
  readonly msg: string | undefined;
}

function recorder(): Logger & { lines: Line[]; at(level: Line["level"]): Line[] } {
  const lines: Line[] = [];
  const log =
    (level: Line["level"]) =>
    (obj: object, msg?: string): void => {
      lines.push({ level, obj: obj as Record<string, unknown>, msg });
    };
  return {
    lines,
    at: (level) => lines.filter((l) => l.level === level),
    error: log("error"),
    warn: log("warn"),
    info: log("info"),
    debug: log("debug"),
  };
}

describe("logging: state changes, never once per request", () => {
  it("10 s of traffic against a failing store: one line down, one when the circuit opens, one on recovery", async () => {
    const clock = manualClock();
    const store = new MapStore(clock);
    const logger = recorder();
    const cache = createCache({ store, clock, logger, breakerThreshold: 5, breakerCooldown: 1000 });
    assert.equal(await cache.getOrSet("k", () => "v"), "v");
    store.failWith = new Error("connect ECONNREFUSED 127.0.0.1:6379");
    // 1,000 requests over 10 s of (injected) time: misses, writes, breaker probes every second.
    for (let i = 0; i < 1000; i++) {
      assert.equal(await cache.getOrSet(`k${i % 50}`, () => "origin"), "origin");
      clock.advance(10);
    }
    assert.deepEqual(
      logger.at("warn").map((l) => l.msg),
      [
        "cachet: fake-remote store unavailable (get: connect ECONNREFUSED 127.0.0.1:6379); requests go to the origin until it recovers",
        "cachet: fake-remote store circuit open: calls skipped until a probe succeeds",
      ],
    );
    assert.equal(logger.at("error").length, 0);
    assert.equal(logger.at("info").length, 0);
    // The breaker's re-openings after failed probes (one a second) are debug, one per change.
    const debug = logger.at("debug");
    assert.ok(debug.length >= 10 && debug.length <= 22, `${debug.length} debug lines`);
    assert.ok(debug.every((l) => /circuit (half-open|open)$/.test(l.msg ?? "")));
    assert.equal(logger.at("warn")[0]?.obj.store, "fake-remote");

    store.failWith = undefined;
    clock.advance(1000);
    for (let i = 0; i < 100; i++) await cache.getOrSet(`k${i % 50}`, () => "origin");
    const info = logger.at("info");
    assert.equal(info.length, 1);
    assert.match(
      info[0]?.msg ?? "",
      /^cachet: fake-remote store recovered after 11 s \(\d+ failed calls\)$/,
    );
    assert.equal(info[0]?.obj.downMs, 11_000);
    assert.equal(logger.at("warn").length, 2);
  });

  it("a corrupt entry is logged at most once a minute per operation, counting the rest", async () => {
    const clock = manualClock();
    const store = new MapStore(clock);
    const logger = recorder();
    const cache = createCache({ store, clock, logger });
    for (let i = 0; i < 20; i++) store.put(`bad${i}`, Buffer.from("not an entry"));
    for (let i = 0; i < 20; i++) await cache.get(`bad${i}`);
    assert.equal(logger.lines.length, 1);
    assert.match(
      logger.lines[0]?.msg ?? "",
      /^cachet: decode failed for key "bad0": entry "bad0" is unreadable/,
    );
    assert.equal(logger.lines[0]?.obj.code, "E_CORRUPT_ENTRY");
    clock.advance(60_000);
    await cache.get("bad0");
    assert.equal(logger.lines.length, 2);
    assert.equal(logger.lines[1]?.obj.suppressed, 19);
  });

  it("rejects a logger without the four methods", () => {
    assert.throws(
      () => createCache({ logger: { info() {} } as unknown as Logger }),
      (error: unknown) => error instanceof InvalidOptionError && error.option === "logger",
    );
  });

  it("the Fastify plugin logs through fastify.log unless told otherwise", async () => {
    const output: string[] = [];
    const stream = new Writable({
      write(chunk, _encoding, done) {
        output.push(String(chunk));
        done();
      },
    });
    const clock = manualClock();
    const store = new MapStore(clock);
    const cache = createCache({ store, clock });
    const app = Fastify({ logger: { level: "info", stream } });
    await app.register(cachetFastify, { cache });
    app.get("/x", { config: { cache: true } }, async () => ({ ok: true }));
    try {
      store.failWith = new Error("boom");
      for (let i = 0; i < 20; i++) {
        assert.equal((await app.inject({ url: `/x?i=${i}` })).statusCode, 200);
      }
      const records = output
        .join("")
        .split("\n")
        .filter(Boolean)
        .map((line) => JSON.parse(line) as { msg: string; level: number });
      const cachet = records.filter((r) => r.msg.startsWith("cachet:"));
      assert.deepEqual(
        cachet.map((r) => [r.level, r.msg]),
        [
          [
            40,
            "cachet: fake-remote store unavailable (get: boom); requests go to the origin until it recovers",
          ],
          [40, "cachet: fake-remote store circuit open: calls skipped until a probe succeeds"],
        ],
      );
    } finally {
      await app.close();
    }

    // With logger: false, nothing is logged.
    const quietOutput: string[] = [];
    const quiet = Fastify({
      logger: {
        level: "debug",
        stream: new Writable({
          write(chunk, _e, done) {
            quietOutput.push(String(chunk));
            done();
          },
        }),
      },
    });
    const other = createCache({ store: new MapStore(clock), clock });
    await quiet.register(cachetFastify, { cache: other, logger: false });
    quiet.get("/x", { config: { cache: true } }, async () => ({ ok: true }));
    try {
      await quiet.ready();
      assert.equal(
        useLogger(engineOf(other).tiers.core, recorder()),
        true,
        "no logger was attached by the plugin",
      );
    } finally {
      await quiet.close();
    }
  });
});

describe("logging: a real Redis going away for 10 s of traffic", () => {
  let redis: RedisServer;
  before(async () => {
    redis = await startRedis();
  });
  after(async () => {
    await redis?.stop();
  });

  it("logs the outage and the recovery, and nothing per request in between", async () => {
    const clock = manualClock(Date.now());
    const logger = recorder();
    const cache = createCache({
      store: redisStore({ url: redis.url, prefix: "logging:", maxReconnectDelay: 100 }),
      clock,
      logger,
      storeTimeout: 500,
      breakerCooldown: 1000,
    });
    try {
      assert.equal(await cache.getOrSet("k", () => "v"), "v");
      await redis.kill();
      // 10 s of traffic on the injected clock (the killed server refuses connections at once).
      for (let i = 0; i < 1000; i++) {
        assert.equal(await cache.getOrSet(`k${i % 20}`, () => "origin"), "origin");
        clock.advance(10);
      }
      const warn = logger.at("warn");
      assert.equal(warn.length, 2, JSON.stringify(warn));
      assert.match(
        warn[0]?.msg ?? "",
        /^cachet: redis store unavailable \(.+\); requests go to the origin/,
      );
      assert.match(warn[1]?.msg ?? "", /^cachet: redis store circuit open/);
      assert.equal(logger.at("error").length, 0);
      assert.equal(logger.at("info").length, 0);
      assert.ok(logger.lines.length < 30, `${logger.lines.length} lines for 1,000 requests`);
      assert.equal(cache.health().status, "degraded");

      await redis.start();
      const recovered = () =>
        logger.at("info").filter((l) => /^cachet: redis store recovered after /.test(l.msg ?? ""));
      await waitFor(
        async () => {
          clock.advance(1000);
          await cache.getOrSet("after", () => "v");
          return recovered().length > 0;
        },
        "the recovery to be logged",
        10_000,
        50,
      );
      for (let i = 0; i < 50; i++) await cache.getOrSet(`k${i % 20}`, () => "origin");
      assert.equal(recovered().length, 1);
      assert.match(
        recovered()[0]?.msg ?? "",
        /^cachet: redis store recovered after \d+ s \(\d+ failed calls\)$/,
      );
      // Besides the recovery, at most the bus saying it resubscribed (and dropped L1).
      const otherInfo = logger.at("info").filter((l) => !recovered().includes(l));
      assert.ok(otherInfo.length <= 1, JSON.stringify(otherInfo));
      assert.ok(
        otherInfo.every((l) => /^cachet: bus subscription re-established/.test(l.msg ?? "")),
      );
      assert.equal(logger.at("warn").length, 2);
      // The bus's subscriber reconnects on its own schedule (its own connection): health is
      // back to ok once it has too.
      await waitFor(
        () => cache.health().status === "ok",
        `health ok (${JSON.stringify(cache.health().problems)})`,
        10_000,
        50,
      );
    } finally {
      await cache.close();
    }
  });
});
