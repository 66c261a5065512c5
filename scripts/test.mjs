#!/usr/bin/env node
// The test command: make sure the servers the tests need are installed, build, and run every
// test file on node's test runner (through tsx). `npm test -- test/cache.test.ts` runs a subset.
import { spawnSync } from "node:child_process";
import { readdirSync, statSync } from "node:fs";
import { join, relative } from "node:path";

const root = new URL("..", import.meta.url).pathname;

/** Debian packages for the servers the tests start, by the binary they provide. */
const servers = [
  { bin: "redis-server", pkg: "redis-server" },
  // The Redis Cluster helper joins its nodes with `redis-cli --cluster create`.
  { bin: "redis-cli", pkg: "redis-tools" },
  { bin: "memcached", pkg: "memcached" },
];

function has(bin) {
  return spawnSync("sh", ["-c", `command -v ${bin}`], { stdio: "ignore" }).status === 0;
}

function ensureServers() {
  const missing = servers.filter((s) => !has(s.bin));
  if (missing.length === 0) return;
  const pkgs = [...new Set(missing.map((s) => s.pkg))];
  const isRoot = process.getuid?.() === 0;
  const sudo = !isRoot && has("sudo") ? ["sudo", "-n"] : [];
  if (has("apt-get") && (isRoot || sudo.length > 0)) {
    console.log(`[test] installing ${pkgs.join(", ")} with apt-get …`);
    const run = (args) =>
      spawnSync(sudo[0] ?? args[0], sudo.length ? [...sudo.slice(1), ...args] : args.slice(1), {
        stdio: "inherit",
        env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" },
      }).status === 0;
    if (run(["apt-get", "update", "-qq"]) && run(["apt-get", "install", "-y", "-qq", ...pkgs])) {
      if (missing.every((s) => has(s.bin))) return;
    }
  }
  console.error(
    `[test] the tests need ${missing.map((s) => s.bin).join(", ")} (real servers, never mocks).\n` +
      `[test] install them, e.g.: sudo apt-get install -y ${pkgs.join(" ")}`,
  );
  process.exit(1);
}

function findTests(dir) {
  const out = [];
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) out.push(...findTests(path));
    else if (name.endsWith(".test.ts")) out.push(relative(root, path));
  }
  return out.sort();
}

ensureServers();
const build = spawnSync("npm", ["run", "--silent", "build"], { cwd: root, stdio: "inherit" });
if (build.status !== 0) process.exit(build.status ?? 1);

const args = process.argv.slice(2);
const files = args.length > 0 ? args : findTests(join(root, "test"));
const result = spawnSync(
  process.execPath,
  ["--import", "tsx", "--test", "--test-reporter=spec", ...files],
  { cwd: root, stdio: "inherit" },
);
process.exit(result.status ?? 1);
