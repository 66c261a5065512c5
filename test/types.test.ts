import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { describe, it } from "node:test";

describe("public types", () => {
  it("compile as documented: every @ts-expect-error line is an error, the rest compiles", () => {
    const tsc = spawnSync(
      process.execPath,
      ["node_modules/typescript/bin/tsc", "-p", "test/types/tsconfig.json"],
      {
        encoding: "utf8",
      },
    );
    assert.equal(tsc.status, 0, `tsc failed:\n${tsc.stdout}${tsc.stderr}`);
  });
});
