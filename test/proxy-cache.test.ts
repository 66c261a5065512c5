import assert from "node:assert/strict";
import { once } from "node:events";
import type { IncomingMessage, Server, ServerResponse } from "node:http";
import { createServer, request as httpRequest } from "node:http";
import type { AddressInfo } from "node:net";
import { describe, it } from "node:test";
import { createCache } from "../src/cache.js";
import { startProxy } from "../src/proxy/index.js";
import { manualClock } from "./http/suite.js";

/**
 * `cachet proxy` over real sockets, in front of a small local origin (forwarding itself is
 * covered by proxy.test.ts): nothing an upstream sends takes the proxy down, a stale response
 * is revalidated, stored responses answer ranges.
 */

type Handler = (req: IncomingMessage, res: ServerResponse, body: Buffer) => void;

async function origin(
  handler: Handler,
): Promise<{ url: string; server: Server; seen: IncomingMessage[] }> {
  const seen: IncomingMessage[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      seen.push(req);
      handler(req, res, Buffer.concat(chunks));
    });
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server, seen };
}

interface Reply {
  status: number;
  headers: IncomingMessage["headers"];
  body: string;
  interim: number[];
}

function send(
  url: string,
  options: { method?: string; headers?: Record<string, string>; body?: string } = {},
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const interim: number[] = [];
    const req = httpRequest(
      url,
      { method: options.method ?? "GET", headers: options.headers ?? {}, agent: false },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () =>
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body: Buffer.concat(chunks).toString("utf8"),
            interim,
          }),
        );
      },
    );
    req.on("information", (info) => interim.push(info.statusCode));
    req.on("error", reject);
    req.end(options.body);
  });
}

async function proxyFor(
  upstream: string,
  extra: Parameters<typeof startProxy>[0] extends infer O ? Partial<O> : never = {},
) {
  return startProxy({ upstream, port: 0, ...extra });
}

describe("cachet proxy: what upstreams send, revalidation and ranges", () => {
  it("answers 502 when the upstream is down or sends what HTTP cannot relay, and stays up", async (t) => {
    const o = await origin((req, res) => {
      if (req.url === "/bad-status") {
        // A raw status line no server framework would send.
        res.socket?.end("HTTP/1.1 999 Whatever\r\ncontent-length: 0\r\n\r\n");
        return;
      }
      res.end("ok");
    });
    const proxy = await proxyFor(o.url);
    t.after(async () => {
      await proxy.close();
      o.server.close();
    });
    const bad = await send(`${proxy.url}/bad-status`);
    assert.equal(bad.status, 502);
    assert.match(bad.body, /invalid status \(999\)/);
    assert.equal((await send(`${proxy.url}/fine`)).body, "ok", "the proxy survived");
    o.server.close();
    o.server.closeAllConnections();
    const down = await send(`${proxy.url}/fine2`);
    assert.equal(down.status, 502);
    assert.match(down.body, /could not be reached/);
  });

  it("revalidates a stale response with the origin's ETag: a 304 moves no body", async (t) => {
    let bodies = 0;
    const clock = manualClock(Date.now());
    const o = await origin((req, res) => {
      // Dated by the test's clock, which the cache runs on.
      const date = new Date(clock.now()).toUTCString();
      if (req.headers["if-none-match"] === '"v1"') {
        res.writeHead(304, { etag: '"v1"', "cache-control": "max-age=10", date });
        res.end();
        return;
      }
      bodies++;
      res.writeHead(200, {
        etag: '"v1"',
        "cache-control": "max-age=10",
        "content-type": "text/plain",
        date,
      });
      res.end("the same data");
    });
    const proxy = await proxyFor(o.url, { cache: createCache({ clock }) });
    t.after(async () => {
      await proxy.close();
      o.server.close();
    });
    assert.equal((await send(`${proxy.url}/doc`)).body, "the same data");
    clock.advance(11_000);
    const refreshed = await send(`${proxy.url}/doc`);
    assert.equal(refreshed.status, 200);
    assert.equal(refreshed.body, "the same data");
    assert.equal(o.seen.at(-1)?.headers["if-none-match"], '"v1"');
    assert.equal(bodies, 1, "the origin sent the body once");
    const hit = await send(`${proxy.url}/doc`);
    assert.match(String(hit.headers["cache-status"]), /^cachet; hit; ttl=(9|10)$/);
  });

  it("passes a body larger than maxEntrySize through whole, unstored, and serves ranges of stored ones", async (t) => {
    const big = "x".repeat(200_000);
    const o = await origin((req, res) => {
      res.writeHead(200, { "cache-control": "max-age=60", "content-type": "text/plain" });
      res.end(req.url === "/big" ? big : "0123456789");
    });
    const proxy = await proxyFor(o.url, { http: { maxEntrySize: 100_000 } });
    t.after(async () => {
      await proxy.close();
      o.server.close();
    });
    const first = await send(`${proxy.url}/big`);
    assert.equal(first.body.length, big.length);
    assert.match(String(first.headers["cache-status"]), /detail=too-large/);
    await send(`${proxy.url}/small`);
    const part = await send(`${proxy.url}/small`, { headers: { range: "bytes=2-4" } });
    assert.equal(part.status, 206);
    assert.equal(part.body, "234");
    assert.equal(part.headers["content-range"], "bytes 2-4/10");
    const none = await send(`${proxy.url}/small`, { headers: { range: "bytes=50-" } });
    assert.equal(none.status, 416);
  });

  it("never stores a body the upstream cut off mid-way (the upstream process dying mid-response)", async (t) => {
    let calls = 0;
    const o = await origin((_req, res) => {
      calls++;
      res.writeHead(200, {
        "cache-control": "max-age=60",
        "content-type": "text/plain",
        "content-length": "100",
      });
      if (calls === 1) {
        // Half the promised body, then the connection dies.
        res.write("x".repeat(50));
        setTimeout(() => res.socket?.destroy(), 20);
        return;
      }
      res.end("y".repeat(100));
    });
    const proxy = await proxyFor(o.url);
    t.after(async () => {
      await proxy.close();
      o.server.close();
    });
    await send(`${proxy.url}/cut`).catch(() => undefined);
    const next = await send(`${proxy.url}/cut`);
    assert.equal(next.status, 200);
    assert.equal(next.body, "y".repeat(100), "the truncated body was not stored");
    assert.equal(calls, 2);
    const hit = await send(`${proxy.url}/cut`);
    assert.match(String(hit.headers["cache-status"]), /hit/);
    assert.equal(hit.body, "y".repeat(100));
  });
});
