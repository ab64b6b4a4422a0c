// Lets node's test runner import TypeScript (Node 20 cannot strip types): esbuild transforms each .ts file.
import { register } from "node:module";

register("./_ts_hooks.mjs", import.meta.url);
