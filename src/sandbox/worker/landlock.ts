/**
 * Landlock (Linux 5.13+, TCP rules 6.7+, scopes 6.12+) for the handler process on Bun, which has
 * no permission model of its own: the process restricts itself, irreversibly, before any handler
 * code runs. After `restrictSelf`, it and every worker thread it starts can read files only
 * below the allowed directories, write none, connect or bind no TCP port (unless `net`), and
 * signal no process outside itself. Called through `bun:ffi` and libc's `syscall`, so there is
 * nothing to build or install.
 * @module
 */

// Syscall numbers are the same on every architecture (added after the table was unified).
const _CREATE_RULESET = 444;
const _ADD_RULE = 445;
const _RESTRICT_SELF = 446;
const _PR_SET_NO_NEW_PRIVS = 38;
const _RULE_PATH_BENEATH = 1;
const _CREATE_RULESET_VERSION = 1;

// Filesystem rights by the ABI that introduced them.
const _FS_V1 = (1 << 13) - 1; // execute … make_sym
const _FS_REFER = 1 << 13; // v2
const _FS_TRUNCATE = 1 << 14; // v3
const _FS_IOCTL_DEV = 1 << 15; // v5
const _READ = (1 << 0) | (1 << 2) | (1 << 3); // execute, read file, read dir
const _READ_FILE = 1 << 2;
const _NET_ALL = (1 << 0) | (1 << 1); // bind TCP, connect TCP (v4)
const _SCOPE_ALL = (1 << 0) | (1 << 1); // abstract unix sockets, signals (v6)

/** What the restriction allows. */
export interface LandlockPolicy {
  /** Directories (and their contents) that may be read. */
  readDirs: string[];
  /** Single files that may be read (they may not exist). */
  readFiles: string[];
  /** Whether TCP connect and bind stay allowed. */
  net: boolean;
}

/** What {@link restrictSelf} did. */
export interface LandlockResult {
  abi: number;
  /** Whether TCP is restricted (ABI 4 and newer). */
  net: boolean;
  /** Whether signals and abstract sockets are scoped (ABI 6 and newer). */
  scoped: boolean;
}

type _Ffi = {
  dlopen(lib: string, symbols: Record<string, { args: string[]; returns: string }>): { symbols: Record<string, (...a: number[]) => number | bigint> };
  ptr(b: ArrayBufferView): number;
};

/**
 * Restrict this process (Bun only).
 * @throws Error when the kernel has no Landlock or a step fails: the caller must not run handlers then
 */
export async function restrictSelf(p: LandlockPolicy): Promise<LandlockResult> {
  const ffi = (await import("bun:ffi" as string)) as _Ffi;
  const nodeFs = await import("node:fs");
  // syscall(2) is variadic; its integer and pointer arguments travel in the same registers as a
  // fixed prototype's on x86-64 and arm64 Linux, so one five-integer prototype serves every call.
  const lib = ffi.dlopen("libc.so.6", {
    syscall: { args: ["i64", "i64", "i64", "i64", "i64"], returns: "i64" },
    prctl: { args: ["i32", "u64", "u64", "u64", "u64"], returns: "i32" },
  });
  const sys = (...a: number[]) => Number(lib.symbols.syscall!(...a, ...Array(5 - a.length).fill(0)));
  const abi = sys(_CREATE_RULESET, 0, 0, _CREATE_RULESET_VERSION);
  if (abi < 1) throw new Error("this kernel has no Landlock (Linux 5.13 or newer, with landlock among its LSMs)");
  let fs = _FS_V1;
  if (abi >= 2) fs |= _FS_REFER;
  if (abi >= 3) fs |= _FS_TRUNCATE;
  if (abi >= 5) fs |= _FS_IOCTL_DEV;
  const net = abi >= 4 && !p.net;
  const scoped = abi >= 6;
  // struct landlock_ruleset_attr { u64 handled_access_fs; u64 handled_access_net; u64 scoped; }
  const attr = new BigUint64Array([BigInt(fs), BigInt(net ? _NET_ALL : 0), BigInt(scoped ? _SCOPE_ALL : 0)]);
  const size = abi >= 6 ? 24 : abi >= 4 ? 16 : 8;
  const rulesetFd = sys(_CREATE_RULESET, ffi.ptr(attr), size, 0);
  if (rulesetFd < 0) throw new Error(`landlock_create_ruleset failed (${rulesetFd})`);
  const allow = (path: string, access: number) => {
    let fd: number;
    try {
      fd = nodeFs.openSync(path, (nodeFs.constants as Record<string, number>).O_PATH ?? 0o10000000);
    } catch {
      return; // absent: nothing to allow
    }
    // struct landlock_path_beneath_attr { u64 allowed_access; s32 parent_fd; } (packed: 12 bytes)
    const rule = new Uint8Array(16);
    const dv = new DataView(rule.buffer);
    dv.setBigUint64(0, BigInt(access), true);
    dv.setInt32(8, fd, true);
    const rc = sys(_ADD_RULE, rulesetFd, _RULE_PATH_BENEATH, ffi.ptr(rule), 0);
    nodeFs.closeSync(fd);
    if (rc < 0) throw new Error(`landlock_add_rule ${path} failed (${rc})`);
  };
  for (const d of p.readDirs) allow(d, _READ & fs);
  for (const f of p.readFiles) allow(f, _READ_FILE);
  if (Number(lib.symbols.prctl!(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)) !== 0) throw new Error("prctl(PR_SET_NO_NEW_PRIVS) failed");
  const rc = sys(_RESTRICT_SELF, rulesetFd, 0);
  if (rc !== 0) throw new Error(`landlock_restrict_self failed (${rc})`);
  nodeFs.closeSync(rulesetFd);
  return { abi, net, scoped };
}
