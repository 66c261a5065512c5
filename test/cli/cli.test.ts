import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import Fastify from "fastify";
import { Registry } from "prom-client";
import { cachetFastify } from "../../src/adapters/fastify.js";
import type { Cache } from "../../src/index.js";
import { createCache } from "../../src/index.js";
import { prometheusMetrics } from "../../src/metrics/prometheus.js";
import { redisStore } from "../../src/stores/redis.js";
import { freePort, waitFor } from "../helpers/ports.js";
import { type RedisServer, startRedis } from "../helpers/redis.js";

const CLI = fileURLToPath(new URL("../../src/cli/index.ts", import.meta.url));

interface Run {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** `cachet ...args` as a process (through tsx, on the sources), with `REDIS_URL` unset. */
function cachet(args: readonly string[], timeoutMs = 20_000): Promise<Run> {
  return new Promise((resolve, reject) => {
    const env = { ...process.env };
    delete env.REDIS_URL;
    const child = spawn(process.execPath, ["--import", "tsx", CLI, ...args], {
      env,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => {
      stdout += d;
    });
    child.stderr.on("data", (d) => {
      stderr += d;
    });
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`cachet ${args.join(" ")} still running after ${timeoutMs} ms`));
    }, timeoutMs);
    child.once("error", reject);
    child.once("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

describe("cachet CLI against a real Redis", () => {
  let redis: RedisServer;
  let url: string;
  let app: Cache;
  const prefix = "cli-test:";
  const on = () => ["--redis-url", url, "--prefix", prefix];

  before(async () => {
    redis = await startRedis();
    url = redis.url;
    // A running "instance" of the application: an in-process tier kept coherent by the bus.
    app = createCache({
      store: redisStore({ url, prefix }),
      l1: true,
      storeTimeout: 1000,
      ttl: 300_000,
    });
  });
  after(async () => {
    await app?.close();
    await redis?.stop();
  });

  it("get: freshness, tags, size and the value, as text and as JSON", async () => {
    await app.set("user:1", { name: "alice", roles: ["admin"] }, { tags: ["users"], ttl: "5m" });
    const text = await cachet(["get", "user:1", ...on()]);
    assert.equal(text.code, 0, text.stderr);
    assert.match(text.stdout, /^key +user:1$/m);
    assert.match(text.stdout, /^redis key +cli-test:user:1$/m);
    assert.match(text.stdout, /^state +fresh \(for (4|5) min more\)$/m);
    assert.match(text.stdout, /^tags +@ns:, users$/m);
    assert.match(text.stdout, /^size +\d+ bytes \(value \d+ bytes, msgpack\)$/m);
    assert.match(text.stdout, /^value +\{"name":"alice","roles":\["admin"\]\}$/m);

    const json = await cachet(["get", "user:1", "--json", ...on()]);
    assert.equal(json.code, 0, json.stderr);
    const report = JSON.parse(json.stdout) as Record<string, unknown>;
    assert.equal(report.state, "fresh");
    assert.deepEqual(report.tags, ["@ns:", "users"]);
    assert.deepEqual(report.value, { name: "alice", roles: ["admin"] });
    assert.equal(report.format, "msgpack");
    assert.ok(typeof report.expiresInMs === "number" && report.expiresInMs > 290_000);
  });

  it("get: a namespaced key, a soft-invalidated (stale) entry, and a stored HTTP response", async () => {
    const posts = app.namespace("posts");
    await posts.set("p1", "hello", { tags: ["feed"], staleIfError: "1h" });
    await app.invalidateTags(["feed"], { soft: true });
    const stale = await cachet(["get", "p1", "--namespace", "posts", ...on()]);
    assert.equal(stale.code, 0, stale.stderr);
    assert.match(stale.stdout, /^key +@posts:p1$/m);
    assert.match(stale.stdout, /^state +stale since .* \(soft-invalidated by a tag\)/m);

    const fastify = Fastify();
    await fastify.register(cachetFastify, { cache: app, logger: false, closeCache: false });
    fastify.get("/posts/:id", { config: { cache: true } }, async () => ({ id: 7, title: "t" }));
    try {
      assert.equal((await fastify.inject({ url: "/posts/7" })).statusCode, 200);
    } finally {
      await fastify.close();
    }
    // HTTP keys start with the host the framework reported (inject: localhost:80).
    const http = await cachet(["get", "@http:localhost:80/posts/7", ...on()]);
    assert.equal(http.code, 0, http.stderr);
    assert.match(http.stdout, /^tags +@ns:, @ns:http, @path:\/posts\/7$/m);
    assert.match(http.stdout, /^value +HTTP 200, application\/json; charset=utf-8, etag "/m);
    assert.match(http.stdout, /\{"id":7,"title":"t"\}/);
  });

  it("get: an unknown key, a corrupt entry, a bad URL, an unreachable Redis — each with its message and exit code", async () => {
    const unknown = await cachet(["get", "nope", ...on()]);
    assert.equal(unknown.code, 66);
    assert.equal(
      unknown.stderr,
      'cachet: no entry under "nope" (Redis key "cli-test:nope") (keys of a namespace are @<namespace>:<key>, or pass --namespace)\n',
    );
    assert.equal(unknown.stdout, "");

    const writer = redisStore({ url, prefix });
    await writer.set("corrupt", Buffer.from("not a cachet entry, just bytes ".repeat(4)), 60_000);
    await writer.disconnect();
    const corrupt = await cachet(["get", "corrupt", ...on()]);
    assert.equal(corrupt.code, 65);
    assert.match(
      corrupt.stderr,
      /^cachet: the value under "corrupt" is not a cachet entry \(not a cachet entry\); the application treats it as a miss/,
    );

    const badUrl = await cachet(["get", "k", "--redis-url", "http://example.com"]);
    assert.equal(badUrl.code, 64);
    assert.match(
      badUrl.stderr,
      /^cachet: invalid --redis-url "http:\/\/example.com": unsupported scheme "http:"/,
    );
    const garbage = await cachet(["get", "k", "--redis-url", "not a url"]);
    assert.equal(garbage.code, 64);
    assert.match(garbage.stderr, /^cachet: invalid --redis-url "not a url": not a valid URL/);

    const port = await freePort();
    const down = await cachet(["get", "k", "--redis-url", `redis://127.0.0.1:${port}`]);
    assert.equal(down.code, 69);
    assert.equal(
      down.stderr,
      `cachet: cannot reach Redis at redis://127.0.0.1:${port}: connect ECONNREFUSED 127.0.0.1:${port}\n`,
    );
    // A password in the URL is never printed.
    const secret = await cachet(["get", "k", "--redis-url", `redis://:hunter2@127.0.0.1:${port}`]);
    assert.equal(secret.code, 69);
    assert.doesNotMatch(secret.stderr, /hunter2/);
  });

  it("--version prints the package's version", async () => {
    const run = await cachet(["--version"]);
    assert.equal(run.code, 0);
    assert.match(run.stdout, /^\d+\.\d+\.\d+/);
  });

  it("del: removes the entry, and the running instance drops its in-process copy", async () => {
    await app.set("session:9", "token");
    assert.equal(await app.get("session:9"), "token");
    const del = await cachet(["del", "session:9", ...on()]);
    assert.equal(del.code, 0, del.stderr);
    assert.equal(del.stdout, "deleted session:9 (other instances were told to drop their copy)\n");
    assert.equal(del.stderr, "", "one truthful report: no warning after the success line");
    await waitFor(async () => (await app.get("session:9")) === undefined, "the bus to drop L1");
    const again = await cachet(["del", "session:9", ...on()]);
    assert.equal(again.code, 66);
    assert.match(again.stderr, /^cachet: no entry under "session:9"/);
  });

  it("invalidate --tag and --path: one write each, seen by the running instance", async () => {
    await app.set("a", 1, { tags: ["t1"] });
    await app.set("b", 2, { tags: ["t2"] });
    await app.set("c", 3);
    for (const k of ["a", "b", "c"]) assert.notEqual(await app.get(k), undefined);
    const run = await cachet(["invalidate", "--tag", "t1", "--tag", "t2", ...on()]);
    assert.equal(run.code, 0, run.stderr);
    assert.equal(run.stdout, "expired: every entry tagged t1, t2\n");
    assert.equal(run.stderr, "");
    await waitFor(async () => (await app.get("a")) === undefined, "the tag to expire a");
    assert.equal(await app.get("b"), undefined);
    assert.equal(await app.get("c"), 3);

    const usage = await cachet(["invalidate", ...on()]);
    assert.equal(usage.code, 64);
    assert.equal(usage.stderr, "cachet: invalidate needs --tag or --path\n");
    const reserved = await cachet(["invalidate", "--tag", "@ns:x", ...on()]);
    assert.equal(reserved.code, 64);
    assert.match(reserved.stderr, /^cachet: invalid --tag: tags starting with "@" are reserved/);
  });

  it("clear --namespace: that namespace's entries miss, the others stay", async () => {
    const users = app.namespace("users");
    const orders = app.namespace("orders");
    await users.set("1", "alice");
    await orders.set("1", "order");
    const run = await cachet(["clear", "--namespace", "users", ...on()]);
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /^cleared namespace users/);
    await waitFor(async () => (await users.get("1")) === undefined, "the namespace to clear");
    assert.equal(await orders.get("1"), "order");
    const both = await cachet(["clear", ...on()]);
    assert.equal(both.code, 64);
    assert.equal(both.stderr, "cachet: clear needs exactly one of --namespace N or --all\n");
  });

  it("stats from the store: entries by namespace, with a progress line while scanning", async () => {
    const bulk = createCache({
      store: redisStore({ url, prefix: "cli-bulk:" }),
      storeTimeout: 5000,
      bus: false,
    });
    try {
      const ns = bulk.namespace("items");
      for (let start = 0; start < 25_000; start += 1000) {
        await Promise.all(
          Array.from({ length: 1000 }, (_, i) => ns.set(`i${start + i}`, start + i)),
        );
      }
      await bulk.set("root-key", 1);
    } finally {
      await bulk.close();
    }
    const run = await cachet(["stats", "--redis-url", url, "--prefix", "cli-bulk:"]);
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /^entries +25001$/m);
    assert.match(run.stdout, /^ {2}items +25000$/m);
    assert.match(run.stdout, /^ {2}\(root\) +1$/m);
    assert.match(run.stdout, /hit ratio \d+\.\d%/);
    const progress = run.stderr.split("\n").filter((l) => l.startsWith("scanning cli-bulk:*: "));
    assert.ok(progress.length >= 2, run.stderr);
    assert.match(progress[0] ?? "", /^scanning cli-bulk:\*: 1\d,\d{3} keys…$/);

    const json = await cachet(["stats", "--json", "--redis-url", url, "--prefix", "cli-bulk:"]);
    assert.equal(json.code, 0, json.stderr);
    const report = JSON.parse(json.stdout) as {
      entries: number;
      namespaces: Record<string, number>;
    };
    assert.equal(report.entries, 25_001);
    assert.deepEqual(report.namespaces, { items: 25_000, "(root)": 1 });
  });

  it("stats --metrics-url: hit ratio and counts from a running service's /metrics", async () => {
    const register = new Registry();
    const cache = createCache();
    prometheusMetrics(cache, { register });
    const service = Fastify();
    await service.register(cachetFastify, { cache, logger: false });
    service.get("/posts/:id", { config: { cache: true } }, async () => ({ ok: true }));
    service.get("/metrics", async (_request, reply) =>
      reply.type(register.contentType).send(await register.metrics()),
    );
    await service.listen({ port: 0, host: "127.0.0.1" });
    try {
      const address = service.server.address();
      const port = typeof address === "object" && address ? address.port : 0;
      for (const id of [1, 1, 1, 2]) await service.inject({ url: `/posts/${id}` });
      const run = await cachet(["stats", "--metrics-url", `http://127.0.0.1:${port}/metrics`]);
      assert.equal(run.code, 0, run.stderr);
      assert.match(run.stdout, /^lookups +4: hit ratio 50\.0%, served from cache 50\.0%$/m);
      assert.match(run.stdout, /^hits +2 \(l1 2\)$/m);
      assert.match(run.stdout, /^misses +2$/m);
      assert.match(
        run.stdout,
        /^ {2}GET \/posts\/:id: 4 requests, 50\.0% from cache \(stored 2, hit 2\)$/m,
      );

      const notMetrics = await cachet([
        "stats",
        "--metrics-url",
        `http://127.0.0.1:${port}/posts/1`,
      ]);
      assert.equal(notMetrics.code, 65);
      assert.match(
        notMetrics.stderr,
        /^cachet: no cachet metrics at http:\/\/127\.0\.0\.1:\d+\/posts\/1/,
      );
    } finally {
      await service.close();
    }
    const closed = await freePort();
    const down = await cachet(["stats", "--metrics-url", `http://127.0.0.1:${closed}/metrics`]);
    assert.equal(down.code, 69);
    assert.match(
      down.stderr,
      /^cachet: cannot read http:\/\/127\.0\.0\.1:\d+\/metrics: fetch failed: connect ECONNREFUSED/,
    );
    const bad = await cachet(["stats", "--metrics-url", "ftp://x"]);
    assert.equal(bad.code, 64);
    assert.match(bad.stderr, /expected http:\/\/ or https:\/\//);
  });

  it("usage errors exit 64; --help exits 0", async () => {
    const unknown = await cachet(["frobnicate"]);
    assert.equal(unknown.code, 64);
    assert.match(unknown.stderr, /unknown command 'frobnicate'/);
    const missing = await cachet(["get"]);
    assert.equal(missing.code, 64);
    assert.match(missing.stderr, /missing required argument 'key'/);
    const help = await cachet(["--help"]);
    assert.equal(help.code, 0);
    assert.match(help.stdout, /Usage: cachet/);
    for (const command of ["stats", "get", "del", "invalidate", "clear"]) {
      assert.match(help.stdout, new RegExp(`^ {2}${command} `, "m"));
    }
  });
});
