import type { Server } from "node:http";
import { serve } from "@hono/node-server";
import { Hono, type MiddlewareHandler } from "hono";
import { stream as honoStream } from "hono/streaming";
import { cachetHono } from "../../../src/adapters/hono.js";
import { socketHarness } from "../client.js";
import type { AdapterFactory } from "../harness.js";

/**
 * The shared HTTP suite's Hono harness: `@hono/node-server` listening, requests over real
 * sockets. Hono has no trust-proxy setting: its host is the URL's (`Host`, or an absolute-form
 * target's).
 */
export const honoAdapter: AdapterFactory = async ({ cache, http, routes }) => {
  const app = new Hono();
  const cached = cachetHono({ cache, app, ...http });
  app.use(cached.invalidator());
  for (const route of routes) {
    const method = (route.method ?? "GET").toLowerCase() as
      | "get"
      | "post"
      | "put"
      | "patch"
      | "delete";
    const handlers: MiddlewareHandler[] = [];
    if (route.cache !== undefined) handlers.push(cached(route.cache));
    const on = app.on.bind(app) as (m: string, p: string, ...h: MiddlewareHandler[]) => unknown;
    on(method.toUpperCase(), route.path, ...handlers, async (c) => {
      const headers: Record<string, string> = {};
      c.req.raw.headers.forEach((v, k) => {
        headers[k] = v;
      });
      const url = new URL(c.req.url);
      const out = await route.handler({
        method: c.req.method,
        url: url.pathname + url.search,
        headers,
        host: url.host,
      });
      if (out.throws === "value") throw "handler failed (not an Error)";
      if (out.throws) throw new Error("handler failed");
      const body = out.body ?? "";
      const bytes = Buffer.isBuffer(body)
        ? body
        : Buffer.from(typeof body === "string" ? body : JSON.stringify(body));
      const responseHeaders = new Headers();
      for (const [n, v] of Object.entries(out.headers ?? {})) {
        if (Array.isArray(v)) for (const x of v) responseHeaders.append(n, x);
        else responseHeaders.set(n, v);
      }
      if (
        typeof body === "object" &&
        !Buffer.isBuffer(body) &&
        !responseHeaders.has("content-type")
      ) {
        responseHeaders.set("content-type", "application/json");
      }
      if (out.stream) {
        if (!responseHeaders.has("content-type"))
          responseHeaders.set("content-type", "application/octet-stream");
        for (const [n, v] of responseHeaders) c.header(n, v);
        c.status((out.status ?? 200) as 200);
        return honoStream(c, async (s) => {
          await s.write(new Uint8Array(bytes));
        });
      }
      const status = out.status ?? 200;
      return new Response(status === 204 || status === 304 ? null : new Uint8Array(bytes), {
        status,
        headers: responseHeaders,
      });
    });
  }
  app.onError((_err, c) => c.text("Internal Server Error", 500));
  const server = await new Promise<Server>((resolve) => {
    const s = serve({ fetch: app.fetch, port: 0, hostname: "127.0.0.1" }, () =>
      resolve(s as Server),
    );
  });
  return socketHarness(cached.http, server);
};
