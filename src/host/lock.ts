import { open, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { ConfigError } from "../errors.ts";
import { isAlive } from "../runtime/process.ts";
import type { Logger } from "../util/log.ts";

/** The lock file in the data directory: the pid of the host that owns it. */
export const LOCK_FILE = "outpost.lock";

/**
 * Own the data directory, or refuse: two hosts on one store stop each other's nats-server in
 * turn. A lock whose process is gone (kill -9, power cut) is taken over.
 * @returns release, for a clean stop
 * @throws ConfigError naming the pid that holds it
 */
export async function lockDataDir(dir: string, log: Logger): Promise<() => Promise<void>> {
  const file = join(dir, LOCK_FILE);
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const h = await open(file, "wx");
      await h.writeFile(`${process.pid}\n`);
      await h.close();
      return async () => {
        const pid = Number((await readFile(file, "utf8").catch(() => "")).trim());
        if (pid === process.pid) await rm(file, { force: true });
      };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
    }
    const pid = Number((await readFile(file, "utf8").catch(() => "")).trim());
    if (pid > 0 && pid !== process.pid && isAlive(pid)) {
      throw new ConfigError(`${dir} is in use by another outpost (pid ${pid}): stop it first, or give this one its own --data-dir`);
    }
    log.warn(`taking over the data directory lock of outpost pid ${pid || "?"}, which is gone`);
    await writeFile(file, "", { flag: "w" }).then(() => rm(file, { force: true }));
  }
  throw new ConfigError(`Cannot lock ${dir}: ${file} keeps coming back`);
}
