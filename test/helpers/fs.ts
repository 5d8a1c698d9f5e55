import { access } from "node:fs/promises";

/** Whether `path` exists (false for any access error). */
export async function exists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  );
}
