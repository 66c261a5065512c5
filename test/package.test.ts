import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import {
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";

/**
 * The packed tarball as a user gets it, in a fresh directory: `npm pack`, unpacked into an
 * app's node_modules (dependencies linked from this checkout: no registry here), then an app
 * that imports `cachet`, `cachet/fastify` and `cachet/proxy` by name and serves over a real
 * socket. A file missing from `files`, or an export pointing nowhere, fails here.
 */
describe("the packed tarball in a fresh directory", () => {
  it("installs, imports by package name, and caches over a real socket", () => {
    const dir = mkdtempSync(join(tmpdir(), "cachet-tarball-"));
    try {
      const pack = spawnSync(
        "npm",
        ["pack", "--ignore-scripts", "--json", "--pack-destination", dir],
        {
          encoding: "utf8",
        },
      );
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
      /^bench\/(README|RESULTS)\.md$/,
      /^bench\/results\.(json|svg)$/,
      /^bench\/runs\/[^/]+\.md$/,
      /^conformance\/RESULTS\.md$/,
    ];
    const stray = paths.filter((p) => !allowed.some((re) => re.test(p)));
    assert.deepEqual(stray, [], "files outside the published set (source maps, tests, sources)");
    for (const must of ["LICENSE", "README.md", "dist/index.js", "dist/index.d.ts"]) {
      assert.ok(paths.includes(must), `${must} is shipped`);
    }
    const js = paths.filter((p) => p.startsWith("dist/") && p.endsWith(".js"));
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
