/**
 * The part of every wasm-tier sandbox that is the same for all handlers: the guest bootstrap and
 * the handler SDK, without `v` (valibot as a namespace, which cannot be shaken). A spare sandbox
 * evaluates it ahead of need, as the module `outpost-sdk:prelude`; a handler's guest part
 * (`BuiltHandler.guestSplit`) imports `outpost/handler` through a shim that re-exports this module
 * and adds `v` from its own, shaken, valibot. Evaluated once per sandbox either way, but off the
 * path of a handler's start: QuickJS spent ~9 ms compiling the 32 KB guest bundle, of which the
 * handler itself is a few hundred bytes.
 * @module
 */
export { serveGuest } from "./guest.ts";
export { defineHandler, isSimple, isTag, PermanentError, SenmlRecord, Simple, Tag } from "../../sdk/handler.ts";
