#!/usr/bin/env node
// `outpost` on PATH (npm link / npx): run the single-file build.
import { existsSync } from "node:fs";
const bundle = new URL("../bundles/outpost.js", import.meta.url);
if (!existsSync(bundle)) {
  console.error("outpost: bundles/outpost.js is missing; run `npm run build` first");
  process.exit(1);
}
await import(bundle.href);
