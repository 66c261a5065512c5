/** A small HTTP client for the figures wrk cannot give: timed single requests and bursts. */
import { Agent, request } from "node:http";

export interface Timed {
  /** Status, or 0 when the request failed (connection error, timeout). */
  readonly status: number;
  readonly bytes: number;
  /** When it started and ended, ms on the `performance.now()` clock. */
  readonly start: number;
  readonly end: number;
  readonly ms: number;
  readonly error?: string;
  readonly headers: Record<string, string | string[] | undefined>;
}

/** One GET, timed from the call to the last byte. Never rejects. */
export function timedGet(url: string, agent: Agent | false, timeoutMs = 10_000): Promise<Timed> {
  const start = performance.now();
  return new Promise((resolve) => {
    let settled = false;
    const done = (status: number, bytes: number, headers: Timed["headers"], error?: string) => {
      if (settled) return;
      settled = true;
      const end = performance.now();
      resolve({ status, bytes, start, end, ms: end - start, headers, ...(error ? { error } : {}) });
    };
    const req = request(url, { agent, timeout: timeoutMs }, (res) => {
      let bytes = 0;
      res.on("data", (chunk: Buffer) => {
        bytes += chunk.length;
      });
      res.once("end", () => done(res.statusCode ?? 0, bytes, res.headers));
      res.once("error", (e) => done(0, bytes, res.headers, e.message));
    });
    req.once("timeout", () => {
      req.destroy(new Error(`no answer within ${timeoutMs} ms`));
    });
    req.once("error", (e) => done(0, 0, {}, e.message));
    req.end();
  });
}

/** `count` concurrent GETs of `url`, each on its own connection. */
export async function burst(url: string, count: number, timeoutMs = 30_000): Promise<Timed[]> {
  const agent = new Agent({ keepAlive: false, maxSockets: Number.POSITIVE_INFINITY });
  try {
    return await Promise.all(Array.from({ length: count }, () => timedGet(url, agent, timeoutMs)));
  } finally {
    agent.destroy();
  }
}

/**
 * Closed-loop load: `connections` keep-alive loops of GETs for `seconds`; every request's
 * start, end and outcome are kept (for the Redis-kill figures, where the timing of each request
 * matters more than the throughput). `onTick` runs every 50 ms with the elapsed ms.
 */
export async function loop(
  url: string,
  connections: number,
  seconds: number,
  timeoutMs: number,
  onTick?: (elapsedMs: number) => void | Promise<void>,
): Promise<{ records: Timed[]; t0: number }> {
  const agent = new Agent({ keepAlive: true, maxSockets: connections });
  const t0 = performance.now();
  const deadline = t0 + seconds * 1000;
  const records: Timed[] = [];
  const ticker = onTick
    ? setInterval(() => {
        void onTick(performance.now() - t0);
      }, 50)
    : undefined;
  const worker = async () => {
    while (performance.now() < deadline) records.push(await timedGet(url, agent, timeoutMs));
  };
  try {
    await Promise.all(Array.from({ length: connections }, worker));
  } finally {
    if (ticker) clearInterval(ticker);
    agent.destroy();
  }
  return { records, t0 };
}
