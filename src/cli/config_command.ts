import { writeOut } from "../runtime/process.ts";
import { envName, RUN_FLAGS } from "./flags.ts";
import { runFlags } from "./run_command.ts";
import { COMMANDS } from "./specs.ts";

/**
 * `outpost config`: the configuration `outpost run` would use with the same flags, environment
 * and `--config` file (secrets masked), or with `--sample` a config file to start from.
 */
export async function configCommand(args: string[]): Promise<number> {
  const spec = COMMANDS.find((c) => c.name === "config")!;
  const { values } = await runFlags(args, spec.flags);
  if (values.sample) {
    writeOut(sampleConfig());
    return 0;
  }
  const shown: Record<string, unknown> = {};
  for (const f of RUN_FLAGS) {
    if (f.name === "config") continue;
    const v = values[f.name];
    if (v !== undefined) shown[f.name] = f.secret ? "***" : v;
  }
  writeOut(`${JSON.stringify(shown, null, 2)}\n`);
  return 0;
}

/** A config file with every flag of run: set ones at their default, the others commented out. */
export function sampleConfig(): string {
  const rows = RUN_FLAGS.filter((f) => f.name !== "config").map((f, i, all) => {
    const comma = i < all.length - 1 ? "," : "";
    const value = f.kind === "port" || f.kind === "int" ? f.default : f.kind === "boolean" ? f.default : JSON.stringify(f.default ?? "");
    const line = `  ${JSON.stringify(f.name)}: ${value}${comma}`;
    return `  // ${f.help} (env ${envName(f.name)})\n${f.default === undefined ? `  // ${line.trim()}` : line}`;
  });
  // A trailing comment-only entry would leave a dangling comma: the last real entry closes the object.
  return `{\n${rows.join("\n")}\n}\n`;
}
