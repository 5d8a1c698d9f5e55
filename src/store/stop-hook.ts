/** The protocol's steps at which a test may freeze a writer. */
export type PausePoint = "guard" | "temp" | "commit";
/** Called by the store at each PausePoint (docs/protocol.md §3 and §4). */
export type PauseHook = (point: PausePoint, resource: string) => void;

const POINTS: readonly PausePoint[] = ["guard", "temp", "commit"];

/**
 * A test hook for the real-process pause tests: with
 * `MCP_LOCKD_TEST_STOP_AT=<point>[:<resource>]` (point: guard, temp or
 * commit) the process sends itself SIGSTOP once, at that step of the next
 * operation (on that resource), so a test can hold it there past the guard's
 * staleness exactly where it wants. Unset, it does nothing.
 */
export function stopHookFromEnv(env: NodeJS.ProcessEnv): PauseHook | undefined {
  const spec = env.MCP_LOCKD_TEST_STOP_AT;
  if (!spec) return undefined;
  const [point, resource] = spec.split(":", 2) as [PausePoint, string | undefined];
  if (!POINTS.includes(point)) throw new Error(`MCP_LOCKD_TEST_STOP_AT: unknown point "${point}" (one of ${POINTS.join(", ")})`);
  let fired = false;
  return (at, on) => {
    if (fired || at !== point || (resource !== undefined && on !== resource)) return;
    fired = true;
    process.kill(process.pid, "SIGSTOP");
  };
}
