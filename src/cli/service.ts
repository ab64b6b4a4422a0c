import { mkdir, writeFile } from "node:fs/promises";
import { homedir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { entryScript, selfCommand, writeOut } from "../runtime/process.ts";
import { parseFlags, UsageError } from "./flags.ts";
import { COMMANDS } from "./specs.ts";

/** What the unit is made from. */
export interface UnitOptions {
  /** The command that runs outpost (runtime and script). */
  exec: string[];
  config: string;
  workdir: string;
  user: boolean;
}

/**
 * A systemd unit for `outpost run --config FILE`: restarted on failure, its state in
 * `StateDirectory=outpost` (system units), an optional `EnvironmentFile` for secrets (such as
 * `OUTPOST_ADMIN_TOKEN`), and the hardening options that leave V8's JIT and workers working.
 */
export function systemdUnit(o: UnitOptions): string {
  const q = (s: string) => (/[\s"\\]/.test(s) ? JSON.stringify(s) : s);
  const exec = [...o.exec, "run", "--config", o.config].map(q).join(" ");
  const env = o.user ? "%h/.config/outpost/outpost.env" : "/etc/outpost/outpost.env";
  return `# Written by outpost service install; edit the config file, not this unit.
[Unit]
Description=Outpost edge runtime (sensor readings into NATS JetStream, handled by isolated handlers)
After=network-online.target
Wants=network-online.target

[Service]
Type=simple
ExecStart=${exec}
WorkingDirectory=${o.user ? "%h" : o.workdir}
${o.user ? "" : "StateDirectory=outpost\n"}EnvironmentFile=-${env}
Restart=on-failure
RestartSec=2
# outpost drains its handlers and stops its nats-server on SIGTERM, bounded by --shutdown-timeout.
KillSignal=SIGTERM
TimeoutStopSec=45
LimitNOFILE=65536
NoNewPrivileges=yes
PrivateTmp=yes
ProtectSystem=full
ProtectHome=read-only
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectControlGroups=yes
RestrictSUIDSGID=yes
RestrictRealtime=yes
LockPersonality=yes
# No MemoryDenyWriteExecute: V8's JIT needs writable code pages.

[Install]
WantedBy=${o.user ? "default.target" : "multi-user.target"}
`;
}

/** `outpost service install [--user] [--config FILE] [--out FILE]`. */
export async function serviceCommand(args: string[]): Promise<number> {
  const spec = COMMANDS.find((c) => c.name === "service")!;
  const { values: f, positional } = parseFlags(args, {}, spec.flags);
  if (positional[0] !== "install" || positional.length > 1) throw new UsageError(`Usage: ${spec.usage[0]}`);
  const user = f.user === true;
  const out = f.out ? String(f.out) : user ? join(homedir(), ".config/systemd/user/outpost.service") : "/etc/systemd/system/outpost.service";
  const script = resolve(entryScript());
  const unit = systemdUnit({ exec: selfCommand(script), config: resolve(String(f.config)), workdir: String(f.workdir), user });
  await mkdir(dirname(out), { recursive: true });
  await writeFile(out, unit);
  const ctl = user ? "systemctl --user" : "systemctl";
  writeOut(`wrote ${out}\n  runs: outpost run --config ${resolve(String(f.config))} (write it with: outpost config --sample > ${resolve(String(f.config))})\n` +
    `  secrets: put OUTPOST_ADMIN_TOKEN=… in ${user ? "~/.config/outpost/outpost.env" : "/etc/outpost/outpost.env"} (mode 600)\n` +
    `  then: ${ctl} daemon-reload && ${ctl} enable --now outpost${user ? "\n  (and loginctl enable-linger $USER to run it without a login)" : ""}\n`);
  return 0;
}
