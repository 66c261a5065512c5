/**
 * A Nest app written as Nest users write it — decorator syntax compiled by tsc with NestJS's
 * defaults (`experimentalDecorators`, `emitDecoratorMetadata`, `module: commonjs`) against the
 * BUILT package (node_modules/cachet is a symlink to the repository: exports, typesVersions,
 * dist/*.d.ts) — run in a child process on a real redis-server: constructor injection with
 * `@InjectCache()`, `forRootAsync` with a factory, `@cached` on a provider, `@CacheRoute` on a
 * controller. After `app.close()` the child must exit by itself (the cache's Redis
 * connections closed by the module), without process.exit.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import ts from "typescript";
import { consumerProject } from "../helpers/consumer.js";
import { type RedisServer, startRedis } from "../helpers/redis.js";

const app = `
import "reflect-metadata";
import { Controller, Get, Injectable, Module, Post } from "@nestjs/common";
import { NestFactory } from "@nestjs/core";
import { type Cache, cached, createCache } from "cachet";
import { CacheRoute, CachetModule, InjectCache } from "cachet/nestjs";
import { redisStore } from "cachet/redis";
import type { AddressInfo } from "node:net";

let loads = 0;
let appCache: Cache | undefined;

@Injectable()
export class PostsService {
  constructor(@InjectCache() private readonly cache: Cache) {}

  @cached({ cache: () => appCache!, ttl: "60s", tags: ["posts"] })
  async list(page: number): Promise<{ page: number; load: number }> {
    loads++;
    return { page, load: loads };
  }

  async clear(): Promise<void> {
    await this.cache.invalidateTags(["posts"]);
  }
}

@Controller("posts")
export class PostsController {
  constructor(private readonly posts: PostsService) {}

  @Get()
  @CacheRoute({ ttl: "60s", tags: ["posts"] })
  list() {
    return this.posts.list(1);
  }

  @Post("clear")
  async clear() {
    await this.posts.clear();
    return { ok: true };
  }
}

@Module({
  imports: [
    CachetModule.forRootAsync({
      isGlobal: true,
      useFactory: () => {
        appCache = createCache({
          ttl: "60s",
          store: redisStore({ url: process.env.REDIS_URL! }),
        });
        return { cache: appCache };
      },
    }),
  ],
  controllers: [PostsController],
  providers: [PostsService],
})
export class AppModule {}

async function main() {
  const app = await NestFactory.create(AppModule, { logger: false });
  await app.listen(0, "127.0.0.1");
  const { port } = app.getHttpServer().address() as AddressInfo;
  const url = "http://127.0.0.1:" + port + "/posts";
  const statuses: string[] = [];
  const bodies: unknown[] = [];
  for (let i = 0; i < 2; i++) {
    const res = await fetch(url);
    statuses.push(res.headers.get("cache-status") ?? "");
    bodies.push(await res.json());
  }
  const service = app.get(PostsService);
  const direct = [await service.list(2), await service.list(2)];
  await fetch("http://127.0.0.1:" + port + "/posts/clear", { method: "POST" });
  const afterClear = await service.list(2);
  await app.close();
  console.log(JSON.stringify({ statuses, bodies, direct, afterClear, loads }));
}
main();
`;

describe("cachet/nestjs under NestJS's compiler defaults, on Redis", () => {
  let dir: string;
  let redis: RedisServer;

  before(async () => {
    redis = await startRedis();
    dir = mkdtempSync(join(tmpdir(), "cachet-nest-"));
    // A commonjs consumer (no "type": "module"), as `nest new` generates.
    consumerProject(dir, "commonjs");
    writeFileSync(join(dir, "main.ts"), app);
  });

  after(async () => {
    await redis.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it("compiles, serves, caches, and exits by itself after app.close()", async () => {
    const program = ts.createProgram([join(dir, "main.ts")], {
      target: ts.ScriptTarget.ES2021,
      module: ts.ModuleKind.CommonJS,
      moduleResolution: ts.ModuleResolutionKind.Node10,
      experimentalDecorators: true,
      emitDecoratorMetadata: true,
      strict: true,
      skipLibCheck: true,
      esModuleInterop: true,
      types: ["node"],
      lib: ["lib.es2023.d.ts", "lib.dom.d.ts"],
      outDir: join(dir, "dist"),
    });
    const emitted = program.emit();
    const diagnostics = [...ts.getPreEmitDiagnostics(program), ...emitted.diagnostics].map(
      (d) => `TS${d.code}: ${ts.flattenDiagnosticMessageText(d.messageText, "\n")}`,
    );
    assert.deepEqual(diagnostics, []);

    const child = spawn(process.execPath, [join(dir, "dist", "main.js")], {
      cwd: dir,
      env: { ...process.env, REDIS_URL: redis.url, NODE_OPTIONS: "" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (c: Buffer) => (stdout += c));
    child.stderr.on("data", (c: Buffer) => (stderr += c));
    const code = await new Promise<number | string>((done) => {
      // Generous: a Nest boot plus a Redis connection; a process that does not exit hits it.
      const timer = setTimeout(() => {
        child.kill("SIGKILL");
        done("did not exit within 20 s");
      }, 20_000);
      child.once("exit", (c) => {
        clearTimeout(timer);
        done(c ?? -1);
      });
    });
    assert.equal(code, 0, `exit: ${code}\n${stderr}`);
    const out = JSON.parse(stdout.trim().split("\n").at(-1) ?? "{}");
    assert.match(out.statuses[0], /fwd=uri-miss; stored/);
    assert.match(out.statuses[1], /; hit/);
    assert.deepEqual(out.bodies[0], out.bodies[1]);
    // @cached on the provider: the second call is the cached result, the tag clears it.
    assert.deepEqual(out.direct[0], out.direct[1]);
    assert.notDeepEqual(out.afterClear, out.direct[0]);
  });
});
