/** A closed time window [from, to] on the mono scale (ms). */
export interface Window {
  from: number;
  to: number;
}

/** How much of `span` no window of `cover` covers. */
export function uncoveredMs(span: Window, cover: readonly Window[]): number {
  const clipped = cover
    .map((w) => ({ from: Math.max(w.from, span.from), to: Math.min(w.to, span.to) }))
    .filter((w) => w.to > w.from)
    .sort((a, b) => a.from - b.from);
  let covered = 0;
  let reach = span.from;
  for (const w of clipped) {
    if (w.to <= reach) continue;
    covered += w.to - Math.max(w.from, reach);
    reach = w.to;
  }
  return span.to - span.from - covered;
}

export function overlaps(a: Window, b: Window): boolean {
  return a.from < b.to && b.from < a.to;
}
