import { mkdir, readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";

/**
 * The last fencing token issued for `resource` as the files say
 * (docs/protocol.md §2): the name in the version 2 counter directory, the
 * value of a version 1 counter file, or 0 when there is none.
 */
export async function readFenceToken(dir: string, resource: string): Promise<number> {
  const path = join(dir, `${resource}.lock.fence`);
  try {
    const names = (await readdir(path)).filter((name) => /^[0-9]+$/.test(name));
    if (names.length !== 1) throw new Error(`${path} holds ${names.length} token files: ${names.join(", ")}`);
    return Number(names[0]);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOENT") return 0;
    if (code !== "ENOTDIR") throw err;
  }
  return (JSON.parse(await readFile(path, "utf8")) as { fencing_token: number }).fencing_token;
}

/** Writes a version 2 fencing counter saying `token` was the last token issued. */
export async function writeFenceToken(dir: string, resource: string, token: number): Promise<void> {
  const path = join(dir, `${resource}.lock.fence`);
  await mkdir(path);
  await writeFile(join(path, String(token)), "");
}
