/** The JSON argument a probe was started with (last argv entry). */
import process from "node:process";

/** Parse the probe's JSON argument. */
export function probeArgs<T>(): T {
  return JSON.parse(process.argv[process.argv.length - 1] ?? "{}") as T;
}

/** Print the probe's result as the last stdout line and exit. */
export function finish(result: object): never {
  process.stdout.write(`${JSON.stringify(result)}\n`, () => process.exit(0));
  // Flushed by the callback; keep the type checker told that nothing follows.
  return undefined as never;
}
