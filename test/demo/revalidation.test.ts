import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { Child } from "../../demo/child.js";
import { type FakeUpstream, startFakeUpstream } from "../../demo/fake-upstream.js";
import { startService } from "./helpers.js";

/**
 * The demo refreshing unchanged data: the stale entry is revalidated with the upstream's ETag,
 * the upstream answers 304, and no body crosses the wire again. The service is a separate
 * process with a real clock, so this test waits past a 1 s ttl once.
 */
describe("demo service: a refresh of unchanged data moves no body", { timeout: 60_000 }, () => {
  let fake: FakeUpstream;
  let service: Child;

  before(async () => {
    fake = await startFakeUpstream({ latencyMs: 5 });
    service = await startService({
      UPSTREAM_URL: fake.url,
      CACHE_STORE: "memory",
      CACHE_TTL: "1s",
      CACHE_STALE_IF_ERROR: "5m",
    });
  });
  after(async () => {
    await service?.stop();
    await fake?.close();
  });

  it("revalidates the stale entry with If-None-Match; the upstream's 304 freshens it", async () => {
    const first = await fetch(`${service.url}/posts/3`);
    const body = await first.text();
    assert.equal(first.status, 200);
    assert.equal(fake.calls(), 1);
    await new Promise((r) => setTimeout(r, 1_200));
    const refreshed = await fetch(`${service.url}/posts/3`);
    assert.equal(refreshed.status, 200);
    assert.equal(await refreshed.text(), body, "the stored body, whole");
    assert.match(String(refreshed.headers.get("cache-status")), /fwd=stale/);
    assert.equal(fake.calls(), 2);
    assert.equal(fake.notModified(), 1, "the upstream answered 304: no body moved");
    const hit = await fetch(`${service.url}/posts/3`);
    assert.match(String(hit.headers.get("cache-status")), /^cachet; hit/);
    assert.equal(await hit.text(), body);
  });
});
