import "reflect-metadata";
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
import type { AdapterFactory, TestRoute } from "../harness.js";
import { answerExpress } from "./express.js";
import { answerFastify } from "./fastify.js";

const methods = { GET: Get, POST: Post, PUT: Put, PATCH: Patch, DELETE: Delete } as const;

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
        if (platform === "express") answerExpress(res as Response, out);
        else answerFastify(res as FastifyReply, out);
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
