import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { writeFile } from "node:fs/promises";
import { buildHandler, buildValidator } from "../../src/bundler/bundle.ts";
import { createLogger } from "../../src/util/log.ts";
import { Validator, ValidatorUnavailableError } from "../../src/schemas/validator.ts";
import { tempDir } from "../_harness.ts";

// A check with a function: this schema stays in the isolate (data-only ones are checked in the host).
const TEMP = `
import { defineHandler, v } from "outpost/handler";
export default defineHandler({ topic: "t", schema: v.pipe(v.object({ c: v.number() }), v.check(() => true)), async handle() {} });
`;
const DATA_ONLY = `
import { defineHandler, v } from "outpost/handler";
export default defineHandler({ topic: "d", schema: v.object({ c: v.pipe(v.number(), v.minValue(-40, "below the sensor's range")) }), async handle() {} });
`;

describe("the schema isolate", () => {
  let validator: Validator;
  before(async () => {
    const dir = await tempDir();
    await writeFile(join(dir, "t.ts"), TEMP);
    const built = await buildHandler(join(dir, "t.ts"), join(dir, "build"));
    validator = new Validator(await buildValidator(join(dir, "build")), createLogger("error"));
    await validator.start();
    await validator.load("t@1", built.schemaUrl);
    await writeFile(join(dir, "d.ts"), DATA_ONLY);
    await validator.load("d@1", (await buildHandler(join(dir, "d.ts"), join(dir, "build"))).schemaUrl);
  });
  after(async () => {
    await validator?.stop();
  });

  test("never answers valid for a schema it does not hold", async () => {
    await assert.rejects(validator.validate(["t@1", "missing@2"], [{ c: 1 }]), {
      name: "ValidatorUnavailableError",
      message: "The schema missing@2 is not loaded in the schema isolate yet",
    });
  });

  test("readings the structured clone refuses fail their own request only; the next ones are validated", async () => {
    const unclonable = { c: 1, f: () => 1 };
    const [bad, good, wrong] = await Promise.allSettled([
      validator.validate(["t@1"], [unclonable]),
      validator.validate(["t@1"], [{ c: 2 }]),
      validator.validate(["t@1"], [{ c: "x" }]),
    ]);
    // The first request travels alone (nothing is out yet); the other two queue behind it.
    assert.equal(bad.status, "rejected");
    assert.ok((bad as PromiseRejectedResult).reason instanceof ValidatorUnavailableError);
    assert.match((bad as PromiseRejectedResult).reason.message, /^Cannot pass readings to the schema isolate: /);
    assert.deepEqual(good, { status: "fulfilled", value: [] });
    assert.equal(wrong.status, "fulfilled");
    assert.equal((wrong as PromiseFulfilledResult<{ path: string }[]>).value[0]!.path, "c");
  });

  test("a data-only schema is checked in the host, with the isolate's answers, and while the isolate is away", async () => {
    assert.equal(validator.checkedInHost("d@1"), true);
    assert.equal(validator.checkedInHost("t@1"), false, "a schema with a function stays in the isolate");
    assert.deepEqual(await validator.validate(["d@1"], [{ c: 3 }, { c: -41 }, { c: "x" }]), [
      { index: 1, path: "c", message: "below the sensor's range" },
      { index: 2, path: "c", message: 'Invalid type: Expected number but received "x"' },
    ]);
    // Mixed with a schema the isolate holds, the request goes to the isolate, which answers the same.
    assert.deepEqual(await validator.validate(["d@1", "t@1"], [{ c: -41 }]), [{ index: 0, path: "c", message: "below the sensor's range" }]);
  });
});
