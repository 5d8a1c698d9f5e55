import { closeSync, openSync, readFileSync, writeSync } from "node:fs";
import { join } from "node:path";

/**
 * The downstream system a lock protects, as docs/protocol.md section 6
 * describes it: it accepts a write only with a token at least as high as the
 * highest it has seen. It must decide that without any lock of its own (a
 * pause of a writer must not make two writes both pass a check), so it is an
 * append-only log: each write is ONE append (O_APPEND, a single small write
 * call, atomic in one file on a local file system), and the log's order is
 * the order of the writes. A write is accepted exactly when its token is >=
 * every token appended before it; the writer learns the verdict by reading the
 * log up to its own line. The checker recomputes every verdict from the log.
 */
export function fencedLogPath(dir: string, resource: string): string {
  return join(dir, `${resource}.fenced.jsonl`);
}

export interface FencedEntry {
  token: number;
  id: string;
}

export function appendFenced(dir: string, resource: string, entry: FencedEntry): boolean {
  const path = fencedLogPath(dir, resource);
  const fd = openSync(path, "a");
  try {
    writeSync(fd, JSON.stringify(entry) + "\n");
  } finally {
    closeSync(fd);
  }
  const verdict = fencedVerdicts(readFileSync(path, "utf8")).get(entry.id);
  if (verdict === undefined) throw new Error(`fenced log ${path} lost the write ${entry.id}`);
  return verdict;
}

/** Accepted (true) or refused, per write id, in log order. Lines after a torn one are ignored. */
export function fencedVerdicts(text: string): Map<string, boolean> {
  const verdicts = new Map<string, boolean>();
  let highest = 0;
  for (const line of text.split("\n")) {
    if (line === "") continue;
    let entry: FencedEntry;
    try {
      entry = JSON.parse(line) as FencedEntry;
    } catch {
      break; // a line still being appended by someone else, after ours
    }
    const accepted = entry.token >= highest;
    if (accepted) highest = entry.token;
    verdicts.set(entry.id, accepted);
  }
  return verdicts;
}
