import type { HandlerInfo } from "../../sdk/definition.ts";
import { WorkerIsolate } from "../worker/isolate.ts";

/**
 * A raw `.wasm` handler: its module runs in a worker (see `raw_wasm/main.ts`) that the host can
 * terminate at the deadline. The module's memory is capped and it has no imports, so the limits
 * hold and nothing is reachable on every runtime, whatever the worker itself could reach.
 */
export class RawWasmIsolate extends WorkerIsolate {
  override async start(): Promise<HandlerInfo> {
    const info = await super.start();
    this.heapLimitEnforced = true;
    this.sandboxed = true;
    return info;
  }
}
