import { join, sep } from "node:path";
import { RESOURCE_NAME_PATTERN } from "../core/limits.ts";

// Names of the files that make up the file protocol (docs/protocol.md).
// Resource names are validated before they get here, and never start with
// '.', so temp files (leading '.') never collide with a lease file.

export const LEASE_SUFFIX = ".lock";
export const GUARD_SUFFIX = ".lock.guard";
export const FENCE_SUFFIX = ".lock.fence";
// `.R.<pid>.<random>.tmp` and `..probe.<pid>.<random>.tmp`.
const TEMP_ENTRY = /^\.(?:[A-Za-z0-9][A-Za-z0-9._-]{0,127}|\.probe)\.[0-9]+\.[0-9a-f]+\.tmp$/;

export class LockDirLayout {
  /** The dir with one separator after it. Entry names are validated (no separator, never "." or ".."), so appending one is what join() would give, without its normalising on every renewal's path. */
  private readonly base: string;

  constructor(readonly dir: string) {
    const normal = join(dir);
    this.base = normal.endsWith(sep) ? normal : normal + sep;
  }

  leaseFile(resource: string): string {
    return this.base + resource + LEASE_SUFFIX;
  }

  guardDir(resource: string): string {
    return this.base + resource + GUARD_SUFFIX;
  }

  fenceFile(resource: string): string {
    return this.base + resource + FENCE_SUFFIX;
  }

  /** Where a conversion to version 2 moves a version 1 counter file (docs/protocol.md §9); never removed. */
  retiredFenceFile(resource: string): string {
    return this.base + resource + FENCE_SUFFIX + ".v1";
  }

  /** A unique sibling to write (a file, or the fencing counter's first dir) before renaming it into place. */
  tempFileFor(resource: string, unique: string): string {
    return `${this.base}.${resource}.${process.pid}.${unique}.tmp`;
  }

  /** The writability probe's file: two leading dots, so never a resource's temp file. */
  probeFile(unique: string): string {
    return `${this.base}..probe.${process.pid}.${unique}.tmp`;
  }

  /** True for the names of temp files and probes (anyone may sweep them once they are old). */
  isTempEntry(entry: string): boolean {
    return TEMP_ENTRY.test(entry);
  }

  /** The resource a directory entry is the lease file of, if any. */
  resourceOfEntry(entry: string): string | undefined {
    if (!entry.endsWith(LEASE_SUFFIX)) return undefined;
    const resource = entry.slice(0, -LEASE_SUFFIX.length);
    return RESOURCE_NAME_PATTERN.test(resource) ? resource : undefined;
  }
}
