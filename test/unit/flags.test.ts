import { test } from "node:test";
import assert from "node:assert/strict";
import { envName, flagHelp, parseFlags, parseSize, RUN_FLAGS } from "../../src/cli/flags.ts";

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
  assert.throws(() => parseFlags(["--nope"], {}), { name: "ConfigError", message: "Unknown flag --nope; see outpost --help" });
  assert.throws(() => parseFlags(["--port", "70000"], {}), /--port must be an integer from 0 to 65535, got "70000"/);
  assert.throws(() => parseFlags(["--port"], {}), /--port needs a value \(N\)/);
  assert.throws(() => parseFlags([], { OUTPOST_BODY_LIMIT: "huge" }), /--body-limit: Invalid size "huge"/);
});

test("every flag has an OUTPOST_ variable and appears in --help", () => {
  const help = flagHelp();
  for (const f of RUN_FLAGS) {
    assert.match(help, new RegExp(`--${f.name}\\b`));
    assert.match(help, new RegExp(envName(f.name)));
  }
  assert.equal(envName("data-dir"), "OUTPOST_DATA_DIR");
});
