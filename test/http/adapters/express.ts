import { Readable } from "node:stream";
import express from "express";
import { inject } from "light-my-request";
import { cachetExpress } from "../../../src/adapters/express.js";
import type { AdapterFactory, Harness } from "../harness.js";

/** The shared HTTP suite's Express harness: requests through light-my-request. */
export const expressAdapter: AdapterFactory = async ({ cache, http, routes }) => {
  const app = express();
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
        });
        if (out.throws) throw new Error("handler failed");
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
      } catch (error) {
        next(error);
      }
    });
    app[method](route.path, ...handlers);
  }
  const requestRaw: Harness["requestRaw"] = async ({ method = "GET", url, headers = {}, body }) => {
    const res = await inject(app as unknown as Parameters<typeof inject>[0], {
      method: method as "GET",
      url,
      headers,
      ...(body === undefined ? {} : { payload: body }),
    });
    return {
      status: res.statusCode,
      headers: res.headers,
      body: res.payload,
      rawBody: res.rawPayload,
    };
  };
  return {
    http: cached.http,
    request: (options) => requestRaw(options),
    requestRaw,
    close: async () => {},
  };
};
