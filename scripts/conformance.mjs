#!/usr/bin/env node
// The public HTTP cache conformance suite (github.com/http-tests/cache-tests) against
// `cachet proxy`: starts the suite's origin and the proxy in front of it, runs the suite's
// client, classifies each result exactly as the suite's own site does (its
// determineTestResult, dependencies honoured), and writes conformance/RESULTS.md next to the
// results the suite publishes for other caches, and conformance/results.json (cachet's raw
// results, as the suite's client prints them).
//
//   npm run conformance -- --suite ../cache-tests [--out conformance]
//
// The proxy runs from src/ through tsx, so the figures are those of the working tree, never of
// a stale dist/. It takes a minute or two (the suite pauses 3 s in many tests).
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";

const root = new URL("..", import.meta.url).pathname;
/** The suite's client gives up on a request after 10 s; the whole run takes 1–2 minutes. */
const CLIENT_TIMEOUT_MS = 8 * 60_000;
const HEARTBEAT_MS = 15_000;

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
const scratch = mkdtempSync(join(tmpdir(), "cachet-conformance-"));

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

/** Poll `url` until it answers (any status), or fail when `child` exits or 30 s pass. */
async function waitFor(url, what, child) {
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`${what} exited (${child.exitCode}) on start`);
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(1_000) });
      await res.arrayBuffer();
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
  child.on("exit", (code, signal) => {
    if (!child.stopping) log(`${name} exited (${code ?? signal}):\n${output.trim()}`);
  });
  children.push(child);
  return child;
}
function stopAll() {
  for (const child of children) {
    if (child.exitCode !== null || child.signalCode !== null) continue;
    child.stopping = true;
    child.kill("SIGTERM");
  }
  rmSync(scratch, { recursive: true, force: true });
}
process.on("exit", stopAll);
for (const signal of ["SIGINT", "SIGTERM"]) process.on(signal, () => process.exit(130));

function git(dir, ...argv) {
  const run = spawnSync("git", ["-C", dir, ...argv], { encoding: "utf8" });
  return run.status === 0 ? run.stdout.trim() : "unknown";
}

/** Run the suite's client against `base`; resolves with its JSON results. */
function runClient(base) {
  return new Promise((ok, fail) => {
    const client = spawn(
      process.execPath,
      ["--no-warnings", join(suite, "test-engine", "cli.mjs")],
      {
        cwd: suite,
        stdio: ["ignore", "pipe", "pipe"],
        env: {
          ...process.env,
          npm_config_base: base,
          npm_package_config_base: base,
          npm_config_id: "",
          npm_package_config_id: "",
        },
      },
    );
    children.push(client);
    const stdout = [];
    let stderr = "";
    client.stdout.on("data", (d) => stdout.push(d));
    client.stderr.on("data", (d) => {
      stderr += d;
      // The client reports setup errors as they happen ("ERROR: <uuid> …").
      for (const line of String(d).split("\n")) if (line.trim()) log(`suite: ${line.trim()}`);
    });
    const started = Date.now();
    const heartbeat = setInterval(
      () => log(`suite running, ${Math.round((Date.now() - started) / 1000)} s …`),
      HEARTBEAT_MS,
    );
    const timer = setTimeout(() => {
      client.stopping = true;
      client.kill("SIGTERM");
    }, CLIENT_TIMEOUT_MS);
    client.on("exit", (code, signal) => {
      clearInterval(heartbeat);
      clearTimeout(timer);
      if (code !== 0) {
        fail(new Error(`the suite's client failed (${code ?? signal}):\n${stderr.trim()}`));
        return;
      }
      try {
        ok(JSON.parse(Buffer.concat(stdout).toString("utf8")));
      } catch (error) {
        fail(new Error(`the suite's client printed no JSON: ${error.message}`));
      }
    });
  });
}

async function main() {
  if (!existsSync(join(suite, "node_modules"))) {
    log("installing the suite's dependencies (npm install) …");
    const install = spawnSync("npm", ["install", "--ignore-scripts", "--no-audit", "--no-fund"], {
      cwd: suite,
      stdio: ["ignore", 2, 2],
    });
    if (install.status !== 0) throw new Error("npm install failed in the suite");
  }
  const originPort = await freePort();
  const proxyPort = await freePort();
  log(`origin (the suite's server) on ${originPort}, cachet proxy (from src/) on ${proxyPort}`);
  const origin = start(
    process.execPath,
    [join(suite, "test-engine", "server", "server.mjs")],
    {
      cwd: suite,
      env: {
        ...process.env,
        npm_config_protocol: "http",
        npm_config_port: String(originPort),
        npm_config_pidfile: join(scratch, "origin.pid"),
      },
    },
    "origin",
  );
  const proxy = start(
    process.execPath,
    [
      "--import",
      "tsx",
      join(root, "src", "cli", "index.ts"),
      "proxy",
      "--upstream",
      `http://127.0.0.1:${originPort}`,
      "--port",
      String(proxyPort),
    ],
    { cwd: root, env: withoutRedis() },
    "proxy",
  );
  await waitFor(`http://127.0.0.1:${originPort}/`, "the origin", origin);
  await waitFor(`http://127.0.0.1:${proxyPort}/`, "cachet proxy", proxy);
  log("running the suite (a minute or two) …");
  const started = Date.now();
  const results = await runClient(`http://127.0.0.1:${proxyPort}`);
  log(`${Object.keys(results).length} results in ${((Date.now() - started) / 1000).toFixed(0)} s`);
  stopAll();

  const load = (path) => import(pathToFileURL(join(suite, path)).href);
  const tests = (await load("tests/index.mjs")).default;
  const { determineTestResult, resultTypes } = await load("test-engine/lib/results.mjs");
  const index = (await load("results/index.mjs")).default;
  const KINDS = ["required", "optimal", "check"];
  const kindOf = (test) => test.kind ?? "required";
  const typeName = (result) => Object.keys(resultTypes).find((k) => resultTypes[k] === result);
  const all = tests.flatMap((s) => s.tests);
  const totals = Object.fromEntries(KINDS.map((k) => [k, 0]));
  for (const t of all) totals[kindOf(t)]++;

  /** Every test's result type, counted per kind; the required tests not passed. */
  function summarize(raw) {
    const byKind = Object.fromEntries(KINDS.map((k) => [k, {}]));
    const passed = Object.fromEntries(KINDS.map((k) => [k, 0]));
    const failing = [];
    for (const t of all) {
      const result = determineTestResult(tests, t.id, raw);
      const type = typeName(result);
      const kind = kindOf(t);
      byKind[kind][type] = (byKind[kind][type] ?? 0) + 1;
      if (type === "pass" || type === "yes") passed[kind]++;
      else if (kind === "required") {
        failing.push({ test: t, type, symbol: result[2], detail: raw[t.id] });
      }
    }
    return { passed, byKind, failing };
  }

  const ours = summarize(results);
  const rows = [];
  const browsers = [];
  for (const item of index) {
    const raw = JSON.parse(readFileSync(join(suite, "results", item.file), "utf8"));
    const row = { name: item.name, version: item.version, type: item.type, ...summarize(raw) };
    if (item.type === "rev-proxy" || item.type === "cdn") rows.push(row);
    else browsers.push(row);
  }
  rows.sort((a, b) => b.passed.required - a.passed.required);

  const pkg = JSON.parse(readFileSync(join(root, "package.json"), "utf8"));
  const dirty = git(root, "status", "--porcelain", "--", "src") !== "";
  const cachetAt = `${git(root, "rev-parse", "--short", "HEAD")}${dirty ? " with uncommitted changes in src/" : ""}`;
  const cell = (text) => String(text).replaceAll("|", "\\|").replaceAll("\n", " ");
  const line = (r) =>
    `| ${r.name} | ${r.version} | ${r.passed.required} / ${totals.required} | ${r.passed.optimal} / ${totals.optimal} | ${r.passed.check} / ${totals.check} |`;
  const shown = Object.keys(resultTypes).filter((type) =>
    KINDS.some((k) => ours.byKind[k][type] > 0),
  );
  const browserOnly = all.filter((t) => kindOf(t) === "required" && t.browser_only).length;
  const md = [
    "# HTTP cache conformance",
    "",
    "The public [cache-tests](https://github.com/http-tests/cache-tests) suite (the one behind",
    "cache-tests.fyi) run against `cachet proxy` in front of the suite's own origin server, by",
    "`npm run conformance -- --suite <checkout>`. Each result is classified as the suite's site",
    "classifies it (`determineTestResult`, dependencies honoured): a test counts as passed only",
    "when the tests it depends on pass too. The other rows are the results the suite publishes",
    "(its `results/` folder; reverse proxies and CDNs), classified the same way.",
    "",
    `Suite commit \`${git(suite, "rev-parse", "HEAD")}\` (${git(suite, "log", "-1", "--format=%cs")}); cachet ${pkg.version} at \`${cachetAt}\`, run ${new Date().toISOString().slice(0, 10)}, Node.js ${process.version}.`,
    "",
    "| cache | version | required passed | optimal passed | checks answered yes |",
    "| --- | --- | --: | --: | --: |",
    line({ name: "**cachet proxy**", version: pkg.version, ...ours }),
    ...rows.map(line),
    "",
    `${browserOnly} required tests are for browsers only: the suite's client does not run them`,
    "against a proxy, so no proxy or CDN passes them.",
    "",
    "## cachet's results by kind",
    "",
    `| kind | tests | ${shown.map((type) => `${resultTypes[type][2] || "-"} ${type.replaceAll("_", " ")}`).join(" | ")} |`,
    `| --- | --: | ${shown.map(() => "--:").join(" | ")} |`,
    ...KINDS.map(
      (k) =>
        `| ${k} | ${totals[k]} | ${shown.map((type) => ours.byKind[k][type] ?? 0).join(" | ")} |`,
    ),
    "",
    "## Required tests cachet does not pass",
    "",
    ours.failing.length === 0
      ? "None."
      : [
          "| test | name | result | detail |",
          "| --- | --- | --- | --- |",
          ...ours.failing.map(
            (f) =>
              `| \`${f.test.id}\` | ${cell(f.test.name)} | ${f.symbol} ${f.type.replaceAll("_", " ")} | ${
                f.type === "untested" && f.test.browser_only
                  ? "browser only: not run against a proxy"
                  : cell(JSON.stringify(f.detail ?? null))
              } |`,
          ),
        ].join("\n"),
    "",
    "Why each is failing, and which are deliberate: [docs/http-rules.md](../docs/http-rules.md#deliberate-deviations).",
    "",
  ].join("\n");
  mkdirSync(out, { recursive: true });
  writeFileSync(join(out, "RESULTS.md"), md);
  writeFileSync(join(out, "results.json"), `${JSON.stringify(results, null, 2)}\n`);
  // Aligned tables, as `npm run lint` wants them.
  const biome = join(root, "node_modules", ".bin", "biome");
  if (existsSync(biome)) {
    spawnSync(biome, ["format", "--write", join(out, "RESULTS.md"), join(out, "results.json")], {
      cwd: root,
      stdio: "ignore",
    });
  }
  const counts = (r) => KINDS.map((k) => `${k} ${r.passed[k]}/${totals[k]}`).join(", ");
  log(`cachet: ${counts(ours)}`);
  for (const r of rows) log(`${r.name} ${r.version}: ${counts(r)}`);
  for (const r of browsers) log(`(browser) ${r.name} ${r.version}: ${counts(r)}`);
  for (const f of ours.failing) log(`not passed (required): ${f.test.id} ${f.symbol} ${f.type}`);
  log(`wrote ${join(out, "RESULTS.md")} and results.json`);
}

main().then(
  () => process.exit(0),
  (error) => {
    log(error instanceof Error ? error.message : String(error));
    process.exit(1);
  },
);
