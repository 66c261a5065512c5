import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { FastifyInstance } from "fastify";
import { buildApp } from "../../demo/app.js";
import { loadConfig } from "../../demo/config.js";
import { type FakeUpstream, startFakeUpstream } from "../../demo/fake-upstream.js";

/** The value of the series whose line starts with `series` (name and labels as exposed). */
function sample(text: string, series: string): number | undefined {
  const line = text.split("\n").find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

for (const store of ["memory", "none"] as const) {
  describe(`demo GET /metrics (CACHE_STORE=${store})`, () => {
    let fake: FakeUpstream;
    let app: FastifyInstance;

    before(async () => {
      fake = await startFakeUpstream({ latencyMs: 0 });
      app = await buildApp(
        loadConfig({
          UPSTREAM_URL: fake.url,
          UPSTREAM_TIMEOUT: "0.3",
          CACHE_STORE: store,
          LOG_LEVEL: "silent",
        }),
      );
      await app.ready();
    });
    after(async () => {
      try {
        await app?.close();
      } finally {
        await fake?.close();
      }
    });

    it("serves the Prometheus text format, never cached", async () => {
      for (const url of ["/posts/1", "/posts/1", "/posts/1", "/posts/2", "/posts?userId=3"]) {
        assert.equal((await app.inject({ url })).statusCode, 200);
      }
      const response = await app.inject({ url: "/metrics" });
      assert.equal(response.statusCode, 200);
      assert.match(String(response.headers["content-type"]), /^text\/plain; version=0\.0\.4/);
      assert.equal(response.headers["cache-control"], "no-store");
      assert.equal(response.headers["cache-status"], undefined);
      const text = response.body;
      if (store === "none") {
        assert.doesNotMatch(text, /^cachet_/m, "no cache, no cache metrics");
        return;
      }
      const route = (pattern: string, outcome: string) =>
        `cachet_http_requests_total{route="GET ${pattern}",method="GET",outcome="${outcome}",reason=""}`;
      assert.equal(sample(text, route("/posts/:id", "stored")), 2);
      assert.equal(sample(text, route("/posts/:id", "hit")), 2);
      assert.equal(sample(text, route("/posts", "stored")), 1);
      assert.equal(sample(text, 'cachet_hits_total{namespace="http",tier="l1"}'), 2);
      assert.equal(sample(text, 'cachet_misses_total{namespace="http"}'), 3);
      assert.equal(
        sample(text, 'cachet_factory_duration_seconds_count{namespace="http",outcome="ok"}'),
        3,
      );
      assert.ok((sample(text, "cachet_memory_entries") ?? 0) >= 3);
      // Labels are route patterns: no URL, id or query string ever becomes one.
      assert.doesNotMatch(text, /\/posts\/[0-9]|userId/);
    });
  });
}
