import { createHash } from "node:crypto";
/**
 * A jsonplaceholder-shaped fake of the article's slow upstream, so that the demo, its tests and
 * the before/after comparison run offline: 100 deterministic posts, a configurable latency, a
 * counter of API calls, and control endpoints to make it fail.
 *
 * Standalone: `node demo/dist/fake-upstream.js` (`FAKE_UPSTREAM_PORT`, default 3001, `0` for any
 * free port; `FAKE_UPSTREAM_HOST`, default 127.0.0.1; `FAKE_UPSTREAM_LATENCY` in ms, default 100).
 * It prints `fake upstream listening on <url>` once it accepts connections.
 *
 * Control endpoints (not counted as calls):
 * - `GET /__stats` → `{ "calls": n, "mode": "ok", "latencyMs": 100 }`
 * - `POST /__control` with a JSON body
 *   `{ "mode"?: Mode, "latencyMs"?: number, "reset"?: true, "edit"?: { "id": n, "title"?: s, "body"?: s } }`;
 *   `reset` zeroes the counter, returns to mode `ok` and undoes edits before the other fields
 *   apply; `edit` changes a post (as an update made at the origin would), so that tests can
 *   tell a fresh body from a stale one.
 */
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { pathToFileURL } from "node:url";

/** How the fake answers API calls. */
export type FakeMode = "ok" | "fail" | "invalid-json" | "hang";
const MODES: readonly FakeMode[] = ["ok", "fail", "invalid-json", "hang"];

/** A post, with jsonplaceholder's fields in jsonplaceholder's order. */
export interface Post {
  userId: number;
  id: number;
  title: string;
  body: string;
}

const WORDS = (
  "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt ut " +
  "labore et dolore magna aliqua enim ad minim veniam quis nostrud exercitation ullamco laboris " +
  "nisi aliquip ex ea commodo consequat duis aute irure in reprehenderit voluptate velit esse " +
  "cillum fugiat nulla pariatur excepteur sint occaecat cupidatat non proident sunt culpa qui " +
  "officia deserunt mollit anim id est laborum quia molestiae repellat nesciunt doloribus " +
  "accusamus facere recusandae architecto rerum eveniet voluptatem occaecati officiis"
).split(" ");

/** mulberry32: a tiny seeded PRNG, so that every run serves the same posts. */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

function sentence(next: () => number, min: number, max: number): string {
  const count = min + Math.floor(next() * (max - min + 1));
  const words: string[] = [];
  for (let i = 0; i < count; i++) words.push(WORDS[Math.floor(next() * WORDS.length)]!);
  return words.join(" ");
}

/** The 100 posts: ten users with ten posts each, like jsonplaceholder. */
export const POSTS: readonly Post[] = Object.freeze(
  Array.from({ length: 100 }, (_, i) => {
    const id = i + 1;
    const next = random(id * 7919);
    const title = sentence(next, 4, 9);
    const body = Array.from({ length: 4 }, () => sentence(next, 4, 7)).join("\n");
    return Object.freeze({ userId: Math.ceil(id / 10), id, title, body });
  }),
);

/** jsonplaceholder pretty-prints with two spaces; so does the fake. */
const encode = (value: unknown) => Buffer.from(JSON.stringify(value, null, 2), "utf8");

/** `/posts?field=value…` keeps the posts whose fields equal every given value (json-server's rule). */
function filterPosts(all: readonly Post[], search: URLSearchParams): Post[] {
  let posts = [...all];
  for (const [name, value] of search) {
    if (!(name in POSTS[0]!)) continue;
    posts = posts.filter((p) => String(p[name as keyof Post]) === value);
  }
  return posts;
}

/** The fields of a post that {@link FakeUpstream.editPost} may change. */
export type PostEdit = Partial<Pick<Post, "title" | "body">>;

export interface FakeUpstreamOptions {
  /** Port to listen on; `0` picks a free one. @default 0 */
  port?: number;
  /** @default "127.0.0.1" */
  host?: string;
  /** Delay before each API answer, in ms. @default 100 */
  latencyMs?: number;
}

export interface FakeUpstream {
  /** Base URL, e.g. `http://127.0.0.1:41234`. */
  readonly url: string;
  readonly port: number;
  /** API calls received since start or the last reset (control endpoints excluded). */
  calls(): number;
  /** Of those, the ones answered 304 (a conditional request whose ETag still matched). */
  notModified(): number;
  setMode(mode: FakeMode): void;
  setLatency(ms: number): void;
  /** Change post `id` (1–100) from now on, as an update at the origin would. */
  editPost(id: number, edit: PostEdit): void;
  /** Zero the counter, go back to mode `ok`, and undo every edit. */
  reset(): void;
  /** Stop listening and end every open connection, hanging ones included. */
  close(): Promise<void>;
}

/** Start the fake upstream on `node:http`. */
export async function startFakeUpstream(options: FakeUpstreamOptions = {}): Promise<FakeUpstream> {
  const host = options.host ?? "127.0.0.1";
  let latencyMs = checkLatency(options.latencyMs ?? 100);
  let mode: FakeMode = "ok";
  let calls = 0;
  let notModified = 0;
  const timers = new Set<NodeJS.Timeout>();
  const posts = new Posts();

  const later = (fn: () => void) => {
    const timer = setTimeout(() => {
      timers.delete(timer);
      fn();
    }, latencyMs);
    timers.add(timer);
  };

  const server = createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://fake");
    if (url.pathname === "/__stats" && req.method === "GET") {
      return send(res, 200, encode({ calls, mode, latencyMs }));
    }
    if (url.pathname === "/__control" && req.method === "POST") {
      return control(req, res);
    }
    calls++;
    const current = mode; // the mode when the call arrived decides its answer
    if (current === "hang") return; // never answer; close() ends the socket
    const answer = route(posts, req.method ?? "GET", url);
    later(() => {
      if (current === "fail") return send(res, 500, encode({ error: "fake upstream failure" }));
      if (current === "invalid-json") {
        return send(res, 200, Buffer.from('[{"userId": 1, "id": 1, "title": "trunc'));
      }
      if (send(res, answer.status, answer.body)) notModified++;
    });
  });

  function control(req: IncomingMessage, res: ServerResponse) {
    let raw = "";
    req.setEncoding("utf8");
    req.on("data", (chunk: string) => {
      raw += chunk;
    });
    req.on("end", () => {
      try {
        const body = (raw === "" ? {} : JSON.parse(raw)) as {
          mode?: unknown;
          latencyMs?: unknown;
          reset?: unknown;
          edit?: unknown;
        };
        if (body.mode !== undefined && !MODES.includes(body.mode as FakeMode)) {
          throw new Error(`mode must be one of ${MODES.join(", ")}`);
        }
        const nextLatency = body.latencyMs === undefined ? latencyMs : checkLatency(body.latencyMs);
        const edit = body.edit === undefined ? undefined : checkEdit(body.edit);
        if (body.reset === true) {
          calls = 0;
          notModified = 0;
          mode = "ok";
          posts.reset();
        }
        if (edit) posts.edit(edit.id, edit);
        if (body.mode !== undefined) mode = body.mode as FakeMode;
        latencyMs = nextLatency;
        send(res, 200, encode({ calls, mode, latencyMs }));
      } catch (error) {
        send(res, 400, encode({ error: (error as Error).message }));
      }
    });
  }

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port ?? 0, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  const url = `http://${host.includes(":") ? `[${host}]` : host}:${port}`;

  return {
    url,
    port,
    calls: () => calls,
    notModified: () => notModified,
    setMode(next) {
      if (!MODES.includes(next)) throw new Error(`mode must be one of ${MODES.join(", ")}`);
      mode = next;
    },
    setLatency(next) {
      latencyMs = checkLatency(next);
    },
    editPost(id, edit) {
      const checked = checkEdit({ ...edit, id });
      posts.edit(checked.id, checked);
    },
    reset() {
      calls = 0;
      notModified = 0;
      mode = "ok";
      posts.reset();
    },
    close() {
      for (const timer of timers) clearTimeout(timer);
      timers.clear();
      return new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    },
  };
}

/** The posts as served now: {@link POSTS} with edits, and `/posts` encoded once per change. */
class Posts {
  #all: readonly Post[] = POSTS;
  #encoded: Buffer = encode(POSTS);

  get all(): readonly Post[] {
    return this.#all;
  }

  /** The whole list, encoded (the article's 27 KB body). */
  get encoded(): Buffer {
    return this.#encoded;
  }

  edit(id: number, edit: PostEdit): void {
    this.#all = this.#all.map((post) => (post.id === id ? { ...post, ...edit } : post));
    this.#encoded = encode(this.#all);
  }

  reset(): void {
    if (this.#all === POSTS) return;
    this.#all = POSTS;
    this.#encoded = encode(POSTS);
  }
}

function route(posts: Posts, method: string, url: URL): { status: number; body: Buffer } {
  if (method !== "GET" && method !== "HEAD") return { status: 405, body: encode({}) };
  if (url.pathname === "/posts" || url.pathname === "/posts/") {
    return {
      status: 200,
      body: url.search === "" ? posts.encoded : encode(filterPosts(posts.all, url.searchParams)),
    };
  }
  const match = /^\/posts\/(\d+)\/?$/.exec(url.pathname);
  const post = match ? posts.all[Number(match[1]) - 1] : undefined;
  // jsonplaceholder answers an unknown id, and an unknown path, with 404 and `{}`.
  return post ? { status: 200, body: encode(post) } : { status: 404, body: encode({}) };
}

/**
 * Answer like jsonplaceholder (Express): a weak ETag on 200s, and 304 without a body when the
 * request's `If-None-Match` names it, so that a client revalidating unchanged data moves no body.
 */
function send(res: ServerResponse, status: number, body: Buffer): boolean {
  if (res.destroyed) return false;
  const etag = `W/"${body.length.toString(16)}-${createHash("sha1").update(body).digest("base64").slice(0, 27)}"`;
  const inm = res.req.headers["if-none-match"];
  if (status === 200 && typeof inm === "string" && inm.split(",").some((t) => t.trim() === etag)) {
    res.writeHead(304, { etag });
    res.end();
    return true;
  }
  res.writeHead(status, {
    "content-type": "application/json; charset=utf-8",
    "content-length": body.length,
    ...(status === 200 ? { etag } : {}),
  });
  res.end(res.req.method === "HEAD" ? undefined : body);
  return false;
}

function checkEdit(value: unknown): PostEdit & { id: number } {
  const edit = value as { id?: unknown; title?: unknown; body?: unknown } | null;
  if (
    typeof edit !== "object" ||
    edit === null ||
    !Number.isInteger(edit.id) ||
    (edit.id as number) < 1 ||
    (edit.id as number) > POSTS.length ||
    (edit.title !== undefined && typeof edit.title !== "string") ||
    (edit.body !== undefined && typeof edit.body !== "string")
  ) {
    throw new Error(
      `edit must be { id: 1..${POSTS.length}, title?: string, body?: string }, got ${JSON.stringify(value)}`,
    );
  }
  return {
    id: edit.id as number,
    ...(edit.title !== undefined ? { title: edit.title as string } : {}),
    ...(edit.body !== undefined ? { body: edit.body as string } : {}),
  };
}

function checkLatency(value: unknown): number {
  if (typeof value !== "number" || !Number.isFinite(value) || value < 0) {
    throw new Error(
      `latencyMs must be a non-negative number of milliseconds, got ${String(value)}`,
    );
  }
  return value;
}

async function main(): Promise<void> {
  const rawPort = process.env.FAKE_UPSTREAM_PORT ?? "3001";
  const rawLatency = process.env.FAKE_UPSTREAM_LATENCY ?? "100";
  const port = Number(rawPort);
  const latencyMs = Number(rawLatency);
  if (!/^\d+$/.test(rawPort) || port > 65_535) {
    throw new Error(
      `FAKE_UPSTREAM_PORT: expected a port from 0 to 65535, got ${JSON.stringify(rawPort)}`,
    );
  }
  if (!/^\d+(\.\d+)?$/.test(rawLatency)) {
    throw new Error(
      `FAKE_UPSTREAM_LATENCY: expected a non-negative number of milliseconds, got ${JSON.stringify(rawLatency)}`,
    );
  }
  const fake = await startFakeUpstream({
    port,
    latencyMs,
    host: process.env.FAKE_UPSTREAM_HOST ?? "127.0.0.1",
  });
  console.log(`fake upstream listening on ${fake.url} (latency ${latencyMs} ms)`);
  const stop = () => {
    void fake.close().then(() => process.exit(0));
  };
  process.once("SIGINT", stop);
  process.once("SIGTERM", stop);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((error: Error) => {
    console.error(`fake upstream: ${error.message}`);
    process.exit(1);
  });
}
