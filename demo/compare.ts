/**
 * `npm run demo`: the article's before/after comparison, offline. It starts the fake upstream
 * (100 ms latency) and the demo service as child processes on free ports, then times `GET
 * /posts` end to end over real sockets: first with `CACHE_STORE=none` (every request goes to
 * the upstream), then on the memory store (one warm-up miss, then hits).
 *
 * Usage: node demo/dist/compare.js [--requests N]   (N defaults to 50)
 */
import http from "node:http";
import { fileURLToPath } from "node:url";
import { type Child, fakeUpstreamReady, killAll, serverReady, startChild } from "./child.js";
import { median, percentile, table } from "./stats.js";

const UPSTREAM_LATENCY_MS = 100;
const REQUIRED_SPEEDUP = 10;
const here = (file: string) => fileURLToPath(new URL(file, import.meta.url));

interface Phase {
  readonly label: string;
  readonly requests: number;
  readonly warmup: number | undefined;
  readonly timings: number[];
  readonly upstreamCalls: number;
  readonly cacheStatuses: string[];
  readonly body: string;
}

function parseArgs(argv: string[]): { requests: number } {
  let requests = 50;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === "--help" || arg === "-h") {
      console.log("usage: node demo/dist/compare.js [--requests N]   (default 50)");
      process.exit(0);
    }
    const inline = /^--requests=(.*)$/.exec(arg);
    if (arg === "--requests" || inline) {
      const raw = inline ? inline[1]! : argv[++i];
      if (raw === undefined || !/^\d+$/.test(raw) || Number(raw) < 1 || Number(raw) > 100_000) {
        throw new Error(
          `--requests: expected a whole number from 1 to 100000, got ${raw ?? "nothing"}`,
        );
      }
      requests = Number(raw);
    } else {
      throw new Error(`unknown argument ${JSON.stringify(arg)} (usage: --requests N)`);
    }
  }
  return { requests };
}

async function upstreamControl(upstream: Child, body: object): Promise<{ calls: number }> {
  const response = await fetch(`${upstream.url}/__control`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  if (!response.ok) throw new Error(`fake upstream control: ${response.status}`);
  return (await response.json()) as { calls: number };
}

async function upstreamCalls(upstream: Child): Promise<number> {
  const response = await fetch(`${upstream.url}/__stats`);
  return ((await response.json()) as { calls: number }).calls;
}

/**
 * One keep-alive connection, as a browser or `curl` reusing its connection would have: the
 * timings then measure the service, not TCP handshakes or a heavyweight client. No
 * `Accept-Encoding`, like `curl` by default: the body is the upstream's bytes.
 */
const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });

/** One timed `GET`, body included. */
function timedGet(url: string): Promise<{ ms: number; body: string; cacheStatus: string }> {
  return new Promise((resolve, reject) => {
    const start = performance.now();
    const request = http.get(url, { agent }, (response) => {
      const chunks: Buffer[] = [];
      response.on("data", (chunk: Buffer) => chunks.push(chunk));
      response.on("error", reject);
      response.on("end", () => {
        const ms = performance.now() - start;
        const body = Buffer.concat(chunks).toString("utf8");
        if (response.statusCode !== 200) {
          reject(new Error(`GET ${url} answered ${response.statusCode}: ${body.slice(0, 200)}`));
          return;
        }
        const status = response.headers["cache-status"];
        resolve({ ms, body, cacheStatus: typeof status === "string" ? status : "" });
      });
    });
    request.on("error", reject);
    request.setTimeout(30_000, () =>
      request.destroy(new Error(`GET ${url}: no answer within 30 s`)),
    );
  });
}

async function runPhase(
  label: string,
  store: "none" | "memory",
  upstream: Child,
  requests: number,
): Promise<Phase> {
  console.log(`[${label}] starting the service with CACHE_STORE=${store} …`);
  const service = await startChild({
    name: `demo service (CACHE_STORE=${store})`,
    script: here("./server.js"),
    env: {
      PORT: "0",
      HOST: "127.0.0.1",
      UPSTREAM_URL: upstream.url,
      CACHE_STORE: store,
      CACHE_TTL: "60",
      REDIS_URL: undefined,
      LOG_LEVEL: "info",
    },
    ready: serverReady,
  });
  try {
    console.log(
      `[${label}] listening on ${service.url} (ready in ${service.startMs.toFixed(0)} ms)`,
    );
    await upstreamControl(upstream, { reset: true });
    const url = `${service.url}/posts`;
    let warmup: number | undefined;
    let body = "";
    if (store !== "none") {
      const first = await timedGet(url);
      warmup = first.ms;
      body = first.body;
      console.log(
        `[${label}] warm-up request (miss): ${first.ms.toFixed(1)} ms, cache-status: ${first.cacheStatus || "-"}`,
      );
    }
    const timings: number[] = [];
    const cacheStatuses: string[] = [];
    const step = Math.max(1, Math.ceil(requests / 5));
    for (let i = 1; i <= requests; i++) {
      const result = await timedGet(url);
      timings.push(result.ms);
      cacheStatuses.push(result.cacheStatus);
      if (body === "") body = result.body;
      else if (result.body !== body) throw new Error(`[${label}] request ${i}: the body changed`);
      if (i % step === 0 || i === requests) {
        console.log(
          `[${label}] ${String(i).padStart(String(requests).length)}/${requests} requests, median so far ${median(timings).toFixed(1)} ms`,
        );
      }
    }
    const calls = await upstreamCalls(upstream);
    return { label, requests, warmup, timings, upstreamCalls: calls, cacheStatuses, body };
  } finally {
    await service.stop();
  }
}

const fmt = (ms: number) => `${ms < 10 ? ms.toFixed(2) : ms.toFixed(1)} ms`;

async function main(): Promise<number> {
  const { requests } = parseArgs(process.argv.slice(2));
  console.log(
    `cachet demo: GET /posts, ${requests} requests uncached, then ${requests} cached ` +
      `(fake upstream, ${UPSTREAM_LATENCY_MS} ms latency)`,
  );
  const upstream = await startChild({
    name: "fake upstream",
    script: here("./fake-upstream.js"),
    env: { FAKE_UPSTREAM_PORT: "0", FAKE_UPSTREAM_LATENCY: String(UPSTREAM_LATENCY_MS) },
    ready: fakeUpstreamReady,
  });
  try {
    console.log(`[upstream] fake jsonplaceholder listening on ${upstream.url}`);
    const before = await runPhase("before", "none", upstream, requests);
    const after = await runPhase("after", "memory", upstream, requests);

    if (after.body !== before.body) throw new Error("cached and uncached bodies differ");
    const hits = after.cacheStatuses.filter((s) => /;\s*hit\b/.test(s)).length;
    // A request that arrives while the warm-up's response is still being stored shares that
    // response (Cache-Status "collapsed", RFC 9211 §2.6) instead of reading the store.
    const collapsed = after.cacheStatuses.filter((s) => /;\s*collapsed\b/.test(s)).length;
    const speedup = median(before.timings) / median(after.timings);

    console.log("");
    console.log(
      table([
        ["GET /posts", "requests", "median", "p95", "upstream calls"],
        [
          "before (no cache)",
          String(requests),
          fmt(median(before.timings)),
          fmt(percentile(before.timings, 95)),
          String(before.upstreamCalls),
        ],
        [
          "after (memory cache)",
          `1 + ${requests}`,
          fmt(median(after.timings)),
          fmt(percentile(after.timings, 95)),
          String(after.upstreamCalls),
        ],
      ]),
    );
    console.log("");
    console.log(
      `speedup (median): ${speedup.toFixed(0)}x   ` +
        `body: ${Buffer.byteLength(after.body)} bytes, identical   ` +
        `cache hits: ${hits}/${requests}` +
        (collapsed > 0 ? ` (+${collapsed} collapsed onto the warm-up)` : "") +
        (after.warmup === undefined ? "" : `   warm-up miss: ${fmt(after.warmup)}`),
    );
    if (speedup < REQUIRED_SPEEDUP) {
      console.error(
        `cached responses were only ${speedup.toFixed(1)}x faster than uncached (expected at least ${REQUIRED_SPEEDUP}x)`,
      );
      return 1;
    }
    return 0;
  } finally {
    await upstream.stop();
  }
}

for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.once(signal, () => {
    killAll();
    process.exit(130);
  });
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    console.error(
      `cachet demo comparison failed: ${error instanceof Error ? error.message : String(error)}`,
    );
    killAll();
    process.exit(1);
  },
);
