// test/clients/lease_driver.py as a child process: JSON commands in, replies
// (matched by seq) and events out. It holds leases through the Python client
// package (clients/python/mcp_lockd), with LockClient or FileLockClient.

import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { PYTHON } from "../helpers/python.ts";
import { withTimeout } from "../helpers/wait.ts";

export { PYTHON };
// dist/test/clients/*.js → the .py files in the repository (they are not copied to dist).
export const DRIVER_PY = fileURLToPath(new URL("../../../test/clients/lease_driver.py", import.meta.url));
export const PYTHON_PACKAGE_DIR = fileURLToPath(new URL("../../../clients/python/", import.meta.url));

export interface PyLease {
  resource: string;
  holder: string;
  fencing_token: number;
  acquired_at: number;
  expires_at: number;
  ttl: number;
}

export interface PyReply {
  ok: boolean;
  seq: number;
  error?: string;
  message?: string;
  holder?: string;
  expires_at?: number;
  reason?: string;
  field?: string;
  code?: string;
  is_lock_error?: boolean;
  lease?: PyLease;
  granted_at?: number;
  started?: number;
  lost?: boolean;
  released?: boolean;
  remaining?: number;
  streams_opened?: number;
  /** threading.active_count() and the threads' names (op session). */
  threads?: number;
  thread_names?: string[];
  renewals_confirmed?: number;
  renewals_failed?: number;
  locks?: Array<{ resource: string; holder: string; fencing_token: number; expires_at: number; ttl: number; waiters: number; state: string }>;
  has_lease_id?: boolean;
  leaked_in?: string[];
  log_lines?: number;
}

export interface PyLostEvent {
  event: "lost";
  id: string;
  at: number;
  reason: string;
  expires_at: number;
}

export interface PyRenewedEvent {
  event: "renewed";
  /** The replica that confirmed it. */
  address: string;
  at: number;
}

export class PythonLeaseDriver {
  private seq = 0;
  private readonly pending = new Map<number, { resolve: (reply: PyReply) => void; reject: (err: Error) => void }>();
  private readonly lostEvents = new Map<string, PyLostEvent>();
  private readonly lostWaiters = new Map<string, Array<(event: PyLostEvent) => void>>();
  private renewedWaiters: Array<{ address: string; resolve: (event: PyRenewedEvent) => void }> = [];
  private output = "";
  readonly exited: Promise<number | string>;
  readonly ready: Promise<void>;

  private constructor(readonly child: ChildProcess) {
    child.stderr!.setEncoding("utf8").on("data", (chunk: string) => (this.output += chunk));
    let markReady: () => void = () => {};
    this.ready = new Promise((resolve) => (markReady = resolve));
    createInterface({ input: child.stdout! }).on("line", (line) => {
      let message: Record<string, unknown>;
      try {
        message = JSON.parse(line) as Record<string, unknown>;
      } catch {
        this.output += `(stdout) ${line}\n`;
        return;
      }
      if (message.event === "ready") return markReady();
      if (message.event === "renewed") {
        const event = message as unknown as PyRenewedEvent;
        const [matched, rest] = [this.renewedWaiters.filter((w) => w.address === event.address), this.renewedWaiters.filter((w) => w.address !== event.address)];
        this.renewedWaiters = rest;
        for (const waiter of matched) waiter.resolve(event);
        return;
      }
      if (message.event === "lost") {
        const event = message as unknown as PyLostEvent;
        this.lostEvents.set(event.id, event);
        for (const waiter of this.lostWaiters.get(event.id) ?? []) waiter(event);
        this.lostWaiters.delete(event.id);
        return;
      }
      const reply = message as unknown as PyReply;
      const waiter = this.pending.get(reply.seq);
      this.pending.delete(reply.seq);
      waiter?.resolve(reply);
    });
    this.exited = once(child, "exit").then(([code, signal]) => {
      const how = (signal ?? code) as number | string;
      for (const waiter of this.pending.values()) {
        waiter.reject(new Error(`lease_driver.py exited (${how}) with a command pending:\n${this.output}`));
      }
      this.pending.clear();
      return how;
    });
    this.exited.catch(() => {});
  }

  /** `kind` grpc: target is the service address, `options` LockClient's keyword arguments; file: the lock dir. */
  static async start(kind: "grpc" | "file", target: string, options?: Record<string, unknown>): Promise<PythonLeaseDriver> {
    const args = [DRIVER_PY, kind, target, ...(options ? [JSON.stringify(options)] : [])];
    const child = spawn(PYTHON, args, {
      stdio: ["pipe", "pipe", "pipe"],
      env: { ...process.env, PYTHONDONTWRITEBYTECODE: "1" },
    });
    const driver = new PythonLeaseDriver(child);
    await withTimeout(
      Promise.race([driver.ready, driver.exited.then((how) => Promise.reject(new Error(`lease_driver.py exited (${how}):\n${driver.output}`)))]),
      20_000,
      "lease_driver.py to start",
    );
    return driver;
  }

  /** Everything the driver wrote to stderr (its log, at DEBUG). */
  stderr(): string {
    return this.output;
  }

  call(command: Record<string, unknown>): Promise<PyReply> {
    const seq = ++this.seq;
    return new Promise((resolve, reject) => {
      this.pending.set(seq, { resolve, reject });
      this.child.stdin!.write(JSON.stringify({ ...command, seq }) + "\n");
    });
  }

  /** Calls and asserts ok. */
  async ok(command: Record<string, unknown>): Promise<PyReply> {
    const reply = await this.call(command);
    assert.ok(reply.ok, `${JSON.stringify(command)} failed: ${JSON.stringify(reply)}\nstderr:\n${this.output}`);
    return reply;
  }

  /** The lost event of lease `id`, once it fires. */
  lost(id: string): Promise<PyLostEvent> {
    const seen = this.lostEvents.get(id);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve) => {
      const waiters = this.lostWaiters.get(id) ?? [];
      waiters.push(resolve);
      this.lostWaiters.set(id, waiters);
    });
  }

  /** The next renewal confirmed by the replica at `address`. */
  nextRenewal(address: string): Promise<PyRenewedEvent> {
    return new Promise((resolve) => this.renewedWaiters.push({ address, resolve }));
  }

  /** The lost event of `id` if it has fired. */
  lostSoFar(id: string): PyLostEvent | undefined {
    return this.lostEvents.get(id);
  }

  async close(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    this.child.stdin!.end();
    const timer = setTimeout(() => this.child.kill("SIGKILL"), 10_000);
    await this.exited;
    clearTimeout(timer);
  }
}
