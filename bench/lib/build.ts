/** Make sure `dist/` (and `demo/dist/`) are built from the current sources. */
import { spawnSync } from "node:child_process";
import { existsSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";

/** Newest (`pick = Math.max`) or oldest modification time of the files under `dir` ending in one of `exts`. */
function mtimes(
  dir: string,
  exts: readonly string[],
  pick: (a: number, b: number) => number,
): number {
  let result = Number.NaN;
  const walk = (d: string) => {
    for (const name of readdirSync(d)) {
      const path = join(d, name);
      const st = statSync(path);
      if (st.isDirectory()) walk(path);
      else if (exts.some((e) => name.endsWith(e))) {
        result = Number.isNaN(result) ? st.mtimeMs : pick(result, st.mtimeMs);
      }
    }
  };
  if (existsSync(dir)) walk(dir);
  return result;
}

/** Why `dist/` must be rebuilt, or undefined when it is up to date. */
export function staleReason(root: string): string | undefined {
  if (!existsSync(join(root, "dist/index.js"))) return "dist/ is missing";
  if (!existsSync(join(root, "demo/dist/compare.js"))) return "demo/dist/ is missing";
  const newestSrc = mtimes(join(root, "src"), [".ts"], Math.max);
  if (newestSrc > mtimes(join(root, "dist"), [".js"], Math.min)) return "src/ is newer than dist/";
  const newestDemo = mtimes(join(root, "demo"), [".ts"], Math.max);
  const oldestDemoDist = mtimes(join(root, "demo/dist"), [".js"], Math.min);
  if (newestDemo > oldestDemoDist) return "demo/ is newer than demo/dist/";
  return undefined;
}

/** `npm run build` when dist/ is missing or stale; throws when the build fails. */
export function ensureBuilt(root: string, log: (line: string) => void): void {
  const reason = staleReason(root);
  if (!reason) return;
  log(`${reason}: npm run build …`);
  const result = spawnSync("npm", ["run", "--silent", "build"], { cwd: root, stdio: "inherit" });
  if (result.status !== 0) throw new Error(`npm run build failed (${result.status})`);
}
