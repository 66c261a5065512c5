import { mkdirSync, readdirSync, symlinkSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

/** This repository's root. */
export const repositoryRoot = resolve(dirname(fileURLToPath(import.meta.url)), "../..");

/**
 * Make `dir` a consumer's project: its package.json (`module`: an ESM project; otherwise
 * commonjs, as `nest new` makes) and a node_modules holding cachet as a symlink to this
 * repository (so its package.json exports and the BUILT dist/ are what resolves) and this
 * repository's dependencies, linked (no registry in tests).
 */
export function consumerProject(dir: string, kind: "module" | "commonjs"): void {
  const manifest = {
    name: "consumer",
    private: true,
    ...(kind === "module" ? { type: "module" } : {}),
  };
  writeFileSync(join(dir, "package.json"), JSON.stringify(manifest));
  const modules = join(dir, "node_modules");
  mkdirSync(modules);
  for (const entry of readdirSync(join(repositoryRoot, "node_modules"))) {
    if (entry.startsWith(".") || entry === "cachet") continue;
    symlinkSync(join(repositoryRoot, "node_modules", entry), join(modules, entry));
  }
  symlinkSync(repositoryRoot, join(modules, "cachet"));
}
