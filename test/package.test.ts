import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import {
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { type RedisServer, startRedis } from "./helpers/redis.js";

/**
 * The packed tarball as a user gets it, in a fresh directory: `npm pack`, unpacked into an
 * app's node_modules (dependencies linked from this checkout: no registry here), then an app
 * that imports `cachet`, `cachet/fastify` and `cachet/proxy` by name and serves over a real
 * socket. A file missing from `files`, or an export pointing nowhere, fails here.
 */
/**
 * `npm pack` this checkout into `dir` and unpack it as `dir/node_modules/cachet`, the other
 * dependencies linked from this checkout (no registry here).
 */
function installTarball(dir: string): void {
  const pack = spawnSync("npm", ["pack", "--ignore-scripts", "--json", "--pack-destination", dir], {
    encoding: "utf8",
  });
  assert.equal(pack.status, 0, pack.stderr);
  const [{ filename }] = JSON.parse(pack.stdout) as [{ filename: string }];
  const modules = join(dir, "node_modules");
  mkdirSync(join(modules, "cachet"), { recursive: true });
  const untar = spawnSync(
    "tar",
    ["-xzf", join(dir, filename), "-C", join(modules, "cachet"), "--strip-components=1"],
    { encoding: "utf8" },
  );
  assert.equal(untar.status, 0, untar.stderr);
  for (const name of readdirSync("node_modules")) {
    if (name === ".bin" || name === "cachet") continue;
    symlinkSync(join(process.cwd(), "node_modules", name), join(modules, name));
  }
}

describe("the packed tarball in a fresh directory", () => {
  it("installs, imports by package name, and caches over a real socket", () => {
    const dir = mkdtempSync(join(tmpdir(), "cachet-tarball-"));
    try {
      installTarball(dir);
      writeFileSync(join(dir, "package.json"), '{ "type": "module" }');
      writeFileSync(
        join(dir, "app.mjs"),
        `import { createServer } from "node:http";
import { createCache } from "cachet";
import { cachetFastify } from "cachet/fastify";
import { startProxy } from "cachet/proxy";
let calls = 0;
const origin = createServer((req, res) => {
  calls++;
  res.writeHead(200, { "cache-control": "max-age=60", "content-type": "text/plain" });
  res.end("hello " + req.url);
});
await new Promise((r) => origin.listen(0, "127.0.0.1", r));
const proxy = await startProxy({ upstream: "http://127.0.0.1:" + origin.address().port, port: 0, cache: createCache() });
const a = await fetch(proxy.url + "/x");
const b = await fetch(proxy.url + "/x");
console.log(JSON.stringify({
  first: await a.text(),
  second: await b.text(),
  status: b.headers.get("cache-status"),
  calls,
  plugin: typeof cachetFastify,
}));
await proxy.close();
origin.close();
`,
      );
      const run = spawnSync(process.execPath, [join(dir, "app.mjs")], {
        encoding: "utf8",
        cwd: dir,
        timeout: 30_000,
      });
      assert.equal(run.status, 0, run.stderr);
      const out = JSON.parse(run.stdout) as Record<string, unknown>;
      assert.equal(out.first, "hello /x");
      assert.equal(out.second, "hello /x");
      assert.match(String(out.status), /^cachet; hit/);
      assert.equal(out.calls, 1);
      assert.equal(out.plugin, "function");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("npm install of the tarball", () => {
  it("installs with npm in a fresh directory and prints no warning (no install script in the tree)", () => {
    const dir = mkdtempSync(join(tmpdir(), "cachet-npm-i-"));
    try {
      const pack = spawnSync(
        "npm",
        ["pack", "--ignore-scripts", "--json", "--pack-destination", dir],
        { encoding: "utf8" },
      );
      assert.equal(pack.status, 0, pack.stderr);
      const [{ filename }] = JSON.parse(pack.stdout) as [{ filename: string }];
      writeFileSync(join(dir, "package.json"), '{ "name": "app", "private": true }');
      // --offline: the dependencies come from npm's cache, which `npm ci` filled (no network
      // in tests); a missing one fails with ENOTCACHED rather than passing unchecked.
      const install = spawnSync(
        "npm",
        ["install", "--offline", "--no-audit", "--no-fund", `./${filename}`],
        { encoding: "utf8", cwd: dir, timeout: 120_000 },
      );
      assert.equal(install.status, 0, install.stderr);
      const printed = `${install.stdout}\n${install.stderr}`;
      const warnings = printed.split("\n").filter((line) => /\bwarn/i.test(line));
      assert.deepEqual(warnings, [], printed);
      // Nothing native or with an install script came along (msgpackr is bundled, without
      // its optional add-on).
      const installed = readdirSync(join(dir, "node_modules")).sort();
      assert.ok(installed.includes("cachet"));
      assert.ok(!installed.includes("msgpackr-extract"), installed.join(", "));
      assert.ok(!installed.includes("msgpackr"), installed.join(", "));
      // The bundled codec works in the installed package: a structured value round-trips.
      const run = spawnSync(
        process.execPath,
        [
          "--input-type=module",
          "-e",
          `import { msgpackSerializer as s } from "cachet";
const v = { d: new Date(0), m: new Map([[1, new Set([2n])]]), u: undefined, b: Buffer.from("x") };
const back = s.deserialize(s.serialize(v));
console.log(JSON.stringify([back.d instanceof Date, back.m.get(1).has(2n), "u" in back, Buffer.isBuffer(back.b)]));`,
        ],
        { encoding: "utf8", cwd: dir },
      );
      assert.equal(run.status, 0, run.stderr);
      assert.equal(run.stdout.trim(), "[true,true,true,true]");
      // `cachet proxy` without its optional peer (fastify, not installed here) says what to
      // install, not a module path.
      const proxy = spawnSync(
        join(dir, "node_modules", ".bin", "cachet"),
        ["proxy", "--upstream", "http://127.0.0.1:9"],
        { encoding: "utf8", cwd: dir, timeout: 30_000 },
      );
      assert.notEqual(proxy.status, 0);
      assert.match(proxy.stderr, /cachet proxy needs the `fastify` package: npm install fastify/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("what the tarball holds", () => {
  const pack = spawnSync("npm", ["pack", "--dry-run", "--json", "--ignore-scripts"], {
    encoding: "utf8",
  });
  const [{ files }] = JSON.parse(pack.stdout) as [{ files: Array<{ path: string }> }];
  const paths = files.map((f) => f.path).sort();
  const pkg = JSON.parse(readFileSync("package.json", "utf8")) as Record<string, unknown>;

  it("holds the build, the docs, the measurements they cite, README and LICENSE, and nothing else", () => {
    const allowed = [
      /^package\.json$/,
      /^README\.md$/,
      /^LICENSE$/,
      /^dist\/.+\.(js|d\.ts)$/,
      /^docs\/[^/]+\.(md|json)$/,
      /^bench\/(README|RESULTS|WORKING-SET)\.md$/,
      /^bench\/results\.(json|svg)$/,
      /^bench\/runs\/[^/]+\.(md|svg)$/,
      /^conformance\/RESULTS\.md$/,
    ];
    const stray = paths.filter((p) => !allowed.some((re) => re.test(p)));
    assert.deepEqual(stray, [], "files outside the published set (source maps, tests, sources)");
    for (const must of ["LICENSE", "README.md", "dist/index.js", "dist/index.d.ts"]) {
      assert.ok(paths.includes(must), `${must} is shipped`);
    }
    // dist/vendor/ holds a bundled dependency (msgpackr), internal: no public types.
    const js = paths.filter(
      (p) => p.startsWith("dist/") && !p.startsWith("dist/vendor/") && p.endsWith(".js"),
    );
    const missingTypes = js.filter((p) => !paths.includes(p.replace(/\.js$/, ".d.ts")));
    assert.deepEqual(missingTypes, [], "every module ships its types");
  });

  it("runs no install script, and states its license", () => {
    const scripts = (pkg.scripts ?? {}) as Record<string, string>;
    for (const hook of ["preinstall", "install", "postinstall", "prepare"]) {
      assert.equal(scripts[hook], undefined, `no ${hook} script (npm flags it on install)`);
    }
    assert.equal(pkg.license, "MIT");
    assert.match(readFileSync("LICENSE", "utf8"), /^MIT License/);
    assert.ok(Array.isArray(pkg.keywords) && pkg.keywords.length > 0, "keywords");
  });
});

/** The README's "In your app" block, as written. */
function readmeApp(): string {
  const readme = readFileSync("README.md", "utf8");
  const match = /```ts\n(\/\/ app\.ts:[\s\S]*?)```/.exec(readme);
  assert.ok(match, "README has the app.ts block");
  return match[1]!;
}

/** Run the README app with `env`, wait for its port, and return it with the process. */
async function startReadmeApp(dir: string, env: Record<string, string>) {
  const child = spawn(process.execPath, ["--import", "tsx", "app.ts"], {
    cwd: dir,
    env: { ...process.env, PORT: "0", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  child.stderr.on("data", (chunk) => {
    output += chunk;
  });
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`app did not listen:\n${output}`)), 20_000);
    child.stdout.on("data", (chunk) => {
      output += chunk;
      const found = /Server listening at (http:\/\/127\.0\.0\.1:\d+)/.exec(output);
      if (found) {
        clearTimeout(timer);
        resolve(found[1]!);
      }
    });
    child.on("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`app exited (${code}):\n${output}`));
    });
  });
  return { child, url, output: () => output };
}

describe("the README's 'In your app' quick start, against the packed tarball", {
  timeout: 120_000,
}, () => {
  let dir: string;
  let upstream: Server;
  let upstreamUrl: string;
  let upstreamCalls = 0;
  let redis: RedisServer;
  const posts = [{ id: 1, title: "hello" }];

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "cachet-readme-app-"));
    installTarball(dir);
    writeFileSync(join(dir, "package.json"), '{ "type": "module" }');
    writeFileSync(join(dir, "app.ts"), readmeApp());
    upstream = createServer((req, res) => {
      upstreamCalls++;
      res.writeHead(req.url === "/posts" ? 200 : 404, { "content-type": "application/json" });
      res.end(JSON.stringify(posts));
    });
    await new Promise<void>((resolve) => upstream.listen(0, "127.0.0.1", resolve));
    upstreamUrl = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`;
    redis = await startRedis();
  });
  after(async () => {
    upstream?.close();
    await redis?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  for (const mode of ["in process", "on Redis"] as const) {
    it(`serves /posts, caches it, and exits on SIGTERM (${mode})`, async () => {
      const env: Record<string, string> = { API_URL: upstreamUrl };
      if (mode === "on Redis") env.REDIS_URL = redis.url;
      const before = upstreamCalls;
      const app = await startReadmeApp(dir, env);
      const exited = new Promise<number | null>((resolve) => app.child.on("exit", resolve));
      try {
        const first = await fetch(`${app.url}/posts`);
        assert.equal(first.status, 200);
        assert.deepEqual(await first.json(), posts);
        const second = await fetch(`${app.url}/posts`);
        assert.match(second.headers.get("cache-status") ?? "", /^cachet; hit/);
        assert.deepEqual(await second.json(), posts);
        assert.equal(upstreamCalls - before, 1, "the upstream was called once");
      } finally {
        app.child.kill("SIGTERM");
      }
      const timer = setTimeout(() => app.child.kill("SIGKILL"), 10_000);
      const code = await exited;
      clearTimeout(timer);
      assert.equal(code, 0, `the process exits by itself after app.close():\n${app.output()}`);
    });
  }
});
