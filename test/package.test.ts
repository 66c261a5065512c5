import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
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
