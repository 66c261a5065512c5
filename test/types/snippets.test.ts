import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import ts from "typescript";
import { consumerProject } from "../helpers/consumer.js";

/**
 * The TypeScript snippets of README.md and docs/*.md compile against the BUILT package, imported
 * as a consumer would (`cachet`, `cachet/redis`, …: node_modules/cachet is a symlink to the
 * repository, so package.json's main/types/exports/typesVersions and dist/*.d.ts are what is
 * resolved), under each compiler setting the README promises, each with `strict` and
 * `exactOptionalPropertyTypes`. Blocks are extracted from the markdown at test time, so a doc
 * cannot drift from what compiles; the names a snippet takes from the surrounding app (`db`,
 * `id`, …) are declared in `prelude.d.ts` below. A block fenced as ```ts ignore is left out,
 * and so are ```ts file=… blocks (an app's files, compiled by their doc's own test).
 * One program per setting keeps this to a few seconds of tsc.
 */
const root = resolve(dirname(fileURLToPath(import.meta.url)), "../..");

const prelude = `
interface User { id: string; name: string }
interface Post { id: number; userId: number; title: string; body: string }
declare const id: string;
declare const authorId: string;
declare const user: User;
declare const API: string;
declare const db: {
  users: { find(id: string): Promise<User> };
  posts: { find(id: string): Promise<Post>; list(): Promise<Post[]> };
};
declare const cache: import("cachet").Cache;
declare const myCluster: ReturnType<typeof import("redis").createCluster>;
declare function listPosts(query?: unknown): Promise<Post[]>;
declare function idFrom(url: string): string;
// Route handlers, whose own types are the framework's business.
declare const getPost: any;
declare const getMe: any;
declare const createPost: any;
`;

/** Names a doc's snippets take from the doc's running example: its Fastify app. */
const fastifyApp = `import type { FastifyInstance } from "fastify";
import type {} from "cachet/fastify";
declare const app: FastifyInstance;
`;
const docPreludes: Record<string, string> = {
  "docs/invalidation.md": fastifyApp,
};

/** What docs/stores.md's contract-suite example imports from the user's own code. */
const myStoreModule = `import type { Store } from "cachet";
export declare function myStore(options: { url?: string | undefined; [option: string]: unknown }): Store;
`;
interface Snippet {
  doc: string;
  line: number;
  file: string;
  /** Lines added in front of the block (its doc's prelude). */
  offset: number;
}

function extractSnippets(dir: string): Snippet[] {
  const docs = [
    "README.md",
    ...readdirSync(join(root, "docs"))
      .filter((f) => f.endsWith(".md"))
      .map((f) => `docs/${f}`),
  ];
  const snippets: Snippet[] = [];
  for (const doc of docs) {
    const text = readFileSync(join(root, doc), "utf8");
    const fence = /^```ts[ \t]*([^\n]*)\n([\s\S]*?)^```/gm;
    for (let m = fence.exec(text); m !== null; m = fence.exec(text)) {
      // `ts file=…` blocks are files of an app, compiled together with the app's own settings
      // by their doc's test (docs/nestjs.md: test/nestjs/guide.test.ts).
      if (m[1] === "ignore" || m[1]?.startsWith("file=")) continue;
      const body = m[2] ?? "";
      const line = text.slice(0, m.index).split("\n").length + 1;
      // In test/, as a consumer's test file would be (stores.md imports "../src/my-store.js").
      const file = join(dir, "test", `${doc.replace(/[/.]/g, "_")}_${line}.ts`);
      const head = docPreludes[doc] ?? "";
      // Every snippet is its own module, so that two snippets may both declare `cache`.
      writeFileSync(file, `${head}${body}\nexport {};\n`);
      snippets.push({ doc, line, file, offset: head.split("\n").length - 1 });
    }
  }
  return snippets;
}

interface Setting {
  name: string;
  options: ts.CompilerOptions;
  /** Diagnostics that say only that the setting has no top-level await, which snippets use for brevity. */
  ignore?: readonly number[];
}

const common: ts.CompilerOptions = {
  target: ts.ScriptTarget.ES2022,
  lib: ["lib.es2023.d.ts"],
  types: ["node"],
  strict: true,
  exactOptionalPropertyTypes: true,
  noEmit: true,
  skipLibCheck: true,
  esModuleInterop: true,
};

const settings: Setting[] = [
  {
    name: "module commonjs, moduleResolution node10 (NestJS's defaults)",
    options: { module: ts.ModuleKind.CommonJS, moduleResolution: ts.ModuleResolutionKind.Node10 },
    ignore: [1375, 1378],
  },
  {
    name: "module node16",
    options: { module: ts.ModuleKind.Node16, moduleResolution: ts.ModuleResolutionKind.Node16 },
  },
  {
    name: "module nodenext",
    options: { module: ts.ModuleKind.NodeNext, moduleResolution: ts.ModuleResolutionKind.NodeNext },
  },
  {
    name: "module esnext, moduleResolution bundler",
    options: { module: ts.ModuleKind.ESNext, moduleResolution: ts.ModuleResolutionKind.Bundler },
  },
];

describe("README and docs snippets compile against the built package", () => {
  let dir: string;
  let snippets: Snippet[];

  before(() => {
    dir = mkdtempSync(join(tmpdir(), "cachet-snippets-"));
    // A consumer's project: its own package.json (ESM, as the docs' top-level await assumes) and
    // node_modules holding cachet itself plus the peers and types the snippets import.
    consumerProject(dir, "module");
    writeFileSync(join(dir, "prelude.d.ts"), prelude);
    mkdirSync(join(dir, "src"));
    mkdirSync(join(dir, "test"));
    writeFileSync(join(dir, "src", "my-store.ts"), myStoreModule);
    snippets = extractSnippets(dir);
  });

  after(() => rmSync(dir, { recursive: true, force: true }));

  it("finds the snippets", () => {
    assert.ok(snippets.length >= 20, `only ${snippets.length} ts blocks found`);
  });

  for (const setting of settings) {
    it(`${setting.name}, strict, exactOptionalPropertyTypes`, () => {
      const files = [join(dir, "prelude.d.ts"), ...snippets.map((s) => s.file)];
      const program = ts.createProgram(files, { ...common, ...setting.options });
      const diagnostics = ts
        .getPreEmitDiagnostics(program)
        .filter((d) => !setting.ignore?.includes(d.code));
      const where = new Map(snippets.map((s) => [s.file, s]));
      const report = diagnostics.map((d) => {
        const message = ts.flattenDiagnosticMessageText(d.messageText, "\n");
        if (!d.file || d.start === undefined) return `TS${d.code}: ${message}`;
        const { line } = d.file.getLineAndCharacterOfPosition(d.start);
        const snippet = where.get(d.file.fileName);
        const at = snippet
          ? `${snippet.doc}:${snippet.line + line - snippet.offset}`
          : `${d.file.fileName}:${line + 1}`;
        return `${at} TS${d.code}: ${message}`;
      });
      assert.equal(report.length, 0, `\n${report.join("\n")}`);
    });
  }
});
