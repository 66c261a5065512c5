/**
 * A target process of bench/hitpath-workset.ts: bench/targets/child.ts's protocol (ready,
 * usage, profile-start/stop over IPC), with the cachet targets built here so that the store
 * timeout can be raised (`HITPATH_STORE_TIMEOUT`, ms): on a machine shared with other work, a
 * 50 ms timeout turns Redis hits into misses (the stall rule and the breaker), and a hit-path
 * measurement then measures the origin. Everything else is bench/targets/cachet.ts's setup.
 */
import { writeFileSync } from "node:fs";
import { Session } from "node:inspector/promises";
import type { RunningTarget, TargetConfig } from "./targets/common.js";
import { fetchPosts, listenFastify, searchOf } from "./targets/common.js";

async function startCachet(config: TargetConfig): Promise<RunningTarget> {
  const { createCache } = await import("cachet");
  const { cachetFastify } = await import("cachet/fastify");
  const ttl = config.ttlMs;
  const storeTimeout = Number(process.env.HITPATH_STORE_TIMEOUT ?? "50");
  let cache: import("cachet").Cache;
  if (config.name === "cachet-redis" || config.name === "cachet-tiered") {
    const { redisStore } = await import("cachet/redis");
    cache = createCache({
      store: redisStore({ url: config.redisUrl, prefix: `cachet:${config.name}:` }),
      l1: config.name === "cachet-tiered",
      lease: true,
      ttl,
      storeTimeout,
      l1MaxTtl: ttl,
    });
  } else {
    cache = createCache({ ttl });
  }
  const Fastify = (await import("fastify")).default;
  const app = Fastify({ logger: false });
  await app.register(cachetFastify, { cache });
  app.get("/posts", { config: { cache: { ttl } } }, async (request) =>
    fetchPosts(config.upstreamUrl, searchOf(request.url)),
  );
  app.addHook("onClose", async () => {
    await cache.close();
  });
  return listenFastify(app);
}

async function main(): Promise<void> {
  const config = JSON.parse(process.env.BENCH_CONFIG!) as TargetConfig;
  const target = config.name.startsWith("cachet-")
    ? await startCachet(config)
    : await (await import("./targets/basic.js")).start(config);
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
      process.send?.({
        type: "usage",
        id: message.id ?? 0,
        cpu: process.cpuUsage(),
        memory: process.memoryUsage(),
        stats: {},
      });
    }
  });
  const stop = () => {
    setTimeout(() => process.exit(0), 3000).unref();
    target.close().then(
      () => process.exit(0),
      () => process.exit(0),
    );
  };
  process.once("SIGTERM", stop);
  process.once("disconnect", () => process.exit(0));
  process.send!({ type: "ready", port: target.port });
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
