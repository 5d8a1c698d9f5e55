import { join } from "node:path";
import { RESOURCE_NAME_PATTERN } from "../core/limits.ts";

// Names of the files that make up the file protocol (docs/protocol.md).
// Resource names are validated before they get here, and never start with
// '.', so temp files (leading '.') never collide with a lease file.

export const LEASE_SUFFIX = ".lock";
export const GUARD_SUFFIX = ".lock.guard";
export const FENCE_SUFFIX = ".lock.fence";

export class LockDirLayout {
  constructor(readonly dir: string) {}

  leaseFile(resource: string): string {
    return join(this.dir, resource + LEASE_SUFFIX);
  }

  guardDir(resource: string): string {
    return join(this.dir, resource + GUARD_SUFFIX);
  }

  fenceFile(resource: string): string {
    return join(this.dir, resource + FENCE_SUFFIX);
  }

  /** A unique sibling to write before renaming over `target`. */
  tempFileFor(resource: string, unique: string): string {
    return join(this.dir, `.${resource}.${process.pid}.${unique}.tmp`);
  }

  /** The resource a directory entry is the lease file of, if any. */
  resourceOfEntry(entry: string): string | undefined {
    if (!entry.endsWith(LEASE_SUFFIX)) return undefined;
    const resource = entry.slice(0, -LEASE_SUFFIX.length);
    return RESOURCE_NAME_PATTERN.test(resource) ? resource : undefined;
  }
}
