import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { readdir, readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { envName, RUN_FLAGS } from "../../src/cli/flags.ts";
import { flagTables } from "../../src/cli/specs.ts";

const root = new URL("../../", import.meta.url);
const read = (path: string) => readFile(new URL(path, root), "utf8");

const readme = await read("README.md");
const cliDoc = await read("docs/cli.md");
const httpDoc = await read("docs/http-api.md");

test("the README's quick start has exactly the two commands: set up and run, and test", () => {
  const block = /## Quick start[\s\S]*?```sh\n([\s\S]*?)```/.exec(readme)?.[1] ?? "";
  const commands = block.split("\n").filter((l) => l.trim()).map((l) => l.replace(/#.*$/, "").trim());
  assert.deepEqual(commands, ["npm run setup && npm start", "npm test"]);
});

test("docs/cli.md holds the flag tables of every command, as src/cli/specs.ts describes them", () => {
  // Regenerate with: node --import ./test/_register.mjs scripts/cli-docs.ts
  assert.ok(cliDoc.includes(flagTables()), "docs/cli.md's flag tables differ from src/cli/specs.ts");
  for (const f of RUN_FLAGS) assert.ok(cliDoc.includes(`\`${envName(f.name)}\``), `--${f.name} names ${envName(f.name)}`);
});

test("docs/http-api.md documents every HTTP route", () => {
  for (const route of ["POST /v1/ingest/:topic", "GET /v1/handlers", "GET /healthz", "GET /readyz", "GET /metrics", "POST /v1/store/acknowledge"]) {
    assert.ok(httpDoc.includes(`| \`${route}\``), route);
  }
});

test("the README is at most 200 lines, and every relative link in it and in docs/ points at a file that exists", async () => {
  assert.ok(readme.split("\n").length <= 200, `README.md has ${readme.split("\n").length} lines`);
  const pages = ["README.md", ...(await readdir(new URL("docs/", root))).filter((f) => f.endsWith(".md")).map((f) => `docs/${f}`)];
  const broken: string[] = [];
  for (const page of pages) {
    // Links inside code (fenced blocks, inline spans) are not links.
    const text = (await read(page)).replace(/^```[\s\S]*?^```/gm, "").replace(/`[^`\n]*`/g, "");
    for (const [, target] of text.matchAll(/\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g)) {
      if (/^[a-z][a-z0-9+.-]*:/i.test(target!) || target!.startsWith("#")) continue; // absolute URL, or a place in the same page
      const file = decodeURIComponent(target!.replace(/[#?].*$/, ""));
      if (!existsSync(fileURLToPath(new URL(file, new URL(page, root))))) broken.push(`${page}: ${target}`);
    }
  }
  assert.deepEqual(broken, [], "links to missing files");
});
