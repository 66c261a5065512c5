#!/usr/bin/env node
// Build (library and demo) unless the build is newer than every source file: `npm run demo`
// and `npm start` work right after `npm ci`, without an install script in the package.
import { spawnSync } from "node:child_process";
import { existsSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";

const root = new URL("..", import.meta.url).pathname;

function newest(dir) {
  let latest = 0;
  for (const name of readdirSync(dir)) {
    if (name === "dist" || name === "node_modules") continue;
    const path = join(dir, name);
    const stat = statSync(path);
    latest = Math.max(latest, stat.isDirectory() ? newest(path) : stat.mtimeMs);
  }
  return latest;
}

const outputs = ["dist/index.js", "demo/dist/compare.js", "demo/dist/server.js"].map((f) =>
  join(root, f),
);
const built = outputs.every(existsSync) ? Math.min(...outputs.map((f) => statSync(f).mtimeMs)) : 0;
const sources = Math.max(newest(join(root, "src")), newest(join(root, "demo")));
if (built < sources) {
  const run = spawnSync("npm", ["run", "--silent", "build"], { cwd: root, stdio: "inherit" });
  if (run.status !== 0) process.exit(run.status ?? 1);
}
