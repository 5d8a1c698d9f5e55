import { execFileSync } from "node:child_process";
import { join } from "node:path";
import { REPO_ROOT } from "./paths.ts";

/**
 * The disk's state at this moment: what the file protocol's system calls for
 * one acquire+release cycle cost with no service (scripts/measure-fs-cycle.mjs,
 * in the temp dir the systems use). On a virtual disk this moves with the
 * host's load, by several times within minutes, so each round records it: a
 * slow round of mcp-lockd next to a slow floor is the disk, not the service.
 */
export function measureDiskFloorMs(cycles: number): number | null {
  try {
    const output = execFileSync(process.execPath, [join(REPO_ROOT, "scripts", "measure-fs-cycle.mjs"), "", String(cycles)], {
      encoding: "utf8",
      timeout: 60_000,
    });
    const match = /per cycle ([\d.]+) ms/.exec(output);
    return match ? Number(match[1]) : null;
  } catch {
    return null;
  }
}
