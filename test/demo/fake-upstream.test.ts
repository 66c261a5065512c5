import assert from "node:assert/strict";
import { after, before, beforeEach, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { fakeUpstreamReady, startChild } from "../../demo/child.js";
import {
  type FakeUpstream,
  POSTS,
  type Post,
  startFakeUpstream,
} from "../../demo/fake-upstream.js";
import { waitFor } from "../helpers/ports.js";

describe("fake upstream", () => {
  let fake: FakeUpstream;
  before(async () => {
    fake = await startFakeUpstream({ latencyMs: 0 });
  });
  after(() => fake.close());
  beforeEach(() => {
    fake.reset();
    fake.setLatency(0);
  });

  it("serves 100 jsonplaceholder-shaped posts, pretty-printed, about 27 KB", async () => {
    const response = await fetch(`${fake.url}/posts`);
    assert.equal(response.status, 200);
    assert.match(response.headers.get("content-type") ?? "", /^application\/json/);
    const text = await response.text();
    const bytes = Buffer.byteLength(text);
    assert.ok(bytes > 25_000 && bytes < 30_000, `${bytes} bytes`);
    assert.ok(text.startsWith('[\n  {\n    "userId": 1,\n    "id": 1,'), text.slice(0, 60));
    const posts = JSON.parse(text) as Post[];
    assert.equal(posts.length, 100);
    assert.deepEqual(
      posts.map((p) => p.id),
      Array.from({ length: 100 }, (_, i) => i + 1),
    );
    for (const post of posts) {
      assert.deepEqual(Object.keys(post), ["userId", "id", "title", "body"]);
      assert.equal(post.userId, Math.ceil(post.id / 10));
      assert.ok(post.title.length > 0 && post.body.includes("\n"));
    }
  });

  it("is deterministic: the same bytes from another instance", async () => {
    const other = await startFakeUpstream({ latencyMs: 0 });
    try {
      const [a, b] = await Promise.all([
        fetch(`${fake.url}/posts`).then((r) => r.text()),
        fetch(`${other.url}/posts`).then((r) => r.text()),
      ]);
      assert.equal(a, b);
      assert.equal(a, JSON.stringify(POSTS, null, 2));
    } finally {
      await other.close();
    }
  });

  it("filters /posts by query (?userId=N)", async () => {
    const posts = (await (await fetch(`${fake.url}/posts?userId=3`)).json()) as Post[];
    assert.deepEqual(
      posts.map((p) => p.id),
      [21, 22, 23, 24, 25, 26, 27, 28, 29, 30],
    );
    const none = (await (await fetch(`${fake.url}/posts?userId=99`)).json()) as Post[];
    assert.deepEqual(none, []);
  });

  it("serves /posts/:id and answers 404 {} for an unknown id", async () => {
    const post = (await (await fetch(`${fake.url}/posts/42`)).json()) as Post;
    assert.deepEqual(post, POSTS[41]);
    for (const path of ["/posts/0", "/posts/101", "/posts/abc", "/comments"]) {
      const response = await fetch(`${fake.url}${path}`);
      assert.equal(response.status, 404, path);
      assert.deepEqual(await response.json(), {});
    }
  });

  it("counts API calls, not control calls, and resets", async () => {
    await fetch(`${fake.url}/posts`).then((r) => r.arrayBuffer());
    await fetch(`${fake.url}/posts/1`).then((r) => r.arrayBuffer());
    const stats = await (await fetch(`${fake.url}/__stats`)).json();
    assert.deepEqual(stats, { calls: 2, mode: "ok", latencyMs: 0 });
    assert.equal(fake.calls(), 2);
    const reset = await fetch(`${fake.url}/__control`, {
      method: "POST",
      body: JSON.stringify({ reset: true }),
    });
    assert.deepEqual(await reset.json(), { calls: 0, mode: "ok", latencyMs: 0 });
    assert.equal(fake.calls(), 0);
  });

  it("waits its latency before answering", async () => {
    fake.setLatency(80);
    const start = performance.now();
    await fetch(`${fake.url}/posts/1`).then((r) => r.arrayBuffer());
    const elapsed = performance.now() - start;
    assert.ok(elapsed >= 75, `${elapsed} ms`);
  });

  it("fails with 500, or sends invalid JSON, when told to (over HTTP or in process)", async () => {
    await fetch(`${fake.url}/__control`, {
      method: "POST",
      body: JSON.stringify({ mode: "fail" }),
    });
    const failed = await fetch(`${fake.url}/posts`);
    assert.equal(failed.status, 500);
    await failed.arrayBuffer();

    fake.setMode("invalid-json");
    const invalid = await fetch(`${fake.url}/posts`);
    assert.equal(invalid.status, 200);
    await assert.rejects(invalid.json(), SyntaxError);

    fake.setMode("ok");
    assert.equal((await fetch(`${fake.url}/posts/1`)).status, 200);
    assert.equal(fake.calls(), 3);
  });

  it("hangs when told to, until closed", async () => {
    const hanging = await startFakeUpstream({ latencyMs: 0 });
    let closed = false;
    try {
      hanging.setMode("hang");
      const request = fetch(`${hanging.url}/posts`, { signal: AbortSignal.timeout(150) });
      await assert.rejects(request, (error: Error) => error.name === "TimeoutError");
      assert.equal(hanging.calls(), 1);
      const pending = fetch(`${hanging.url}/posts`).catch((error: Error) => error);
      await waitFor(() => hanging.calls() === 2, "the second call to arrive");
      // close() must not wait for the hanging request; the client sees the socket end.
      await hanging.close();
      closed = true;
      assert.ok((await pending) instanceof Error);
    } finally {
      if (!closed) await hanging.close();
    }
  });

  it("rejects a bad control request with 400", async () => {
    for (const body of ['{"mode":"explode"}', '{"latencyMs":-1}', "not json"]) {
      const response = await fetch(`${fake.url}/__control`, { method: "POST", body });
      assert.equal(response.status, 400, body);
      assert.ok(typeof ((await response.json()) as { error: string }).error === "string");
    }
    const stats = (await (await fetch(`${fake.url}/__stats`)).json()) as { mode: string };
    assert.equal(stats.mode, "ok");
  });

  it("runs standalone: node demo/dist/fake-upstream.js with FAKE_UPSTREAM_PORT/LATENCY", async () => {
    const child = await startChild({
      name: "fake upstream",
      script: fileURLToPath(new URL("../../demo/dist/fake-upstream.js", import.meta.url)),
      env: { FAKE_UPSTREAM_PORT: "0", FAKE_UPSTREAM_LATENCY: "20" },
      ready: fakeUpstreamReady,
    });
    try {
      const posts = (await (await fetch(`${child.url}/posts?userId=1`)).json()) as Post[];
      assert.equal(posts.length, 10);
      assert.deepEqual(await (await fetch(`${child.url}/__stats`)).json(), {
        calls: 1,
        mode: "ok",
        latencyMs: 20,
      });
    } finally {
      assert.equal(await child.stop(), 0);
    }
  });

  it("standalone: a malformed FAKE_UPSTREAM_LATENCY stops it with a message naming it", async () => {
    await assert.rejects(
      startChild({
        name: "fake upstream",
        script: fileURLToPath(new URL("../../demo/dist/fake-upstream.js", import.meta.url)),
        env: { FAKE_UPSTREAM_PORT: "0", FAKE_UPSTREAM_LATENCY: "slow" },
        ready: fakeUpstreamReady,
      }),
      /exited \(1\)[\s\S]*FAKE_UPSTREAM_LATENCY/,
    );
  });
});
