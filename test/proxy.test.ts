import assert from "node:assert/strict";
import { once } from "node:events";
import type { IncomingMessage, Server, ServerResponse } from "node:http";
import { createServer, request as httpRequest } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, it } from "node:test";
import { gzipSync } from "node:zlib";
import { createProxy, startProxy } from "../src/proxy/index.js";
import { freePort } from "./helpers/ports.js";

/**
 * `cachet proxy` over real sockets: a node:http origin and the proxy, both on free ports, and
 * node's own client (which adds nothing but `Host`).
 */

interface Seen {
  method: string;
  url: string;
  headers: IncomingMessage["headers"];
  body: Buffer;
}

interface Reply {
  status: number;
  headers: IncomingMessage["headers"];
  body: Buffer;
}

/** A 1 MiB body, sent in 64 KiB chunks without a Content-Length. */
const LARGE = Buffer.alloc(1024 * 1024, "abcdefghijklmnopqrstuvwxyz");

type Route = (req: IncomingMessage, res: ServerResponse, body: Buffer) => void;

const routes: Record<string, Route> = {
  "/fresh": (_req, res) => {
    res.writeHead(200, { "content-type": "text/plain", "cache-control": "max-age=60" });
    res.end("fresh body");
  },
  "/headers": (_req, res) => {
    res.setHeader("x-foo", "bar");
    res.setHeader("set-cookie", ["a=1", "b=2"]);
    res.setHeader("content-security-policy", "default-src 'self'");
    res.setHeader("connection", "x-hop");
    res.setHeader("x-hop", "dropped");
    res.end("headers");
  },
  "/echo": (req, res, body) => {
    res.writeHead(201, { "content-type": "application/octet-stream", "x-method": req.method });
    res.end(body);
  },
  "/gzip": (_req, res) => {
    const body = gzipSync("compressed");
    res.writeHead(200, {
      "content-type": "text/plain",
      "content-encoding": "gzip",
      "cache-control": "max-age=60",
    });
    res.end(body);
  },
  "/large": (_req, res) => {
    res.writeHead(200, { "content-type": "application/octet-stream" });
    let offset = 0;
    const write = () => {
      while (offset < LARGE.length) {
        const chunk = LARGE.subarray(offset, offset + 65_536);
        offset += chunk.length;
        if (!res.write(chunk)) {
          res.once("drain", write);
          return;
        }
      }
      res.end();
    };
    write();
  },
  "/hints": (_req, res) => {
    res.writeEarlyHints({ link: "</style.css>; rel=preload; as=style" });
    res.writeHead(200, { "cache-control": "max-age=60" });
    res.end("after hints");
  },
  "/slow": () => {
    // never answers: the proxy's timeout decides
  },
};

let origin: Server;
let originPort: number;
const seen: Seen[] = [];
let proxy: Awaited<ReturnType<typeof startProxy>>;
let proxyPort: number;

function countOf(path: string): number {
  return seen.filter((s) => s.url.split("?")[0] === path).length;
}

function send(
  port: number,
  method: string,
  path: string,
  headers: Record<string, string> = {},
  body?: Buffer | string,
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    // node's client frames a DELETE or OPTIONS body only with an explicit Content-Length.
    const framing = body === undefined ? {} : { "content-length": String(Buffer.byteLength(body)) };
    const req = httpRequest(
      { host: "127.0.0.1", port, method, path, headers: { ...framing, ...headers }, agent: false },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (chunk: Buffer) => chunks.push(chunk));
        res.on("error", reject);
        res.on("end", () =>
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body: Buffer.concat(chunks),
          }),
        );
      },
    );
    req.setTimeout(10_000, () => req.destroy(new Error(`no answer to ${method} ${path}`)));
    req.on("error", reject);
    req.end(body);
  });
}

before(async () => {
  origin = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (chunk: Buffer) => chunks.push(chunk));
    req.on("end", () => {
      const body = Buffer.concat(chunks);
      const url = req.url ?? "/";
      seen.push({ method: req.method ?? "", url, headers: req.headers, body });
      // Routed by the first path segment: `/echo/a/b` is `/echo`.
      const route = routes[`/${url.split(/[/?]/)[1] ?? ""}`];
      if (route) route(req, res, body);
      else {
        res.writeHead(404, { "content-type": "text/plain" });
        res.end("not found");
      }
    });
  });
  origin.listen(0, "127.0.0.1");
  await once(origin, "listening");
  originPort = (origin.address() as AddressInfo).port;
  proxy = await startProxy({
    upstream: `http://127.0.0.1:${originPort}`,
    port: 0,
    timeout: 500,
  });
  proxyPort = Number(new URL(proxy.url).port);
});

after(async () => {
  await proxy.close();
  origin.closeAllConnections();
  origin.close();
});

describe("cachet proxy", () => {
  it("caches what the origin's Cache-Control allows: the second GET does not reach it", async () => {
    const first = await send(proxyPort, "GET", "/fresh");
    assert.equal(first.status, 200);
    assert.equal(first.body.toString(), "fresh body");
    assert.match(String(first.headers["cache-status"]), /fwd=uri-miss; stored/);
    const second = await send(proxyPort, "GET", "/fresh");
    assert.equal(second.status, 200);
    assert.equal(second.body.toString(), "fresh body");
    assert.match(String(second.headers["cache-status"]), /^cachet; hit/);
    assert.equal(countOf("/fresh"), 1);
  });

  it("answers HEAD with the stored GET's headers and no body", async () => {
    await send(proxyPort, "GET", "/fresh");
    const head = await send(proxyPort, "HEAD", "/fresh");
    assert.equal(head.status, 200);
    assert.equal(head.body.length, 0);
    assert.equal(head.headers["content-type"], "text/plain");
    assert.equal(countOf("/fresh"), 1);
  });

  it("forwards HEAD on a miss as HEAD", async () => {
    const head = await send(proxyPort, "HEAD", "/echo?head");
    assert.equal(head.status, 201);
    assert.equal(head.body.length, 0);
    assert.equal(seen.at(-1)?.method, "HEAD");
  });

  it("forwards the path and query exactly as received, and the request headers", async () => {
    await send(proxyPort, "GET", "/echo/a//b/../c?z=1&a=%2F&a=2", {
      "x-custom": "yes",
      connection: "x-private",
      "x-private": "hop",
      "x-forwarded-for": "10.0.0.1",
    });
    const req = seen.at(-1);
    assert.equal(req?.url, "/echo/a//b/../c?z=1&a=%2F&a=2");
    assert.equal(req?.headers["x-custom"], "yes");
    assert.equal(req?.headers["x-private"], undefined, "Connection-listed fields are dropped");
    assert.equal(req?.headers.host, `127.0.0.1:${originPort}`);
    assert.equal(req?.headers["x-forwarded-host"], `127.0.0.1:${proxyPort}`);
    assert.equal(req?.headers["x-forwarded-proto"], "http");
    assert.equal(req?.headers["x-forwarded-for"], "10.0.0.1, 127.0.0.1");
    assert.match(String(req?.headers.via), /^1\.1 cachet$/);
  });

  for (const method of ["POST", "PUT", "PATCH", "DELETE"]) {
    it(`forwards ${method} with its body, whatever its type`, async () => {
      const body = Buffer.from([0, 1, 2, 255, 254]);
      const res = await send(
        proxyPort,
        method,
        `/echo?${method}`,
        {
          "content-type": "application/x-whatever",
        },
        body,
      );
      assert.equal(res.status, 201);
      assert.equal(res.headers["x-method"], method);
      assert.deepEqual(res.body, body);
      assert.deepEqual(seen.at(-1)?.body, body);
      assert.equal(seen.at(-1)?.headers["content-type"], "application/x-whatever");
    });
  }

  it("frames a chunked request body by its length upstream, even for DELETE", async () => {
    const res = await send(proxyPort, "DELETE", "/echo?chunked", {
      "transfer-encoding": "chunked",
    });
    assert.equal(res.status, 201);
    const res2 = await new Promise<Reply>((resolve, reject) => {
      const req = httpRequest(
        {
          host: "127.0.0.1",
          port: proxyPort,
          method: "DELETE",
          path: "/echo?chunked2",
          headers: { "transfer-encoding": "chunked" },
          agent: false,
        },
        (r) => {
          const chunks: Buffer[] = [];
          r.on("data", (c: Buffer) => chunks.push(c));
          r.on("end", () =>
            resolve({ status: r.statusCode ?? 0, headers: r.headers, body: Buffer.concat(chunks) }),
          );
        },
      );
      req.on("error", reject);
      req.write("part one, ");
      req.end("part two");
    });
    assert.equal(res2.status, 201);
    assert.equal(res2.body.toString(), "part one, part two");
    assert.equal(seen.at(-1)?.headers["content-length"], "18");
    assert.equal(seen.at(-1)?.headers["transfer-encoding"], undefined);
  });

  it("forwards a target Fastify could not decode, as it came, and says it bypassed the cache", async () => {
    const res = await send(proxyPort, "GET", "/echo/%zz?q=%");
    assert.equal(res.status, 201);
    assert.equal(seen.at(-1)?.url, "/echo/%zz?q=%");
    // Every response carries Cache-Status (RFC 9211), these too.
    assert.equal(res.headers["cache-status"], "cachet; fwd=bypass; detail=invalid-target");
  });

  it("forwards a body whose Content-Type Fastify cannot parse, with that Content-Type", async () => {
    const res = await send(proxyPort, "POST", "/echo?ct", { "content-type": "text;;" }, "raw");
    assert.equal(res.status, 201);
    assert.equal(res.body.toString(), "raw");
    assert.equal(seen.at(-1)?.headers["content-type"], "text;;");
  });

  it("forwards a body without a content type, and a method Fastify does not route by default", async () => {
    const res = await send(proxyPort, "M-SEARCH", "/echo?msearch", {}, "ssdp:discover");
    assert.equal(res.status, 201);
    assert.equal(res.headers["x-method"], "M-SEARCH");
    assert.equal(res.body.toString(), "ssdp:discover");
  });

  it("invalidates the stored GET after a successful unsafe request to the same URL", async () => {
    await send(proxyPort, "GET", "/fresh?inv");
    assert.match(
      String((await send(proxyPort, "GET", "/fresh?inv")).headers["cache-status"]),
      /hit/,
    );
    await send(proxyPort, "POST", "/fresh?inv", { "content-type": "text/plain" }, "x");
    const after = await send(proxyPort, "GET", "/fresh?inv");
    assert.doesNotMatch(String(after.headers["cache-status"]), /hit/);
  });

  it("passes the origin's end-to-end response headers, every Set-Cookie, and drops hop-by-hop ones", async () => {
    const res = await send(proxyPort, "GET", "/headers");
    assert.equal(res.headers["x-foo"], "bar");
    assert.deepEqual(res.headers["set-cookie"], ["a=1", "b=2"]);
    assert.equal(res.headers["content-security-policy"], "default-src 'self'");
    assert.equal(res.headers["x-hop"], undefined);
  });

  it("relays a compressed body byte for byte, with its Content-Encoding", async () => {
    const res = await send(proxyPort, "GET", "/gzip", { "accept-encoding": "gzip" });
    assert.equal(res.headers["content-encoding"], "gzip");
    assert.deepEqual(res.body, gzipSync("compressed"));
  });

  it("relays 103 Early Hints", async () => {
    const hints: IncomingMessage["headers"][] = [];
    await new Promise<void>((resolve, reject) => {
      const req = httpRequest(
        { host: "127.0.0.1", port: proxyPort, path: "/hints?early", agent: false },
        (res) => {
          res.resume();
          res.on("end", resolve);
        },
      );
      req.on("information", (info) => hints.push(info.headers));
      req.on("error", reject);
      req.end();
    });
    assert.equal(hints.length, 1);
    assert.equal(hints[0]?.link, "</style.css>; rel=preload; as=style");
  });

  it("streams a large body through whole", async () => {
    const res = await send(proxyPort, "GET", "/large");
    assert.equal(res.status, 200);
    assert.equal(res.body.length, LARGE.length);
    assert.ok(res.body.equals(LARGE));
  });

  it("answers 504 when the upstream does not answer within the timeout", async () => {
    const res = await send(proxyPort, "GET", "/slow");
    assert.equal(res.status, 504);
    assert.match(res.body.toString(), /did not answer within 500 ms/);
  });

  it("answers 502 with a short text when the upstream cannot be reached", async () => {
    const down = await startProxy({ upstream: `http://127.0.0.1:${await freePort()}`, port: 0 });
    try {
      const res = await send(Number(new URL(down.url).port), "GET", "/anything");
      assert.equal(res.status, 502);
      assert.match(String(res.headers["content-type"]), /^text\/plain/);
      assert.match(res.body.toString(), /could not be reached \(ECONNREFUSED\)/);
    } finally {
      await down.close();
    }
  });

  it("fails to start on a port in use, and leaves nothing open", async () => {
    await assert.rejects(
      startProxy({ upstream: `http://127.0.0.1:${originPort}`, port: proxyPort }),
      /EADDRINUSE/,
    );
  });

  it("refuses an upstream that is not an http(s) URL, naming the option", async () => {
    await assert.rejects(createProxy({ upstream: "ftp://example.com" }), /upstream/);
    await assert.rejects(createProxy({ upstream: "not a url" }), /upstream/);
  });
});
