import type { Server } from "node:http";
import { request as httpRequest } from "node:http";
import type { AddressInfo } from "node:net";
import { connect } from "node:net";
import type { HttpCache } from "../../src/http/http-cache.js";
import type { Harness, RequestOptions, TestReply } from "./harness.js";

/**
 * The HTTP suite's client: real requests over real sockets, with nothing added but `Host`
 * (no `Accept-Encoding`, no keep-alive pooling across tests).
 */
export async function send(
  base: { host: string; port: number },
  { method = "GET", url, headers = {}, body }: RequestOptions,
): Promise<TestReply & { rawBody: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      { host: base.host, port: base.port, method, path: url, headers, agent: false },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (chunk: Buffer) => chunks.push(chunk));
        res.on("error", reject);
        res.on("end", () => {
          const rawBody = Buffer.concat(chunks);
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body: rawBody.toString("utf8"),
            rawBody,
          });
        });
      },
    );
    req.setTimeout(15_000, () => req.destroy(new Error(`no answer to ${method} ${url}`)));
    req.on("error", reject);
    req.end(body);
  });
}

/**
 * A request with a raw target, written byte for byte on a socket: targets node's client would
 * refuse or rewrite (`/posts#?userId=2`, absolute-form `http://evil.example/list`). The
 * response is read until the server closes the connection (`Connection: close`).
 */
export function sendRaw(
  base: { host: string; port: number },
  target: string,
  headers: Record<string, string> = {},
  method = "GET",
): Promise<TestReply> {
  return new Promise((resolve, reject) => {
    const socket = connect(base.port, base.host);
    const chunks: Buffer[] = [];
    const lines = [`${method} ${target} HTTP/1.1`, `Host: ${base.host}:${base.port}`];
    for (const [name, value] of Object.entries(headers)) lines.push(`${name}: ${value}`);
    lines.push("Connection: close", "", "");
    socket.setTimeout(15_000, () => socket.destroy(new Error(`no answer to ${target}`)));
    socket.on("connect", () => socket.write(lines.join("\r\n"), "latin1"));
    socket.on("data", (chunk: Buffer) => chunks.push(chunk));
    socket.on("error", reject);
    socket.on("close", () => {
      try {
        resolve(parseResponse(Buffer.concat(chunks)));
      } catch (error) {
        reject(error);
      }
    });
  });
}

function parseResponse(bytes: Buffer): TestReply {
  const end = bytes.indexOf("\r\n\r\n");
  if (end === -1)
    throw new Error(`no response head in ${JSON.stringify(bytes.toString("latin1"))}`);
  const [statusLine, ...fields] = bytes.toString("latin1", 0, end).split("\r\n");
  const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(statusLine ?? "")?.[1]);
  const headers: Record<string, string> = {};
  for (const field of fields) {
    const colon = field.indexOf(":");
    const name = field.slice(0, colon).trim().toLowerCase();
    const value = field.slice(colon + 1).trim();
    headers[name] = headers[name] === undefined ? value : `${headers[name]}, ${value}`;
  }
  let body = bytes.subarray(end + 4);
  if (/chunked/i.test(headers["transfer-encoding"] ?? "")) body = dechunk(body);
  return { status, headers, body: body.toString("utf8") };
}

function dechunk(bytes: Buffer): Buffer {
  const out: Buffer[] = [];
  let offset = 0;
  for (;;) {
    const lineEnd = bytes.indexOf("\r\n", offset);
    if (lineEnd === -1) break;
    const size = Number.parseInt(bytes.toString("latin1", offset, lineEnd), 16);
    if (!size) break;
    out.push(bytes.subarray(lineEnd + 2, lineEnd + 2 + size));
    offset = lineEnd + 2 + size + 2;
  }
  return Buffer.concat(out);
}

/**
 * The harness of an app listening on `server`: requests over real sockets; `close` ends every
 * connection, then `stop` (the framework's own close, or the server's).
 */
export function socketHarness(
  http: HttpCache,
  server: Server,
  stop: () => Promise<unknown> = () => new Promise((resolve) => server.close(resolve)),
): Harness {
  const base = { host: "127.0.0.1", port: (server.address() as AddressInfo).port };
  return {
    http,
    request: (options) => send(base, options),
    requestRaw: (options) => send(base, options),
    rawTarget: (target, headers, method) => sendRaw(base, target, headers, method),
    close: async () => {
      server.closeAllConnections();
      await stop();
    },
  };
}
