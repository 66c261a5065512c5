/**
 * Every relative link and anchor in the README and docs (and the measurements they cite, which
 * the tarball ships: bench and conformance results) resolves (issue 14): in this
 * checkout, and inside the packed tarball a user installs (a link to a file the tarball does
 * not ship is broken for every reader on npm). Links are read from the Markdown syntax tree,
 * so examples inside code blocks are not links; anchors are GitHub's heading slugs.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, normalize, relative, resolve } from "node:path";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import GithubSlugger from "github-slugger";
import { fromMarkdown } from "mdast-util-from-markdown";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");

interface MdNode {
  type: string;
  url?: string;
  value?: string;
  depth?: number;
  children?: MdNode[];
  position?: { start: { line: number } };
}

function walk(node: MdNode, visit: (node: MdNode) => void): void {
  visit(node);
  for (const child of node.children ?? []) walk(child, visit);
}

function text(node: MdNode): string {
  if (node.value !== undefined) return node.value;
  return (node.children ?? []).map(text).join("");
}

/** The anchors a Markdown file offers: its headings' slugs, as GitHub makes them. */
function anchorsOf(file: string): Set<string> {
  const slugger = new GithubSlugger();
  const anchors = new Set<string>();
  walk(fromMarkdown(readFileSync(file, "utf8")) as MdNode, (node) => {
    if (node.type === "heading") anchors.add(slugger.slug(text(node)));
  });
  // Explicit HTML anchors (<a id="...">) count too.
  for (const m of readFileSync(file, "utf8").matchAll(/<a (?:id|name)="([^"]+)"/g)) {
    anchors.add(m[1]!);
  }
  return anchors;
}

interface Link {
  readonly from: string;
  readonly line: number;
  readonly url: string;
}

function linksOf(file: string): Link[] {
  const links: Link[] = [];
  walk(fromMarkdown(readFileSync(file, "utf8")) as MdNode, (node) => {
    if ((node.type === "link" || node.type === "image") && node.url !== undefined) {
      links.push({ from: file, line: node.position?.start.line ?? 0, url: node.url });
    }
  });
  return links;
}

/** Where a link breaks, judged against the set of files that exist (`files`, relative). */
function broken(link: Link, files: ReadonlySet<string>): string | undefined {
  const { url } = link;
  if (/^[a-z][a-z0-9+.-]*:/i.test(url)) return undefined; // absolute (https:, mailto:)
  const [path, anchor] = url.split("#", 2) as [string, string | undefined];
  const target =
    path === ""
      ? relative(root, link.from)
      : normalize(join(dirname(relative(root, link.from)), decodeURI(path)));
  const isDir = [...files].some((f) => f.startsWith(`${target.replace(/\/$/, "")}/`));
  if (!files.has(target) && !isDir) return `${url}: ${target} does not exist`;
  if (anchor !== undefined && anchor !== "" && target.endsWith(".md")) {
    if (!anchorsOf(join(root, target)).has(anchor))
      return `${url}: no heading #${anchor} in ${target}`;
  }
  return undefined;
}

function markdownFiles(): string[] {
  const docs = readdirSync(join(root, "docs"))
    .filter((name) => name.endsWith(".md"))
    .map((name) => join(root, "docs", name));
  const runs = readdirSync(join(root, "bench/runs"))
    .filter((name) => name.endsWith(".md"))
    .map((name) => join(root, "bench/runs", name));
  const evidence = ["bench/README.md", "bench/RESULTS.md", "conformance/RESULTS.md"];
  return [join(root, "README.md"), ...docs, ...evidence.map((f) => join(root, f)), ...runs];
}

function allFiles(dir: string, out = new Set<string>()): Set<string> {
  for (const name of readdirSync(dir)) {
    if (name === "node_modules" || name === ".git" || name === "dist") continue;
    const path = join(dir, name);
    if (statSync(path).isDirectory()) allFiles(path, out);
    else out.add(relative(root, path));
  }
  return out;
}

describe("links in the README and docs", () => {
  const files = markdownFiles();
  const links = files.flatMap(linksOf);

  it("finds the documents and their links", () => {
    assert.ok(files.length >= 10, `found ${files.length} documents`);
    assert.ok(links.length >= 50, `found ${links.length} links`);
  });

  it("every relative link and anchor resolves in the checkout", () => {
    const present = allFiles(root);
    const problems = links
      .map((link) => ({ link, why: broken(link, present) }))
      .filter((p) => p.why !== undefined)
      .map((p) => `${relative(root, p.link.from)}:${p.link.line} ${p.why}`);
    assert.deepEqual(problems, []);
  });

  it("every relative link in the shipped README and docs resolves inside the packed tarball", () => {
    const pack = spawnSync("npm", ["pack", "--dry-run", "--json", "--ignore-scripts"], {
      cwd: root,
      encoding: "utf8",
    });
    assert.equal(pack.status, 0, pack.stderr);
    const [{ files: packed }] = JSON.parse(pack.stdout) as [{ files: Array<{ path: string }> }];
    const shipped = new Set(packed.map((f) => f.path));
    const problems = links
      .filter((link) => shipped.has(relative(root, link.from)))
      .map((link) => ({ link, why: broken(link, shipped) }))
      .filter((p) => p.why !== undefined)
      .map((p) => `${relative(root, p.link.from)}:${p.link.line} ${p.why}`);
    assert.deepEqual(problems, []);
  });

  it("every table row has as many cells as its header (a bare | inside code splits a cell)", () => {
    const problems: string[] = [];
    for (const file of files) {
      let fence = false;
      let width: number | undefined;
      readFileSync(file, "utf8")
        .split("\n")
        .forEach((line, i) => {
          if (/^\s*(```|~~~)/.test(line)) fence = !fence;
          if (fence || !line.startsWith("|")) {
            width = undefined;
            return;
          }
          const cells = line.replace(/\\\|/g, "").split("|").length - 2;
          if (width === undefined) width = cells;
          else if (cells !== width) {
            problems.push(
              `${relative(root, file)}:${i + 1} has ${cells} cells, its header ${width}`,
            );
          }
        });
    }
    assert.deepEqual(problems, []);
  });

  it("the checker itself catches a missing file and a missing anchor", () => {
    const present = new Set(["README.md", "docs/stores.md"]);
    const from = join(root, "README.md");
    assert.match(broken({ from, line: 1, url: "docs/nope.md" }, present) ?? "", /does not exist/);
    assert.match(
      broken({ from, line: 1, url: "docs/stores.md#no-such-heading" }, present) ?? "",
      /no heading/,
    );
    assert.equal(broken({ from, line: 1, url: "https://example.com/x" }, present), undefined);
    assert.ok(existsSync(join(root, "docs/stores.md")));
  });
});
