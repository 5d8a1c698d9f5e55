/** What runs this code, for build_info and logs: Deno, the single executable, or plain Node. */
export function runtimeName(): "node" | "deno" | "binary" {
  if ("Deno" in globalThis) return "deno";
  try {
    const sea = process.getBuiltinModule?.("node:sea") as { isSea?: () => boolean } | undefined;
    if (sea?.isSea?.()) return "binary";
  } catch {
    // Older Node without node:sea: not a single executable.
  }
  return "node";
}
