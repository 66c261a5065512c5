/**
 * One target in its own process: `node --import tsx bench/targets/child.ts` with the target's
 * configuration in `BENCH_CONFIG` (JSON) and an IPC channel. It starts the target on a free
 * port, says `{ type: "ready", port }`, and answers `{ type: "usage" }` with its CPU time and
 * memory (`process.cpuUsage()`, `process.memoryUsage()`, so the figures cover every thread of
 * this process and nothing else). `{ type: "profile-start" }` / `{ type: "profile-stop", file }`
 * record a V8 CPU profile of the main thread (the same as `--cpu-prof`, but only for the window
 * under load). SIGTERM closes it gracefully; losing the parent ends it.
 */
import { writeFileSync } from "node:fs";
import { Session } from "node:inspector/promises";
import type { RunningTarget, TargetConfig } from "./common.js";
import { targetInfo } from "./registry.js";

export interface UsageReply {
  readonly type: "usage";
  readonly id: number;
  /** Microseconds of CPU since the process started. */
  readonly cpu: { readonly user: number; readonly system: number };
  readonly memory: NodeJS.MemoryUsage;
  readonly stats: Record<string, number>;
}

const MODULES = {
  basic: () => import("./basic.js"),
  cachet: () => import("./cachet.js"),
  bentocache: () => import("./bentocache.js"),
  "cache-manager": () => import("./cache-manager.js"),
  acd: () => import("./acd.js"),
  apicache: () => import("./apicache.js"),
  article: () => import("./article.js"),
} as const;

async function main(): Promise<void> {
  const raw = process.env.BENCH_CONFIG;
  if (!raw || !process.send) throw new Error("run by bench/run.ts (BENCH_CONFIG and IPC needed)");
  const config = JSON.parse(raw) as TargetConfig;
  const info = targetInfo(config.name);
  const mod = await MODULES[info.module]();
  const target: RunningTarget = await mod.start(config);

  let session: Session | undefined;
  process.on("message", (message: { type?: string; id?: number; file?: string }) => {
    if (message?.type === "profile-start") {
      session = new Session();
      session.connect();
      void session
        .post("Profiler.enable")
        .then(() => session!.post("Profiler.setSamplingInterval", { interval: 100 }))
        .then(() => session!.post("Profiler.start"))
        .then(() => process.send?.({ type: "profile-started" }));
    } else if (message?.type === "profile-stop" && session && message.file) {
      const file = message.file;
      void session.post("Profiler.stop").then(({ profile }) => {
        writeFileSync(file, JSON.stringify(profile));
        session?.disconnect();
        session = undefined;
        process.send?.({ type: "profile-stopped", file });
      });
    } else if (message?.type === "usage") {
      const reply: UsageReply = {
        type: "usage",
        id: message.id ?? 0,
        cpu: process.cpuUsage(),
        memory: process.memoryUsage(),
        stats: target.stats?.() ?? {},
      };
      process.send?.(reply);
    }
  });
  let closing = false;
  const stop = () => {
    if (closing) return;
    closing = true;
    const force = setTimeout(() => process.exit(0), 3000);
    force.unref();
    target.close().then(
      () => process.exit(0),
      () => process.exit(0),
    );
  };
  process.once("SIGTERM", stop);
  process.once("SIGINT", stop);
  process.once("disconnect", () => process.exit(0));
  process.send({ type: "ready", port: target.port });
}

main().catch((error: unknown) => {
  console.error(`bench target failed to start: ${error instanceof Error ? error.stack : error}`);
  process.exit(1);
});
