import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, it } from "node:test";
import { Registry } from "prom-client";
import { createCache } from "../../src/index.js";
import { prometheusMetrics } from "../../src/metrics/prometheus.js";

interface Panel {
  readonly type: string;
  readonly title: string;
  readonly targets?: ReadonlyArray<{ readonly expr: string }>;
}

const dashboard = JSON.parse(
  readFileSync(new URL("../../docs/grafana-dashboard.json", import.meta.url), "utf8"),
) as { title: string; uid: string; panels: Panel[] };

describe("docs/grafana-dashboard.json", () => {
  it("queries only metrics that cachet/prometheus registers, with their labels", async () => {
    const register = new Registry();
    prometheusMetrics(createCache(), { register });
    const metrics = await register.getMetricsAsJSON();
    const known = new Map<string, string>();
    for (const m of metrics) {
      const type = String(m.type);
      known.set(m.name, type);
      if (type === "histogram") {
        for (const suffix of ["_bucket", "_count", "_sum"]) known.set(m.name + suffix, type);
      }
    }
    const labelsOf = (name: string): Set<string> => {
      const base = name.replace(/_(bucket|count|sum)$/, "");
      const metric = register.getSingleMetric(known.has(base) ? base : name) as unknown as {
        labelNames?: string[];
      };
      const names = new Set([...(metric?.labelNames ?? []), "job", "instance"]);
      if (name.endsWith("_bucket")) names.add("le");
      return names;
    };
    const exprs = dashboard.panels.flatMap((p) => (p.targets ?? []).map((t) => t.expr));
    assert.ok(exprs.length >= 20, `${exprs.length} queries`);
    const used = new Set<string>();
    for (const expr of exprs) {
      for (const [, name] of expr.matchAll(/\b(cachet_[a-z_]+)\b/g)) {
        assert.ok(known.has(name!), `${name} in ${expr} is not a cachet metric`);
        used.add(name!.replace(/_(bucket|count|sum)$/, ""));
      }
      // Grouping and matching use labels the metric has.
      for (const [, by, name] of expr.matchAll(
        /by \(([^)]*)\) \((?:rate|increase|max|min)?\(?(cachet_[a-z_]+)\{/g,
      )) {
        for (const label of by!.split(",").map((l) => l.trim())) {
          if (label === "le" && name!.endsWith("_bucket")) continue;
          assert.ok(labelsOf(name!).has(label), `${name} has no label ${label}: ${expr}`);
        }
      }
      for (const [, name, matchers] of expr.matchAll(/(cachet_[a-z_]+)\{([^}]*)\}/g)) {
        for (const [, label] of matchers!.matchAll(/([a-z_]+)\s*(?:=~|!=|=)/g)) {
          assert.ok(labelsOf(name!).has(label!), `${name} has no label ${label}: ${expr}`);
        }
      }
      // Counters are read as rates or increases, never raw.
      for (const [, name] of expr.matchAll(/\b(cachet_[a-z_]+_total)\b/g)) {
        assert.match(expr, new RegExp(`(rate|increase)\\(${name}\\{`), expr);
      }
    }
    // Every metric is on the dashboard somewhere.
    const registered = metrics.map((m) => m.name).sort();
    assert.deepEqual(
      registered.filter((n) => !used.has(n)),
      [],
    );
  });

  it("is a dashboard Grafana can import: unique panel ids, a datasource variable", () => {
    const raw = JSON.parse(
      readFileSync(new URL("../../docs/grafana-dashboard.json", import.meta.url), "utf8"),
    ) as {
      panels: Array<{ id: number; gridPos: { w: number; h: number } }>;
      templating: { list: Array<{ name: string; type: string }> };
    };
    const ids = raw.panels.map((p) => p.id);
    assert.equal(new Set(ids).size, ids.length);
    assert.ok(raw.panels.every((p) => p.gridPos.w > 0 && p.gridPos.w <= 24 && p.gridPos.h > 0));
    assert.ok(raw.templating.list.some((v) => v.name === "datasource" && v.type === "datasource"));
    assert.equal(dashboard.uid, "cachet-overview");
  });
});
