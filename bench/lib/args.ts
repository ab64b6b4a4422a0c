/** Command-line options of `npm run bench`. */
export type Runtime = "node" | "deno" | "bun";

/** Parsed options. */
export interface BenchArgs {
  runtimes: Runtime[];
  quick: boolean;
  compare: string | undefined;
  /** Directory the JSON and SVG are written to. */
  out: string;
  /** wrk connections (default 64: the same depth as the raw publish ceiling's 64 in flight). */
  connections: number;
}

const _RUNTIMES: readonly Runtime[] = ["node", "deno", "bun"];

/**
 * Parse `--runtime node|deno|bun|all`, `--quick`, `--compare FILE`, `--out DIR`, `--connections N`.
 * @param argv arguments after the script
 * @throws TypeError for unknown flags or values
 */
export function parseArgs(argv: string[]): BenchArgs {
  const a: BenchArgs = { runtimes: ["node"], quick: false, compare: undefined, out: "bench/results", connections: 64 };
  for (let i = 0; i < argv.length; i++) {
    const [flag, inline] = argv[i]!.split("=", 2) as [string, string | undefined];
    const value = () => {
      const v = inline ?? argv[++i];
      if (v === undefined) throw new TypeError(`${flag} needs a value`);
      return v;
    };
    switch (flag) {
      case "--runtime": {
        const v = value();
        if (v === "all") a.runtimes = [..._RUNTIMES];
        else if ((_RUNTIMES as string[]).includes(v)) a.runtimes = [v as Runtime];
        else throw new TypeError(`--runtime must be node, deno, bun or all, not ${JSON.stringify(v)}`);
        break;
      }
      case "--quick":
        a.quick = true;
        break;
      case "--compare":
        a.compare = value();
        break;
      case "--out":
        a.out = value();
        break;
      case "--connections":
        a.connections = Math.max(1, Math.min(256, Number(value()) | 0));
        break;
      case "--help":
        throw new TypeError("usage: npm run bench -- [--runtime node|deno|bun|all] [--quick] [--compare FILE.json] [--out DIR] [--connections N]");
      default:
        throw new TypeError(`Unknown flag ${JSON.stringify(flag)}; try --help`);
    }
  }
  return a;
}
