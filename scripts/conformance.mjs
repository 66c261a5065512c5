#!/usr/bin/env node
// The public HTTP cache conformance suite (github.com/http-tests/cache-tests) against
// `cachet proxy`: starts the suite's origin and the proxy in front of it, runs the suite's
// client, classifies each result exactly as the suite's own site does (its
// determineTestResult, dependencies honoured), and writes conformance/RESULTS.md next to the
// results the suite publishes for other caches.
//
//   npm run conformance -- --suite ../cache-tests [--out conformance]
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";

const root = new URL("..", import.meta.url).pathname;

function usage(message) {
  if (message) console.error(`conformance: ${message}`);
  console.error(
    "usage: npm run conformance -- --suite <path to a cache-tests checkout> [--out DIR]",
  );
  process.exit(64);
}

const args = process.argv.slice(2);
const option = (name) => {
  const i = args.indexOf(name);
  return i === -1 ? undefined : args[i + 1];
};
const suiteArg = option("--suite");
if (!suiteArg) usage("--suite is required");
const suite = resolve(suiteArg);
if (!existsSync(join(suite, "tests", "index.mjs"))) usage(`${suite} is not a cache-tests checkout`);
const out = resolve(option("--out") ?? join(root, "conformance"));
const log = (line) => process.stderr.write(`[conformance] ${line}\n`);

function freePort() {
  return new Promise((ok, fail) => {
    const server = createServer();
    server.on("error", fail);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => ok(port));
    });
  });
}

async function waitFor(url, what) {
  const deadline = Date.now() + 20_000;
  for (;;) {
    try {
      await fetch(url, { signal: AbortSignal.timeout(1_000) });
      return;
    } catch {
      if (Date.now() > deadline) throw new Error(`${what} did not start (${url})`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

/** The proxy runs on its in-process store: no REDIS_URL from the caller's shell. */
function withoutRedis() {
  const env = { ...process.env };
  delete env.REDIS_URL;
  return env;
}

const children = [];
function start(command, argv, options, name) {
  const child = spawn(command, argv, { ...options, stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  child.stdout.on("data", (d) => (output += d));
  child.stderr.on("data", (d) => (output += d));
  child.on("exit", (code) => {
    if (code !== null && code !== 0 && !child.stopping) log(`${name} exited (${code}):\n${output}`);
  });
  children.push(child);
  return child;
}
function stopAll() {
  for (const child of children) {
    child.stopping = true;
    child.kill("SIGTERM");
  }
}
process.on("exit", stopAll);
for (const signal of ["SIGINT", "SIGTERM"]) process.on(signal, () => process.exit(130));

function git(...argv) {
  const run = spawnSync("git", ["-C", suite, ...argv], { encoding: "utf8" });
  return run.status === 0 ? run.stdout.trim() : "unknown";
}

async function main() {
  if (!existsSync(join(suite, "node_modules"))) {
    log("installing the suite's dependencies (npm install) …");
    const install = spawnSync("npm", ["install", "--ignore-scripts", "--no-audit", "--no-fund"], {
      cwd: suite,
      stdio: "inherit",
    });
    if (install.status !== 0) throw new Error("npm install failed in the suite");
  }
  if (!existsSync(join(root, "dist", "cli", "index.js"))) {
    log("building cachet (npm run build) …");
    if (spawnSync("npm", ["run", "build"], { cwd: root, stdio: "inherit" }).status !== 0) {
      throw new Error("npm run build failed");
    }
  }
  const originPort = await freePort();
  const proxyPort = await freePort();
  log(`origin (the suite's server) on ${originPort}, cachet proxy on ${proxyPort}`);
  start(
    process.execPath,
    [join(suite, "test-engine", "server", "server.mjs")],
    {
      cwd: suite,
      env: {
        ...process.env,
        npm_config_protocol: "http",
        npm_config_port: String(originPort),
        npm_config_pidfile: join(out, ".origin.pid"),
      },
    },
    "origin",
  );
  start(
    process.execPath,
    [
      join(root, "dist", "cli", "index.js"),
      "proxy",
      "--upstream",
      `http://127.0.0.1:${originPort}`,
      "--port",
      String(proxyPort),
    ],
    { cwd: root, env: withoutRedis() },
    "proxy",
  );
  mkdirSync(out, { recursive: true });
  await waitFor(`http://127.0.0.1:${originPort}/`, "the origin");
  await waitFor(`http://127.0.0.1:${proxyPort}/`, "cachet proxy");
  log("running the suite (a minute or so) …");
  const started = Date.now();
  const client = spawnSync(
    process.execPath,
    ["--no-warnings", join(suite, "test-engine", "cli.mjs")],
    {
      cwd: suite,
      encoding: "utf8",
      maxBuffer: 64 * 1024 * 1024,
      timeout: 9 * 60_000,
      env: {
        ...process.env,
        npm_config_base: `http://127.0.0.1:${proxyPort}`,
        npm_package_config_base: `http://127.0.0.1:${proxyPort}`,
        npm_config_id: "",
        npm_package_config_id: "",
      },
    },
  );
  if (client.status !== 0) throw new Error(`the suite's client failed:\n${client.stderr}`);
  const results = JSON.parse(client.stdout);
  log(`${Object.keys(results).length} results in ${((Date.now() - started) / 1000).toFixed(0)} s`);
  stopAll();

  const load = (path) => import(pathToFileURL(join(suite, path)).href);
  const tests = (await load("tests/index.mjs")).default;
  const { determineTestResult, resultTypes } = await load("test-engine/lib/results.mjs");
  const index = (await load("results/index.mjs")).default;
  const kindOf = (test) => test.kind ?? "required";
  const typeName = (result) => Object.keys(resultTypes).find((k) => resultTypes[k] === result);
  const totals = { required: 0, optimal: 0, check: 0 };
  for (const s of tests) for (const t of s.tests) totals[kindOf(t)]++;

  function summarize(raw) {
    const counts = { required: 0, optimal: 0, check: 0 };
    const failing = [];
    for (const s of tests) {
      for (const t of s.tests) {
        const result = determineTestResult(tests, t.id, raw);
        const type = typeName(result);
        if (type === "pass" || type === "yes") counts[kindOf(t)]++;
        else if (kindOf(t) === "required" && type !== "untested") {
          failing.push({ id: t.id, name: t.name, symbol: result[2], detail: raw[t.id] });
        }
      }
    }
    return { counts, failing };
  }

  const ours = summarize(results);
  const { readFileSync } = await import("node:fs");
  const rows = [];
  for (const item of index) {
    if (item.type !== "rev-proxy" && item.type !== "cdn") continue;
    const raw = JSON.parse(readFileSync(join(suite, "results", item.file), "utf8"));
    rows.push({ name: item.name, version: item.version, type: item.type, ...summarize(raw) });
  }
  rows.sort((a, b) => b.counts.required - a.counts.required);
  const pkg = JSON.parse(readFileSync(join(root, "package.json"), "utf8"));
  const commit = git("rev-parse", "HEAD");
  const cachetCommit = spawnSync("git", ["-C", root, "rev-parse", "--short", "HEAD"], {
    encoding: "utf8",
  }).stdout.trim();
  const line = (r) =>
    `| ${r.name} | ${r.version} | ${r.counts.required} / ${totals.required} | ${r.counts.optimal} / ${totals.optimal} | ${r.counts.check} / ${totals.check} |`;
  const md = [
    "# HTTP cache conformance",
    "",
    "The public [cache-tests](https://github.com/http-tests/cache-tests) suite (the one behind",
    "cache-tests.fyi) run against `cachet proxy` in front of the suite's own origin server, by",
    "`npm run conformance -- --suite <checkout>`. Each result is classified as the suite's site",
    "classifies it (`determineTestResult`, dependencies honoured): a test counts as passed only",
    "when the tests it depends on pass too. The other rows are the results the suite publishes",
    "(its `results/` folder), classified the same way.",
    "",
    `Suite commit \`${commit}\` (${git("log", "-1", "--format=%cs")}); cachet ${pkg.version} at \`${cachetCommit}\`, ${new Date().toISOString().slice(0, 10)}, Node.js ${process.version}.`,
    "",
    "| cache | version | required passed | optimal passed | checks answered yes |",
    "| --- | --- | --: | --: | --: |",
    line({ name: "**cachet proxy**", version: pkg.version, ...ours }),
    ...rows.map(line),
    "",
    "Three required tests are for browsers only and are not run against proxies.",
    "",
    "## Required tests cachet does not pass",
    "",
    ours.failing.length === 0
      ? "None."
      : [
          "| test | result | detail |",
          "| --- | --- | --- |",
          ...ours.failing.map(
            (f) =>
              `| \`${f.id}\` — ${f.name.replaceAll("|", "\\|")} | ${f.symbol} | ${JSON.stringify(f.detail ?? null).replaceAll("|", "\\|")} |`,
          ),
        ].join("\n"),
    "",
    "Why each is failing, and which are deliberate: [docs/http-rules.md](../docs/http-rules.md#deliberate-deviations).",
    "",
  ].join("\n");
  writeFileSync(join(out, "RESULTS.md"), md);
  writeFileSync(join(out, "results.json"), `${JSON.stringify(results, null, 2)}\n`);
  log(
    `cachet: ${ours.counts.required}/${totals.required} required, ${ours.counts.optimal}/${totals.optimal} optimal; best published: ${rows[0]?.name} ${rows[0]?.counts.required}`,
  );
  log(`wrote ${join(out, "RESULTS.md")}`);
}

main().then(
  () => process.exit(0),
  (error) => {
    log(error instanceof Error ? error.message : String(error));
    process.exit(1);
  },
);
