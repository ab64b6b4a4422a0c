import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { envName, flagHelp, parseFlags, parseSize, RUN_FLAGS } from "../../src/cli/flags.ts";
import { commandHelp, COMMANDS } from "../../src/cli/specs.ts";
import { sampleConfig } from "../../src/cli/config_command.ts";
import { readConfigFile } from "../../src/cli/run_command.ts";

test("flags take precedence over OUTPOST_* variables, which take precedence over defaults", () => {
  const { values } = parseFlags(["--port", "9000", "--data-dir=/tmp/x"], { OUTPOST_PORT: "7000", OUTPOST_HOST: "127.0.0.1" });
  assert.equal(values.port, 9000);
  assert.equal(values["data-dir"], "/tmp/x");
  assert.equal(values.host, "127.0.0.1");
  assert.equal(values.workers, "./workers");
  assert.equal(values["body-limit"], 1024 * 1024);
  assert.equal(values["max-file-store"], 1024 ** 3);
});

test("sizes accept K, M, G suffixes", () => {
  assert.equal(parseSize("512K"), 512 * 1024);
  assert.equal(parseSize("1.5G"), 1.5 * 1024 ** 3);
  assert.equal(parseSize("2MiB"), 2 * 1024 * 1024);
  assert.equal(parseSize("100"), 100);
  assert.throws(() => parseSize("lots"), /Invalid size "lots"/);
});

test("bad flags are refused with a clear message", () => {
  assert.throws(() => parseFlags(["--nope"], {}), { name: "UsageError", message: "Unknown flag --nope; see --help" });
  assert.throws(() => parseFlags(["--prot", "1"], {}), { name: "UsageError", message: "Unknown flag --prot (did you mean --port?); see --help" });
  assert.throws(() => parseFlags(["-x"], {}), { name: "UsageError", message: "Unknown flag -x; see --help" });
  assert.throws(() => parseFlags(["--port", "70000"], {}), /--port must be an integer from 0 to 65535, got "70000"/);
  assert.throws(() => parseFlags(["--port"], {}), /--port needs a value \(N\)/);
  assert.throws(() => parseFlags([], { OUTPOST_BODY_LIMIT: "huge" }), /--body-limit: Invalid size "huge"/);
});

test("short flags, positional arguments, --no- and --flag=false, and the precedence flag > environment > file > default", () => {
  const { values, positional } = parseFlags(["-p", "9001", "./mine", "--no-watch", "--log-level=debug"], { OUTPOST_LOG_LEVEL: "warn", OUTPOST_HOST: "127.0.0.2" },
    RUN_FLAGS, { host: "127.0.0.3", "body-limit": "2M", port: 7000 });
  assert.equal(values.port, 9001);
  assert.deepEqual(positional, ["./mine"]);
  assert.equal(values.watch, false);
  assert.equal(values["log-level"], "debug", "the flag wins over the environment");
  assert.equal(values.host, "127.0.0.2", "the environment wins over the file");
  assert.equal(values["body-limit"], 2 * 1024 * 1024, "the file wins over the default");
  assert.equal(values["max-readings"], 10_000, "the default");
  assert.equal(parseFlags(["--watch=false"], {}).values.watch, false);
});

test("every command's help lists each of its flags with default and environment variable", () => {
  for (const c of COMMANDS) {
    const help = commandHelp(c);
    assert.ok(help.startsWith(`outpost ${c.name}: `), c.name);
    assert.match(help, /\nUsage: outpost /);
    assert.match(help, /Exit codes: 0 success, 1 runtime error, 2 usage error\./);
    for (const f of c.flags) {
      assert.match(help, new RegExp(`--${f.name}\\b`), `${c.name} --${f.name}`);
      if (c.env) assert.ok(help.includes(envName(f.name)), `${c.name} ${envName(f.name)}`);
      if (f.default !== undefined && f.kind !== "boolean") assert.ok(help.includes(`(default ${f.default})`), `${c.name} --${f.name} default`);
    }
  }
});

test("a sample config file reads back as every default", async () => {
  const dir = await mkdtemp(join(tmpdir(), "outpost-config-"));
  const file = join(dir, "outpost.json");
  await writeFile(file, sampleConfig());
  const values = await readConfigFile(file);
  for (const f of RUN_FLAGS) if (f.default !== undefined && f.name !== "config") assert.equal(String(values[f.name]), f.default, f.name);
  await writeFile(file, '{"prot": 1}');
  await assert.rejects(readConfigFile(file), { name: "UsageError", message: `--config ${file}: "prot" is not a flag of outpost run` });
  await writeFile(file, "{ nope");
  await assert.rejects(readConfigFile(file), { name: "UsageError", message: new RegExp(`^--config ${file} is not JSON: `) });
});

test("every flag has an OUTPOST_ variable and appears in --help", () => {
  const help = flagHelp();
  for (const f of RUN_FLAGS) {
    assert.match(help, new RegExp(`--${f.name}\\b`));
    assert.match(help, new RegExp(envName(f.name)));
  }
  assert.equal(envName("data-dir"), "OUTPOST_DATA_DIR");
});
