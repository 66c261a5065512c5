import { Readable } from "node:stream";
import Fastify from "fastify";
import { cachetFastify } from "../../../src/adapters/fastify.js";
import type { AdapterFactory, Harness } from "../harness.js";

/** The shared HTTP suite's Fastify harness: requests through `inject()`. */
export const fastifyAdapter: AdapterFactory = async ({ cache, http, routes }) => {
  const app = Fastify();
  await app.register(cachetFastify, { cache, ...http });
  for (const route of routes) {
    app.route({
      method: route.method ?? "GET",
      url: route.path,
      config: route.cache === undefined ? {} : { cache: route.cache },
      handler: async (request, reply) => {
        const out = await route.handler({
          method: request.method,
          url: request.url,
          headers: request.headers,
        });
        if (out.throws) throw new Error("handler failed");
        reply.code(out.status ?? 200);
        if (out.headers) reply.headers(out.headers);
        const body = out.body;
        if (out.stream) {
          const bytes = Buffer.isBuffer(body)
            ? body
            : Buffer.from(typeof body === "string" ? body : JSON.stringify(body));
          if (!out.headers?.["content-type"]) reply.type("application/octet-stream");
          return reply.send(Readable.from([bytes]));
        }
        return body ?? "";
      },
    });
  }
  await app.ready();
  const requestRaw: Harness["requestRaw"] = async ({ method = "GET", url, headers = {}, body }) => {
    const res = await app.inject({
      method: method as "GET",
      url,
      headers,
      ...(body === undefined ? {} : { payload: body }),
    });
    return {
      status: res.statusCode,
      headers: res.headers,
      body: res.body,
      rawBody: res.rawPayload,
    };
  };
  return {
    http: app.cachet,
    request: (options) => requestRaw(options),
    requestRaw,
    close: () => app.close(),
  };
};
