import { test } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { envName, RUN_FLAGS } from "../src/cli/flags.ts";

const readme = await readFile(new URL("../README.md", import.meta.url), "utf8");

test("the README's quick start has exactly the two commands: set up and run, and test", () => {
  const block = /## Quick start[\s\S]*?```sh\n([\s\S]*?)```/.exec(readme)?.[1] ?? "";
  const commands = block.split("\n").filter((l) => l.trim()).map((l) => l.replace(/#.*$/, "").trim());
  assert.deepEqual(commands, ["npm run setup && npm start", "npm test"]);
});

test("the README documents every flag with its environment variable and default", () => {
  for (const f of RUN_FLAGS) {
    const row = readme.split("\n").find((l) => l.startsWith(`| \`--${f.name}`));
    assert.ok(row, `--${f.name} has a row`);
    assert.ok(row.includes(`\`${envName(f.name)}\``), `--${f.name} names ${envName(f.name)}`);
    if (f.default !== undefined) assert.ok(row.includes(`\`${f.default}\``), `--${f.name} shows its default ${f.default}`);
  }
});

test("the README documents every HTTP route", () => {
  for (const route of ["POST /v1/ingest/:topic", "GET /v1/handlers", "GET /healthz", "GET /readyz", "GET /metrics", "POST /v1/store/acknowledge"]) {
    assert.ok(readme.includes(`| \`${route}\``), route);
  }
});
