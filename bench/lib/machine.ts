/** Facts about the machine and the software a run measured. */
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { cpus, freemem, loadavg, release, totalmem } from "node:os";
import { join } from "node:path";

export interface Machine {
  readonly date: string;
  readonly cpuModel: string;
  readonly cores: number;
  readonly memoryGiB: number;
  readonly os: string;
  readonly node: string;
  /** 1/5/15-minute load averages when the run started (other work on the machine shows here). */
  readonly loadAtStart: readonly number[];
  readonly freeMemoryGiB: number;
  readonly redis: string;
  /** `memcached -V` (absent in results written before the Memcached target existed). */
  readonly memcached?: string;
  readonly loadGenerator: string;
  /** The git commit of the measured checkout, when it is one (`+dirty` when it has changes). */
  readonly commit: string | undefined;
  /** SHA-256 of src/ (file names and contents), so that runs of the same code can be matched. */
  readonly srcDigest: string;
  /** Installed versions of the libraries measured. */
  readonly versions: Readonly<Record<string, string>>;
}

const PACKAGES = [
  "fastify",
  "express",
  "hono",
  "@hono/node-server",
  "redis",
  "ioredis",
  "memjs",
  "lru-cache",
  "bentocache",
  "cache-manager",
  "keyv",
  "@keyv/redis",
  "async-cache-dedupe",
  "apicache",
  "tinybench",
  "autocannon",
];

function version(root: string, name: string): string {
  try {
    const pkg = JSON.parse(readFileSync(join(root, "node_modules", name, "package.json"), "utf8"));
    return String(pkg.version);
  } catch {
    return "not installed";
  }
}

function srcDigest(root: string): string {
  const hash = createHash("sha256");
  const walk = (dir: string) => {
    for (const name of readdirSync(dir).sort()) {
      const path = join(dir, name);
      if (statSync(path).isDirectory()) walk(path);
      else {
        hash.update(path.slice(root.length));
        hash.update(readFileSync(path));
      }
    }
  };
  walk(join(root, "src"));
  return hash.digest("hex").slice(0, 16);
}

function gitCommit(root: string): string | undefined {
  if (!existsSync(join(root, ".git"))) return undefined;
  const head = spawnSync("git", ["rev-parse", "--short", "HEAD"], { cwd: root, encoding: "utf8" });
  if (head.status !== 0) return undefined;
  const dirty = spawnSync("git", ["status", "--porcelain", "src"], { cwd: root, encoding: "utf8" });
  return `${head.stdout.trim()}${dirty.stdout.trim() ? "+dirty" : ""}`;
}

export function machine(root: string, loadGenerator: string): Machine {
  const list = cpus();
  const redis = spawnSync("redis-server", ["--version"], { encoding: "utf8" });
  const memcached = spawnSync("memcached", ["-V"], { encoding: "utf8" });
  return {
    date: new Date().toISOString(),
    cpuModel: list[0]?.model ?? "unknown",
    cores: list.length,
    memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    os: `${process.platform} ${release()}`,
    node: process.version,
    loadAtStart: loadavg().map((l) => Math.round(l * 100) / 100),
    freeMemoryGiB: Math.round((freemem() / 2 ** 30) * 10) / 10,
    redis: (redis.stdout ?? "").trim().split(" ").slice(0, 3).join(" ") || "not found",
    memcached: (memcached.stdout ?? "").trim() || "not found",
    loadGenerator,
    commit: gitCommit(root),
    srcDigest: srcDigest(root),
    versions: Object.fromEntries(PACKAGES.map((p) => [p, version(root, p)])),
  };
}
