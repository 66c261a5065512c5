/**
 * `npm start`: the demo service, configured from the environment (see docs/demo.md).
 * Prints one JSON log line with `url` and `store` once it accepts connections.
 */
import { buildApp } from "./app.js";
import { ConfigError, formatDuration, loadConfig, redact } from "./config.js";

const SHUTDOWN_GRACE_MS = 10_000;

async function main(): Promise<void> {
  const config = loadConfig();
  const app = await buildApp(config);

  let closing = false;
  const shutdown = (signal: NodeJS.Signals) => {
    if (closing) {
      // A second signal means "now".
      app.log.warn(`${signal} again: exiting without waiting`);
      process.exit(1);
    }
    closing = true;
    app.log.info(`${signal}: closing (in-flight requests finish first)`);
    const force = setTimeout(() => {
      app.log.error(`still closing after ${SHUTDOWN_GRACE_MS} ms: exiting`);
      process.exit(1);
    }, SHUTDOWN_GRACE_MS);
    force.unref();
    // Fastify ends the connections that are idle when closing starts; a keep-alive connection
    // whose request is still in flight would hold the close open until its keep-alive timeout.
    // End such connections as soon as their response is out (no cost before shutdown).
    const idle = setInterval(() => app.server.closeIdleConnections(), 50);
    idle.unref();
    app.close().then(
      () => process.exit(0),
      (error: unknown) => {
        app.log.error({ err: error }, "error while closing");
        process.exit(1);
      },
    );
  };
  process.on("SIGINT", shutdown);
  process.on("SIGTERM", shutdown);

  await app.listen({ port: config.port, host: config.host });
  const address = app.server.address();
  const port = typeof address === "object" && address ? address.port : config.port;
  const host = config.host.includes(":") ? `[${config.host}]` : config.host;
  const url = `http://${host}:${port}`;
  app.log.info(
    {
      url,
      store: config.cacheStore,
      ttl: config.cacheTtlMs,
      staleWhileRevalidate: config.cacheStaleWhileRevalidateMs,
      staleIfError: config.cacheStaleIfErrorMs,
      lease: config.cacheLease,
      ...(config.cacheStore === "tiered" ? { l1MaxTtl: config.cacheL1MaxTtlMs } : {}),
      admin: config.adminToken !== undefined,
      upstream: config.upstreamUrl,
      ...(config.redisUrl ? { redis: redact(config.redisUrl) } : {}),
      ...(config.memcachedServers
        ? { memcached: config.memcachedServers.replace(/[^,@]*@/g, "***@") }
        : {}),
      ...(config.dynamodb
        ? {
            dynamodb: { table: config.dynamodb.table, endpoint: config.dynamodb.endpoint ?? "aws" },
          }
        : {}),
    },
    `cachet demo listening on ${url} (store: ${config.cacheStore}` +
      `${config.cacheStore === "none" ? "" : `, ttl ${formatDuration(config.cacheTtlMs)}`}); ` +
      `docs at ${url}/docs`,
  );
}

main().catch((error: unknown) => {
  // A configuration mistake is the operator's to fix: say what, without a stack trace.
  if (error instanceof ConfigError) {
    console.error(`cachet demo: ${error.message}`);
    process.exit(78); // EX_CONFIG
  }
  console.error(
    `cachet demo: failed to start: ${error instanceof Error ? error.message : String(error)}`,
  );
  process.exit(1);
});
