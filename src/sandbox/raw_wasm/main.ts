/**
 * The worker that runs one raw `.wasm` handler (ABI in `wasm_raw_abi.ts`). Raw WebAssembly cannot
 * be interrupted from the thread running it, so it runs in a worker the host terminates at the
 * deadline; the module itself gets no imports beyond a capped memory and a trapping `abort`, so it
 * can reach nothing but its output records. Speaks the same protocol as `sandbox/worker/main.ts`.
 * @module
 */
import { decodeCbor, encodeCbor, scanCbor } from "../../codec/cbor.ts";
import { toErrorData } from "../../errors.ts";
import { handlerInfo } from "../../sdk/definition.ts";
import { hostPort } from "../../runtime/isolate_port.ts";
import type { HostToIsolate, IsolateToHost } from "../protocol.ts";
import { RAW_WASM_DEFAULT_MEMORY_MB, RAW_WASM_IMPORTS } from "./abi.ts";

type _Exports = {
  memory?: WebAssembly.Memory;
  alloc(len: number): number;
  handle(ptr: number, len: number): bigint;
  init?(): void;
};

type _Record = { publish?: unknown; emit?: unknown; log?: unknown; message?: unknown; value?: unknown; error?: unknown; permanent?: unknown };

/**
 * Instantiate the module and serve the host.
 * @param b64 the module's bytes, base64
 * @param manifest the checked manifest
 * @param minPages the initial size of an imported memory
 */
export async function runRawWasm(b64: string, manifest: Record<string, unknown>, minPages: number): Promise<void> {
  const port = await hostPort();
  const send = (m: IsolateToHost, transfer?: ArrayBuffer[]) => port.post(m, transfer);
  const memoryMb = (manifest.memoryMb as number | undefined) ?? RAW_WASM_DEFAULT_MEMORY_MB;
  let ex: _Exports;
  let memory: WebAssembly.Memory;
  try {
    const mod = await WebAssembly.compile(Uint8Array.from(atob(b64), (c) => c.charCodeAt(0)));
    const imported = new WebAssembly.Memory({ initial: minPages, maximum: Math.max(minPages, memoryMb * 16) });
    const env: Record<string, unknown> = {
      memory: imported,
      abort: () => {
        throw new WebAssembly.RuntimeError("abort() called by the module");
      },
    };
    for (const i of WebAssembly.Module.imports(mod)) {
      if (RAW_WASM_IMPORTS[`${i.module}.${i.name}`] !== i.kind) {
        throw new TypeError(`the module imports ${i.module}.${i.name} (${i.kind}); raw wasm handlers get no imports but env.memory and env.abort`);
      }
    }
    ex = (await WebAssembly.instantiate(mod, { env: env as WebAssembly.ModuleImports })).exports as unknown as _Exports;
    if (typeof ex.alloc !== "function" || typeof ex.handle !== "function") throw new TypeError("the module must export alloc(len) and handle(ptr, len)");
    memory = ex.memory ?? imported;
    ex.init?.();
  } catch (e) {
    send({ type: "load-error", error: toErrorData(e) });
    return;
  }
  const info = handlerInfo({ ...manifest, isolation: "wasm", memoryMb, handle() {} });
  const calls = new Map<number, { resolve(): void; reject(e: Error): void }>();
  let nextCall = 1;
  const call = (id: number, op: "publish" | "emit", subject: string, value: unknown) =>
    new Promise<void>((resolve, reject) => {
      const callId = nextCall++;
      calls.set(callId, { resolve, reject });
      send({ type: "call", callId, id, op, subject, data: encodeCbor(value) });
    });
  port.onMessage((raw) => {
    const m = raw as HostToIsolate;
    if (m.type === "reply") {
      const c = calls.get(m.callId);
      calls.delete(m.callId);
      if (m.error) c?.reject(Object.assign(new Error(m.error.message), { name: m.error.name }));
      else c?.resolve();
    } else if (m.type === "invoke") {
      void _invoke(ex, memory, m, send, call);
    }
  });
  send({ type: "ready", info: { ...info, concurrency: 1 } });
}

async function _invoke(
  ex: _Exports,
  memory: WebAssembly.Memory,
  m: Extract<HostToIsolate, { type: "invoke" }>,
  send: (m: IsolateToHost) => void,
  call: (id: number, op: "publish" | "emit", subject: string, value: unknown) => Promise<void>,
): Promise<void> {
  let out: Uint8Array;
  try {
    const ptr = ex.alloc(m.data.length) >>> 0;
    new Uint8Array(memory.buffer, ptr, m.data.length).set(m.data);
    const r = BigInt.asUintN(64, BigInt(ex.handle(ptr, m.data.length)));
    const outPtr = Number(r >> 32n);
    const outLen = Number(r & 0xffffffffn);
    if (outPtr + outLen > memory.buffer.byteLength) throw new RangeError(`handle returned ${outLen} bytes at ${outPtr}, outside the module's memory`);
    out = new Uint8Array(memory.buffer, outPtr, outLen).slice();
  } catch (e) {
    // A trap leaves the module's state undefined: end the worker so the host rebuilds it.
    const err = toErrorData(e);
    setTimeout(() => {
      throw Object.assign(new Error(`${err.name}: ${err.message}`), { name: err.name });
    }, 0);
    return;
  }
  try {
    let records: _Record[] = [];
    if (out.length) {
      scanCbor(out, false);
      const v = decodeCbor(out);
      if (!Array.isArray(v)) throw new TypeError("handle must return a CBOR array of output records");
      records = v as _Record[];
    }
    for (const rec of records) {
      if (typeof rec.publish === "string") await call(m.id, "publish", rec.publish, rec.value);
      else if (typeof rec.emit === "string") await call(m.id, "emit", rec.emit, rec.value);
      else if (typeof rec.log === "string") {
        const level = ["debug", "info", "warn", "error"].includes(rec.log) ? rec.log as "info" : "info";
        send({ type: "log", id: m.id, level, message: String(rec.message ?? "") });
      } else if (rec.error !== undefined) {
        const error = { name: rec.permanent === true ? "PermanentError" : "Error", message: String(rec.error) };
        send({ type: "failed", id: m.id, error, permanent: rec.permanent === true });
        return;
      } else throw new TypeError(`unknown output record ${JSON.stringify(Object.keys(rec ?? {}))}`);
    }
    send({ type: "done", id: m.id });
  } catch (e) {
    send({ type: "failed", id: m.id, error: toErrorData(e), permanent: false });
  }
}
