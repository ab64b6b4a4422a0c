// Cost of schema validation in the schema isolate, per request and per reading, for docs/design.md's
// design note. Run: node --import ./test/_register.mjs scripts/measure-validation.ts
// (or bun scripts/measure-validation.ts, deno run -A --unstable-worker-options scripts/measure-validation.ts)
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { buildHandler, buildValidator } from "../src/bundler/bundle.ts";
import { createLogger } from "../src/util/log.ts";
import { runtimeVersion } from "../src/runtime/detect.ts";
import { Validator } from "../src/schemas/validator.ts";

const dir = await mkdtemp(join(tmpdir(), "outpost-validation-"));
const handler = join(dir, "t.ts");
await writeFile(handler, `import { defineHandler, v } from "outpost/handler";
export default defineHandler({ topic: "t", schema: v.object({ sensor: v.string(), celsius: v.number() }), handle() {} });
`);
const validator = new Validator(await buildValidator(join(dir, "out")), createLogger("warn"));
await validator.start();
await validator.load("t", (await buildHandler(handler, join(dir, "out"))).schemaUrl);
console.log(runtimeVersion());
for (const [batch, n] of [[1, 5000], [100, 500]] as const) {
  const readings = Array.from({ length: batch }, (_, i) => ({ sensor: `s${i}`, celsius: i }));
  for (let i = 0; i < 200; i++) await validator.validate(["t"], readings);
  const t0 = performance.now();
  for (let i = 0; i < n; i++) await validator.validate(["t"], readings);
  const us = ((performance.now() - t0) / n) * 1000;
  console.log(`batch of ${batch}: ${us.toFixed(1)} µs per request (sequential round trips), ${(us / batch).toFixed(2)} µs per reading`);
}
await validator.stop();
await rm(dir, { recursive: true, force: true });
