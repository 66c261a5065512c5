import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";

/**
 * Every `exports` entry of package.json resolves to a built module (the test command builds
 * first), and the root entry never imports an optional peer dependency.
 */
const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const pkg = JSON.parse(readFileSync(join(root, "package.json"), "utf8")) as {
  name: string;
  bin: Record<string, string>;
  exports: Record<string, string | { types: string; default: string }>;
  peerDependencies: Record<string, string>;
};

describe("package exports", () => {
  for (const [subpath, target] of Object.entries(pkg.exports)) {
    if (typeof target === "string") continue;
    const specifier = subpath === "." ? pkg.name : `${pkg.name}/${subpath.slice(2)}`;
    it(`${specifier} resolves, with its types`, async () => {
      const mod = await import(specifier);
      assert.ok(Object.keys(mod).length > 0, `${specifier} exports something`);
      assert.doesNotThrow(() => readFileSync(join(root, target.types)), `${target.types} exists`);
    });
  }

  for (const [name, file] of Object.entries(pkg.bin)) {
    it(`the ${name} command runs (${file})`, () => {
      const source = readFileSync(join(root, file), "utf8");
      assert.ok(source.startsWith("#!/usr/bin/env node"), "starts with a node shebang");
      const help = spawnSync(process.execPath, [join(root, file), "--help"], { encoding: "utf8" });
      assert.equal(help.status, 0, help.stderr);
      assert.match(help.stdout, /Usage: cachet/);
    });
  }

  it("the root entry imports no optional peer dependency", () => {
    const peers = new Set(Object.keys(pkg.peerDependencies));
    const seen = new Set<string>();
    const found: string[] = [];
    const visit = (file: string) => {
      if (seen.has(file)) return;
      seen.add(file);
      const source = readFileSync(file, "utf8");
      for (const m of source.matchAll(
        /(?:^|\n)\s*(?:import|export)[^'"]*?from\s*["']([^"']+)["']|import\(\s*["']([^"']+)["']\s*\)/g,
      )) {
        const spec = (m[1] ?? m[2])!;
        if (spec.startsWith(".")) visit(resolve(dirname(file), spec));
        else {
          const name = spec.startsWith("@")
            ? spec.split("/").slice(0, 2).join("/")
            : spec.split("/")[0]!;
          if (peers.has(name)) found.push(`${file.slice(root.length + 1)} imports ${spec}`);
        }
      }
    };
    visit(join(root, "dist/index.js"));
    assert.ok(seen.size > 5, "walked the module graph");
    assert.deepEqual(found, []);
  });
});

describe("the public Cache class", () => {
  it("shows only the public API: no internal methods, no @internal in its types", async () => {
    const { Cache } = await import("../src/cache.js");
    const members = Object.getOwnPropertyNames(Cache.prototype)
      .filter((name) => name !== "constructor")
      .sort();
    assert.deepEqual(members, [
      "cached",
      "clear",
      "close",
      "delete",
      "deleteMany",
      "get",
      "getMany",
      "getOrSet",
      "has",
      "health",
      "invalidateTags",
      "namespace",
      "namespacePath",
      "off",
      "on",
      "ready",
      "set",
      "setMany",
      "storeState",
      "ttl",
      "wrap",
    ]);
    const types = readFileSync(join(root, "dist/cache.d.ts"), "utf8");
    assert.doesNotMatch(types, /@internal/);
  });

  it("cannot be constructed directly (createCache makes caches)", async () => {
    const { Cache } = await import("../src/cache.js");
    assert.throws(
      () => new (Cache as unknown as new (engine: unknown) => unknown)({}),
      /createCache/,
    );
  });
});
