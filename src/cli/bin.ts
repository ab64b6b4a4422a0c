/** Executable entry: `deno run -A --unstable-worker-options src/cli/bin.ts`, `bun src/cli/bin.ts`, bundled into `bundles/outpost.js`. */
import { cli } from "./main.ts";

cli();
