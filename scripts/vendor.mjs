#!/usr/bin/env node
// Part of `npm run build`: replace dist/vendor/msgpackr.js (a re-export of the devDependency)
// with msgpackr's portable entry (pure JavaScript, no native add-on) bundled into one ES module,
// under msgpackr's license. See src/vendor/msgpackr.ts.
import { existsSync, readFileSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { build } from "esbuild";

const root = new URL("..", import.meta.url).pathname;
const require = createRequire(join(root, "package.json"));
// The package's directory: up from its resolved entry to its package.json.
let dir = dirname(require.resolve("msgpackr"));
while (!existsSync(join(dir, "package.json")) || !existsSync(join(dir, "index.js"))) {
  dir = dirname(dir);
}
const { version } = JSON.parse(readFileSync(join(dir, "package.json"), "utf8"));
const license = readFileSync(join(dir, "LICENSE"), "utf8").trim();
await build({
  entryPoints: [join(dir, "index.js")],
  bundle: true,
  format: "esm",
  platform: "node",
  target: "node20",
  outfile: join(root, "dist/vendor/msgpackr.js"),
  legalComments: "inline",
  banner: {
    js: `/*! msgpackr ${version}, bundled by cachet (portable entry, no native add-on).\n${license}\n*/`,
  },
  logLevel: "warning",
});
// Its declarations would name the devDependency; nothing public refers to this module.
rmSync(join(root, "dist/vendor/msgpackr.d.ts"), { force: true });
