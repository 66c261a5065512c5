import { Readable } from "node:stream";
import Fastify, { type FastifyReply } from "fastify";
import { cachetFastify } from "../../../src/adapters/fastify.js";
import { socketHarness } from "../client.js";
import type { AdapterFactory, TestResponse } from "../harness.js";

/** Send a test route's answer through Fastify's reply. */
export function answerFastify(reply: FastifyReply, out: TestResponse): FastifyReply {
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
  return reply.send(body ?? "");
}

/** The shared HTTP suite's Fastify harness: a listening server, requests over real sockets. */
export const fastifyAdapter: AdapterFactory = async ({ cache, http, routes, trustProxy }) => {
  const app = Fastify({ trustProxy: trustProxy === true });
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
          host: request.host,
        });
        if (out.throws === "value") throw "handler failed (not an Error)";
        if (out.throws) throw new Error("handler failed");
        return answerFastify(reply, out);
      },
    });
  }
  await app.listen({ port: 0, host: "127.0.0.1" });
  return socketHarness(app.cachet, app.server, () => app.close());
};
