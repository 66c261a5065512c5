/**
 * docs/nestjs.md's app, built from the guide alone: its ```ts file=… blocks are written into a
 * fresh commonjs project (as `nest new` makes; node_modules/cachet is a symlink to this
 * repository, so the BUILT package is what is resolved), compiled by tsc with Nest's compiler
 * settings — the classic ones (`module: commonjs`, node10 resolution) and Nest 11's starter
 * (`nodenext`, `isolatedModules`) — and run, on @nestjs/platform-express (src/main.ts) and on
 * @nestjs/platform-fastify (src/main-fastify.ts), against a real redis-server and a local fake
 * of the posts API: /posts is cached (the API is called once), invalidated by
 * POST /posts/refresh, still answered, fast, with redis-server killed, and the process ends on
 * SIGTERM. (That the module closes the cache, so that a process ends after `app.close()` with no
 * signal, is test/nestjs/compile.test.ts's check.)
 */
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import ts from "typescript";
import { consumerProject } from "../helpers/consumer.js";
import { freePort, waitFor } from "../helpers/ports.js";
import { type RedisServer, startRedis } from "../helpers/redis.js";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "../..");

/** The guide's files: every ```ts file=PATH block, by path. */
function guideFiles(): Map<string, string> {
  const text = readFileSync(join(root, "docs/nestjs.md"), "utf8");
  const files = new Map<string, string>();
  const fence = /^```ts file=(\S+)\n([\s\S]*?)^```/gm;
  for (let m = fence.exec(text); m !== null; m = fence.exec(text)) {
    files.set(m[1]!, m[2]!);
  }
  return files;
}

/** What `nest new` (Nest 10) writes into tsconfig.json. */
const classic: ts.CompilerOptions = {
  module: ts.ModuleKind.CommonJS,
  moduleResolution: ts.ModuleResolutionKind.Node10,
  declaration: true,
  removeComments: true,
  emitDecoratorMetadata: true,
  experimentalDecorators: true,
  allowSyntheticDefaultImports: true,
  target: ts.ScriptTarget.ES2021,
  skipLibCheck: true,
  strictNullChecks: true,
  noImplicitAny: false,
  strictBindCallApply: false,
  forceConsistentCasingInFileNames: true,
  noFallthroughCasesInSwitch: false,
  types: ["node"],
  lib: ["lib.es2023.d.ts", "lib.dom.d.ts"],
};

/** Nest 11's starter: nodenext, isolatedModules. */
const starter11: ts.CompilerOptions = {
  ...classic,
  module: ts.ModuleKind.NodeNext,
  moduleResolution: ts.ModuleResolutionKind.NodeNext,
  resolvePackageJsonExports: true,
  esModuleInterop: true,
  isolatedModules: true,
  target: ts.ScriptTarget.ES2023,
};

function compile(dir: string, files: string[], options: ts.CompilerOptions, outDir?: string) {
  const program = ts.createProgram(
    files.map((f) => join(dir, f)),
    outDir ? { ...options, outDir, rootDir: join(dir, "src") } : { ...options, noEmit: true },
  );
  const emitted = program.emit();
  return [...ts.getPreEmitDiagnostics(program), ...emitted.diagnostics].map((d) => {
    const message = ts.flattenDiagnosticMessageText(d.messageText, "\n");
    if (!d.file || d.start === undefined) return `TS${d.code}: ${message}`;
    const { line } = d.file.getLineAndCharacterOfPosition(d.start);
    return `${d.file.fileName.slice(dir.length + 1)}:${line + 1} TS${d.code}: ${message}`;
  });
}

interface App {
  child: ChildProcess;
  base: string;
  output: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

async function startApp(dir: string, main: string, env: Record<string, string>): Promise<App> {
  const port = await freePort();
  const child = spawn(process.execPath, [join(dir, "dist", main)], {
    cwd: dir,
    env: { ...process.env, NODE_OPTIONS: "", PORT: String(port), ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  child.stdout?.on("data", (c: Buffer) => (output += c));
  child.stderr?.on("data", (c: Buffer) => (output += c));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((done) =>
    child.once("exit", (code, signal) => done({ code, signal })),
  );
  const base = `http://127.0.0.1:${port}`;
  let ended = false;
  void exited.then(() => (ended = true));
  await waitFor(
    async () => {
      if (ended) throw new Error(`the app exited:\n${output}`);
      return fetch(`${base}/`).then(
        () => true,
        () => false,
      );
    },
    `the guide's app (${main}) listening`,
    20_000,
  );
  return { child, base, output: () => output, exited };
}

describe("docs/nestjs.md's app, built from the guide alone", { timeout: 180_000 }, () => {
  const files = guideFiles();
  let dir: string;
  let redis: RedisServer;
  let api: Server;
  let apiBase: string;
  let apiCalls = 0;
  const posts = [{ userId: 1, id: 1, title: "hello", body: "world" }];

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "cachet-nest-guide-"));
    consumerProject(dir, "commonjs");
    for (const [path, text] of files) {
      mkdirSync(dirname(join(dir, path)), { recursive: true });
      writeFileSync(join(dir, path), text);
    }
    api = createServer((req, res) => {
      apiCalls++;
      res.writeHead(req.url === "/posts" ? 200 : 404, { "content-type": "application/json" });
      res.end(JSON.stringify(req.url === "/posts" ? posts : {}));
    });
    await new Promise<void>((done) => api.listen(0, "127.0.0.1", done));
    apiBase = `http://127.0.0.1:${(api.address() as AddressInfo).port}`;
    redis = await startRedis();
  });

  after(async () => {
    api?.close();
    await redis?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("has the app's files: module, provider, controller, an Express and a Fastify bootstrap", () => {
    assert.deepEqual([...files.keys()].sort(), [
      "src/app.module.ts",
      "src/main-fastify.ts",
      "src/main.ts",
      "src/posts.controller.ts",
      "src/posts.service.ts",
    ]);
  });

  it("compiles under Nest 11's starter settings (nodenext, isolatedModules)", () => {
    assert.deepEqual(compile(dir, [...files.keys()], starter11), []);
  });

  it("compiles under Nest's classic settings (commonjs, experimentalDecorators, emitDecoratorMetadata)", () => {
    assert.deepEqual(compile(dir, [...files.keys()], classic, join(dir, "dist")), []);
  });

  for (const [platform, main] of [
    ["express", "main.js"],
    ["fastify", "main-fastify.js"],
  ] as const) {
    it(`on ${platform}: caches /posts, invalidates it, survives redis-server killed, exits on SIGTERM`, async () => {
      await redis.start();
      const app = await startApp(dir, main, { REDIS_URL: redis.url, POSTS_API: apiBase });
      try {
        const calls = apiCalls;
        const first = await fetch(`${app.base}/posts`);
        assert.equal(first.status, 200, app.output());
        assert.deepEqual(await first.json(), posts);
        assert.match(first.headers.get("cache-status") ?? "", /fwd=uri-miss; stored/);
        const second = await fetch(`${app.base}/posts`);
        assert.match(second.headers.get("cache-status") ?? "", /; hit/);
        assert.deepEqual(await second.json(), posts);
        assert.equal(apiCalls - calls, 1, "the posts API was called once");

        const refresh = await fetch(`${app.base}/posts/refresh`, { method: "POST" });
        assert.equal(refresh.status, 204, app.output());
        const third = await fetch(`${app.base}/posts`);
        assert.equal(third.status, 200);
        assert.doesNotMatch(third.headers.get("cache-status") ?? "", /; hit/);
        assert.equal(apiCalls - calls, 2, "invalidated: the response and list()'s result");

        await redis.kill();
        for (let i = 0; i < 5; i++) {
          const started = performance.now();
          const reply = await fetch(`${app.base}/posts`);
          const ms = performance.now() - started;
          assert.equal(reply.status, 200, app.output());
          assert.deepEqual(await reply.json(), posts);
          // The store timeout (50 ms) and a local API: far below a second.
          assert.ok(ms < 1_000, `answered in ${ms.toFixed(0)} ms with Redis killed`);
        }
      } finally {
        app.child.kill("SIGTERM");
      }
      const timer = setTimeout(() => app.child.kill("SIGKILL"), 10_000);
      const { code, signal } = await app.exited;
      clearTimeout(timer);
      // enableShutdownHooks: Nest closes the app (the module closes the cache), then re-raises
      // SIGTERM on itself; SIGKILL would be this test's timer (it did not end).
      assert.ok(
        code === 0 || signal === "SIGTERM",
        `exits by itself on SIGTERM (${code ?? signal}):\n${app.output()}`,
      );
    });
  }
});
