// `node --import outpost/register --test my-handler.test.ts`: lets Node 20 and 22 import TypeScript
// handlers and tests (Deno and Bun, and Node from 23.6, strip types themselves). Each .ts file is
// transformed by esbuild, a dependency of outpost, with an inline source map.
import { register } from "node:module";

register("./ts_hooks.mjs", import.meta.url);
