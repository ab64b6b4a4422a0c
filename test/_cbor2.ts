import { spawn } from "node:child_process";
import { join } from "node:path";
import { ROOT } from "./_harness.ts";

/** Debian's python3-cbor2: an independent CBOR implementation the tests compare with. */
const PYTHON = "/usr/bin/python3";
const SCRIPT = join(ROOT, "test/fixtures/cbor2_check.py");

async function _ask(lines: unknown[]): Promise<string[]> {
  const child = spawn(PYTHON, [SCRIPT], { stdio: ["pipe", "pipe", "inherit"] });
  let out = "";
  child.stdout.setEncoding("utf8").on("data", (d: string) => (out += d));
  child.stdin.end(lines.map((l) => JSON.stringify(l)).join("\n") + "\n");
  const code = await new Promise<number | null>((res) => child.on("close", res));
  if (code !== 0) throw new Error(`${PYTHON} ${SCRIPT} exited ${code} (is python3-cbor2 installed?)`);
  return out.trim().split("\n");
}

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");

/** Per pair, "same" when cbor2 decodes both to equal data items, else what differs. */
export async function cbor2Compare(pairs: [Uint8Array | string, Uint8Array | string][]): Promise<string[]> {
  if (!pairs.length) return [];
  return await _ask(pairs.map(([a, b]) => ["equal", typeof a === "string" ? a : hex(a), typeof b === "string" ? b : hex(b)]));
}

/** Per pair [reading, published map], "same" when the map's `got` field is the reading (cbor2 compares). */
export async function cbor2CompareGot(pairs: [Uint8Array | string, Uint8Array | string][]): Promise<string[]> {
  if (!pairs.length) return [];
  return await _ask(pairs.map(([a, b]) => ["got", typeof a === "string" ? a : hex(a), typeof b === "string" ? b : hex(b)]));
}

/** Items cbor2 itself encoded (dates, decimals, bignums, tags, simple values, int keys…), as [name, hex]. */
export async function cbor2Encoded(): Promise<[string, string][]> {
  return JSON.parse((await _ask([["encode"]]))[0]!) as [string, string][];
}

/**
 * RFC 8949 Appendix A, every example as [hex, preferred]: `preferred` when re-encoding must give
 * the same bytes (the example is in preferred serialization and JavaScript can hold its type).
 * simple(24) as 0xf818 is not here: RFC 8949 made it not well-formed (RFC 7049 listed it).
 */
export const APPENDIX_A: [string, boolean][] = [
  ["00", true], ["01", true], ["0a", true], ["17", true], ["1818", true], ["1819", true], ["1864", true], ["1903e8", true],
  ["1a000f4240", true], ["1b000000e8d4a51000", true], ["1bffffffffffffffff", true], ["c249010000000000000000", true],
  ["3bffffffffffffffff", true], ["c349010000000000000000", true], ["20", true], ["29", true], ["3863", true], ["3903e7", true],
  // Floats with an integral value (0.0, 1.0, 65504.0, 100000.0, -4.0) come back as integers: one number type.
  ["f90000", false], ["f98000", true], ["f93c00", false], ["fb3ff199999999999a", true], ["f93e00", true], ["f97bff", false],
  ["fa47c35000", false], ["fa7f7fffff", true], ["fb7e37e43c8800759c", true], ["f90001", true], ["f90400", true], ["f9c400", false],
  ["fbc010666666666666", true], ["f97c00", true], ["f97e00", true], ["f9fc00", true], ["fa7f800000", false], ["fa7fc00000", false],
  ["faff800000", false], ["fb7ff0000000000000", false], ["fb7ff8000000000000", false], ["fbfff0000000000000", false],
  ["f4", true], ["f5", true], ["f6", true], ["f7", true], ["f0", true], ["f8ff", true],
  ["c074323031332d30332d32315432303a30343a30305a", true], ["c11a514b67b0", true], ["c1fb41d452d9ec200000", true],
  ["d74401020304", true], ["d818456449455446", true], ["d82076687474703a2f2f7777772e6578616d706c652e636f6d", true],
  ["40", true], ["4401020304", true], ["60", true], ["6161", true], ["6449455446", true], ["62225c", true], ["62c3bc", true],
  ["63e6b0b4", true], ["64f0908591", true], ["80", true], ["83010203", true], ["8301820203820405", true],
  ["98190102030405060708090a0b0c0d0e0f101112131415161718181819", true], ["a0", true], ["a201020304", true],
  ["a26161016162820203", true], ["826161a161626163", true], ["a56161614161626142616361436164614461656145", true],
  ["5f42010243030405ff", false], ["7f657374726561646d696e67ff", false], ["9fff", false], ["9f018202039f0405ffff", false],
  ["9f01820203820405ff", false], ["83018202039f0405ff", false], ["83019f0203ff820405", false],
  ["9f0102030405060708090a0b0c0d0e0f101112131415161718181819ff", false], ["bf61610161629f0203ffff", false],
  ["826161bf61626163ff", false], ["bf6346756ef563416d7421ff", false],
];
