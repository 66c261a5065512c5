import "reflect-metadata";
import { Readable } from "node:stream";
import {
  Controller,
  Delete,
  Get,
  type INestApplication,
  Module,
  Patch,
  Post,
  Put,
  Req,
  Res,
} from "@nestjs/common";
import { NestFactory } from "@nestjs/core";
import { ExpressAdapter } from "@nestjs/platform-express";
import { FastifyAdapter } from "@nestjs/platform-fastify";
import type { Request, Response } from "express";
import type { FastifyReply, FastifyRequest } from "fastify";
import { CACHET_HTTP, CacheRoute, CachetModule } from "../../../src/adapters/nestjs.js";
import type { HttpCache } from "../../../src/http/http-cache.js";
import { socketHarness } from "../client.js";
import type { AdapterFactory, TestResponse, TestRoute } from "../harness.js";

const methods = { GET: Get, POST: Post, PUT: Put, PATCH: Patch, DELETE: Delete } as const;

/** Answer through Express's response, as a Nest handler with `@Res()` does. */
function sendExpress(res: Response, out: TestResponse): void {
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

/** Answer through Fastify's reply, as a Nest handler with `@Res()` does on platform-fastify. */
function sendFastify(reply: FastifyReply, out: TestResponse): void {
  reply.code(out.status ?? 200);
  if (out.headers) reply.headers(out.headers);
  const body = out.body;
  if (out.stream) {
    const bytes = Buffer.isBuffer(body)
      ? body
      : Buffer.from(typeof body === "string" ? body : JSON.stringify(body));
    if (!out.headers?.["content-type"]) reply.type("application/octet-stream");
    void reply.send(Readable.from([bytes]));
    return;
  }
  void reply.send(body ?? "");
}

/**
 * The shared HTTP suite's NestJS harness: a Nest app on `platform`, its controller built from the
 * suite's routes (`@CacheRoute` for a cached route), `CachetModule.forRoot` with the suite's
 * HTTP options, listening on a real socket.
 */
export function nestAdapter(platform: "express" | "fastify"): AdapterFactory {
  return async ({ cache, http, routes, trustProxy }) => {
    class SuiteController {}
    const prototype = SuiteController.prototype as unknown as Record<string, unknown>;
    routes.forEach((route: TestRoute, i) => {
      const name = `route${i}`;
      prototype[name] = async function handle(req: Request | FastifyRequest, res: unknown) {
        const out = await route.handler({
          method: req.method,
          url: platform === "express" ? (req as Request).originalUrl : req.url,
          headers: req.headers,
          host: req.host,
        });
        if (out.throws === "value") throw "handler failed (not an Error)";
        if (out.throws) throw new Error("handler failed");
        if (platform === "express") sendExpress(res as Response, out);
        else sendFastify(res as FastifyReply, out);
      };
      Req()(prototype, name, 0);
      Res()(prototype, name, 1);
      const decorators: MethodDecorator[] = [methods[route.method ?? "GET"](route.path)];
      if (route.cache !== undefined) decorators.push(CacheRoute(route.cache));
      Reflect.decorate(
        decorators,
        prototype,
        name,
        Object.getOwnPropertyDescriptor(prototype, name),
      );
    });
    Controller()(SuiteController);
    class SuiteModule {}
    Module({
      imports: [CachetModule.forRoot({ cache, http: { ...http }, closeOnShutdown: false })],
      controllers: [SuiteController],
    })(SuiteModule);
    const adapter =
      platform === "express"
        ? new ExpressAdapter()
        : new FastifyAdapter({ trustProxy: trustProxy === true });
    const app: INestApplication = await NestFactory.create(SuiteModule, adapter, {
      logger: false,
    });
    if (platform === "express" && trustProxy) {
      (app.getHttpAdapter().getInstance() as { set(k: string, v: unknown): void }).set(
        "trust proxy",
        true,
      );
    }
    await app.listen(0, "127.0.0.1");
    return socketHarness(app.get<HttpCache>(CACHET_HTTP), app.getHttpServer(), () => app.close());
  };
}
