// Durations on the command line: `500ms`, `30s`, `5m`, `1h`, combinations such
// as `1m30s` (as in Go's time.ParseDuration, which etcd and Consul users know),
// and a bare number, which means seconds (`--ttl 30`, like etcdctl's TTLs).

const UNIT_MS: Record<string, number> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000 };
const PART = /(\d+(?:\.\d+)?|\.\d+)(ms|s|m|h)/y;

export class DurationSyntaxError extends Error {
  override name = "DurationSyntaxError";
}

/** Milliseconds from a duration text; throws DurationSyntaxError naming `what` (say `--ttl`). */
export function parseDuration(text: string, what: string): number {
  const trimmed = text.trim();
  const fail = () =>
    new DurationSyntaxError(`${what} ${JSON.stringify(text)}: expected a duration like 500ms, 30s, 5m, 1h, 1m30s, or a number of seconds`);
  if (trimmed === "") throw fail();
  if (/^(\d+(\.\d+)?|\.\d+)$/.test(trimmed)) return Number(trimmed) * 1000;
  let ms = 0;
  PART.lastIndex = 0;
  while (PART.lastIndex < trimmed.length) {
    const start = PART.lastIndex;
    const match = PART.exec(trimmed);
    if (!match || match.index !== start) throw fail();
    ms += Number(match[1]) * UNIT_MS[match[2]!]!;
  }
  if (!Number.isFinite(ms)) throw fail();
  return ms;
}

/**
 * A short human form for tables and messages: `850ms`, `12s`, `4m05s`,
 * `2h03m`, `3d04h`. Negative durations are shown as `-12s`.
 */
export function formatDuration(ms: number): string {
  if (ms < 0) return `-${formatDuration(-ms)}`;
  if (ms < 1_000) return `${Math.round(ms)}ms`;
  const totalSeconds = Math.floor(ms / 1000);
  if (totalSeconds < 60) return `${totalSeconds}s`;
  const totalMinutes = Math.floor(totalSeconds / 60);
  if (totalMinutes < 60) return `${totalMinutes}m${pad(totalSeconds % 60)}s`;
  const totalHours = Math.floor(totalMinutes / 60);
  if (totalHours < 24) return `${totalHours}h${pad(totalMinutes % 60)}m`;
  return `${Math.floor(totalHours / 24)}d${pad(totalHours % 24)}h`;
}

function pad(n: number): string {
  return String(n).padStart(2, "0");
}
