/**
 * The handler SDK as prebuilt ESM text, present only in the single-file build (`bundles/outpost.js`,
 * where `scripts/build.mjs` defines `__OUTPOST_EMBEDDED__`). From source it is undefined and
 * handlers are built against `src/`.
 * @module
 */

/** Prebuilt, self-contained ESM modules a device needs to build and run handlers. */
export interface EmbeddedSdk {
  /** `outpost/handler`: defineHandler, v (valibot, imported from `./valibot.mjs`), PermanentError. */
  sdk: string;
  /** valibot as one ESM module, which a handler build shakes down to what the handler uses. */
  valibot: string;
  /** Exports `runIsolate`: the worker isolate's bootstrap. */
  isolate: string;
  /** Exports `runValidator`: the schema isolate's bootstrap. */
  validator: string;
  /** Exports `serveGuest`: the wasm-tier sandbox's bootstrap. */
  guest: string;
  /** The wasm-tier prelude (bootstrap and SDK, self-contained) a spare sandbox evaluates ahead. */
  prelude: string;
  /** The handler process's entry (Node's permission-model boundary for worker-tier handlers). */
  handlerProcess: string;
  /** The dashboard's chart library (uPlot) and its styles. */
  uplotJs: string;
  uplotCss: string;
  /** The wasm tier's QuickJS engine: the `.wasm` file, gzip-compressed, base64. */
  quickjsWasm: string;
}

declare const __OUTPOST_EMBEDDED__: EmbeddedSdk | undefined;

/** The embedded SDK of the single-file build, or undefined when running from source. */
export const EMBEDDED: EmbeddedSdk | undefined = typeof __OUTPOST_EMBEDDED__ === "undefined" ? undefined : __OUTPOST_EMBEDDED__;
