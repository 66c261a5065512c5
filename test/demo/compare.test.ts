import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { median, percentile, table } from "../../demo/stats.js";
import { waitFor } from "../helpers/ports.js";

const COMPARE = fileURLToPath(new URL("../../demo/dist/compare.js", import.meta.url));

function run(args: string[], timeoutMs = 60_000): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, [COMPARE, ...args], { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    proc.stdout.on("data", (d) => {
      out += d;
    });
    proc.stderr.on("data", (d) => {
      out += d;
    });
    const timer = setTimeout(() => {
      proc.kill("SIGKILL");
      reject(new Error(`compare still running after ${timeoutMs} ms:\n${out}`));
    }, timeoutMs);
    proc.once("close", (code) => {
      clearTimeout(timer);
      resolve({ code, out });
    });
  });
}

describe("comparison statistics", () => {
  it("median of odd and even counts, order-independent", () => {
    assert.equal(median([3, 1, 2]), 2);
    assert.equal(median([4, 1, 3, 2]), 2.5);
    assert.equal(median([7]), 7);
  });

  it("nearest-rank percentiles", () => {
    const values = Array.from({ length: 100 }, (_, i) => 100 - i); // 100..1, unsorted
    assert.equal(percentile(values, 95), 95);
    assert.equal(percentile(values, 50), 50);
    assert.equal(percentile(values, 100), 100);
    assert.equal(percentile([5, 1], 95), 5);
  });

  it("aligns a table: first column left, others right", () => {
    assert.equal(
      table([
        ["name", "n", "ms"],
        ["before", "50", "104.8"],
        ["after", "1 + 50", "0.9"],
      ]),
      ["name          n      ms", "before       50   104.8", "after    1 + 50     0.9"].join("\n"),
    );
  });
});

describe("npm run demo (demo/dist/compare.js)", { timeout: 120_000 }, () => {
  it("shows cached responses at least 10x faster, with one upstream call after warm-up", async () => {
    const { code, out } = await run(["--requests", "15"]);
    assert.equal(code, 0, out);
    assert.match(out, /\[before\] starting the service with CACHE_STORE=none/);
    assert.match(out, /\[after\] warm-up request \(miss\): .*cachet; fwd=uri-miss; stored/);

    const before = /^before \(no cache\)\s+(\d+)\s+([\d.]+) ms\s+([\d.]+) ms\s+(\d+)$/m.exec(out);
    const after = /^after \(memory cache\)\s+1 \+ (\d+)\s+([\d.]+) ms\s+([\d.]+) ms\s+(\d+)$/m.exec(
      out,
    );
    assert.ok(before && after, out);
    assert.equal(before[1], "15");
    assert.equal(after[1], "15");
    assert.equal(before[4], "15", "every uncached request reached the upstream");
    assert.equal(after[4], "1", "only the warm-up reached the upstream");
    assert.ok(
      Number(before[2]) >= 100,
      `uncached median ${before[2]} ms (upstream latency is 100 ms)`,
    );
    const speedup = Number(before[2]) / Number(after[2]);
    assert.ok(speedup >= 10, `speedup ${speedup.toFixed(1)}x`);
    assert.match(out, /speedup \(median\): \d+x/);
    // Every timed request is a hit, or shares the warm-up's response while it is being stored.
    const cache = /cache hits: (\d+)\/15(?: \(\+(\d+) collapsed onto the warm-up\))?/.exec(out);
    assert.ok(cache, out);
    assert.equal(Number(cache[1]) + Number(cache[2] ?? 0), 15, out);
  });

  it("Ctrl-C mid-run stops its child processes", async () => {
    const proc = spawn(process.execPath, [COMPARE, "--requests", "1000"], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    proc.stdout.on("data", (d) => {
      out += d;
    });
    const exited = new Promise<number | null>((resolve) => proc.once("close", resolve));
    try {
      await Promise.race([
        waitFor(() => /\[before\] listening on /.test(out), "the service to start", 15_000),
        exited.then((code) => {
          throw new Error(`compare exited (${code}) early:\n${out}`);
        }),
      ]);
      const upstream = /fake jsonplaceholder listening on (\S+)/.exec(out)![1]!;
      const service = /\[before\] listening on (\S+)/.exec(out)![1]!;
      assert.equal((await fetch(`${service}/health`)).status, 200);
      proc.kill("SIGINT");
      assert.equal(await exited, 130);
      for (const url of [`${upstream}/__stats`, `${service}/health`]) {
        await waitFor(
          () =>
            fetch(url).then(
              () => false,
              () => true,
            ),
          `${url} to stop answering`,
        );
      }
    } finally {
      proc.kill("SIGKILL");
    }
  });

  it("rejects a bad --requests with a message and a non-zero exit", async () => {
    const { code, out } = await run(["--requests", "zero"]);
    assert.equal(code, 1);
    assert.match(out, /--requests: expected a whole number/);
  });
});
