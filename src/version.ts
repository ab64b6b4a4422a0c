/** Outpost's version; `deno.json` and `package.json` carry the same (a test checks). */
export const VERSION = "0.1.0";
