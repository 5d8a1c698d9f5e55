// test/file-protocol/file_lock.py as a driver: mcp_lockd.file_protocol (the Python
// implementation of docs/protocol.md, clients/python) in its own process, one
// JSON command per line in, one reply per line out.

import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { PYTHON } from "./python.ts";

// dist/test/helpers/*.js → the .py source, which tsc does not copy.
const FILE_LOCK_PY = join(fileURLToPath(new URL("../../../test/file-protocol/", import.meta.url)), "file_lock.py");

export interface PyLease {
  resource: string;
  holder: string;
  fencing_token: number;
  acquired_at: number;
  expires_at: number;
  /** The inode of the lease file its last write left. */
  ino: number | null;
}

export interface PyState {
  kind: "free" | "held" | "expired" | "unreadable" | "old-unreadable";
  holder: string | null;
  fencing_token: number | null;
  blocked_until: number | null;
  reason: string | null;
  /** For a file that parses: its version, renewed_at and expires_at (ms). */
  version: number | null;
  renewed_at: number | null;
  expires_at: number | null;
}

export interface PyReply {
  ok: boolean;
  error?: string;
  message?: string;
  lease?: PyLease;
  released?: boolean;
  state?: PyState;
  fence?: { kind: "absent" | "file" | "dir"; value: number };
  started: number;
  finished: number;
}

/** file_lock.py run as a driver: one JSON command per line in, one reply per line out. */
export class PyDriver {
  private readonly pending: Array<{ resolve: (reply: PyReply) => void; reject: (err: Error) => void }> = [];
  private stderr = "";
  private readonly exited: Promise<unknown>;

  private constructor(readonly child: ChildProcess) {
    child.stderr!.setEncoding("utf8").on("data", (chunk: string) => (this.stderr += chunk));
    createInterface({ input: child.stdout! }).on("line", (line) => {
      const next = this.pending.shift();
      if (!next) return;
      try {
        next.resolve(JSON.parse(line) as PyReply);
      } catch (err) {
        next.reject(new Error(`file_lock.py answered ${JSON.stringify(line)}: ${(err as Error).message}`));
      }
    });
    this.exited = once(child, "exit").then(([code, signal]) => {
      for (const waiter of this.pending.splice(0)) {
        waiter.reject(new Error(`file_lock.py exited (${signal ?? code}) with a command pending:\n${this.stderr}`));
      }
    });
  }

  /** `env` is added to this process's environment (MCP_LOCKD_TEST_STOP_AT, for one). */
  static start(lockDir: string, env: Record<string, string> = {}): PyDriver {
    return new PyDriver(spawn(PYTHON, [FILE_LOCK_PY, lockDir], { stdio: ["pipe", "pipe", "pipe"], env: { ...process.env, ...env } }));
  }

  /** What it wrote on stderr so far (its warnings). */
  output(): string {
    return this.stderr;
  }

  call(command: Record<string, unknown>): Promise<PyReply> {
    return new Promise((resolve, reject) => {
      this.pending.push({ resolve, reject });
      this.child.stdin!.write(JSON.stringify(command) + "\n");
    });
  }

  async close(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    this.child.stdin!.end();
    const timer = setTimeout(() => this.child.kill("SIGKILL"), 5_000);
    await this.exited;
    clearTimeout(timer);
  }
}
