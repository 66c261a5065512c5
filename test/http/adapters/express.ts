import { once } from "node:events";
import { Readable } from "node:stream";
import express from "express";
import { cachetExpress } from "../../../src/adapters/express.js";
import { socketHarness } from "../client.js";
import type { AdapterFactory, TestResponse } from "../harness.js";

/** Send a test route's answer through Express's response. */
export function answerExpress(res: express.Response, out: TestResponse): void {
  res.status(out.status ?? 200);
  if (out.headers) res.set(out.headers);
  const body = out.body ?? "";
  const bytes = Buffer.isBuffer(body)
    ? body
    : typeof body === "string"
      ? body
      : JSON.stringify(body);
  if (out.stream) {
    if (!out.headers?.["content-type"]) res.type("application/octet-stream");
    Readable.from([Buffer.from(bytes)]).pipe(res);
    return;
  }
  if (typeof body === "object" && !Buffer.isBuffer(body)) res.type("application/json");
  res.send(bytes);
}

/** The shared HTTP suite's Express harness: a listening server, requests over real sockets. */
export const expressAdapter: AdapterFactory = async ({ cache, http, routes, trustProxy }) => {
  const app = express();
  if (trustProxy) app.set("trust proxy", true);
  const cached = cachetExpress({ cache, ...http });
  app.use(cached.invalidator());
  app.use(express.text({ type: "*/*" }));
  for (const route of routes) {
    const method = (route.method ?? "GET").toLowerCase() as
      | "get"
      | "post"
      | "put"
      | "patch"
      | "delete";
    const handlers: express.RequestHandler[] = [];
    if (route.cache !== undefined) handlers.push(cached(route.cache));
    handlers.push(async (req, res, next) => {
      try {
        const out = await route.handler({
          method: req.method,
          url: req.originalUrl,
          headers: req.headers,
          host: req.host,
        });
        if (out.throws === "value") throw "handler failed (not an Error)";
        if (out.throws) throw new Error("handler failed");
        answerExpress(res, out);
      } catch (error) {
        next(error);
      }
    });
    app[method](route.path, ...handlers);
  }
  const server = app.listen(0, "127.0.0.1");
  await once(server, "listening");
  return socketHarness(cached.http, server);
};
