import { fork, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { LOAD_WORKER_PATH } from "./paths.ts";
import type { FromWorker, Job, JobResult, Schedule, Target, ToWorker } from "./protocol.ts";

interface Pending {
  resolve(value: unknown): void;
  reject(error: Error): void;
}

/** The orchestrator's handle on one load process (load-worker.ts). */
export class LoadProcess {
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private ready: Pending | undefined;
  private exited = false;
  private stderr = "";

  private constructor(private readonly child: ChildProcess) {
    child.stderr!.setEncoding("utf8").on("data", (chunk: string) => (this.stderr = (this.stderr + chunk).slice(-4000)));
    child.on("message", (message: FromWorker) => this.receive(message));
    child.on("exit", (code, signal) => {
      this.exited = true;
      const error = new Error(`load process ${child.pid} exited (${signal ?? code})${this.stderr ? `:\n${this.stderr}` : ""}`);
      this.ready?.reject(error);
      for (const pending of this.pending.values()) pending.reject(error);
      this.pending.clear();
    });
  }

  /** Forks a load process and connects its driver to `target`. */
  static async start(target: Target): Promise<LoadProcess> {
    // execArgv empty: the orchestrator's Node flags (say --cpu-prof) are not the client's.
    const child = fork(LOAD_WORKER_PATH, [], { stdio: ["ignore", "inherit", "pipe", "ipc"], serialization: "advanced", execArgv: [] });
    const load = new LoadProcess(child);
    await new Promise((resolve, reject) => {
      load.ready = { resolve, reject };
      load.send({ type: "init", target });
    });
    return load;
  }

  get pid(): number {
    return this.child.pid!;
  }

  /** Sends the job; resolves once its clients are connected. */
  async prepare(job: Job): Promise<number> {
    const id = this.nextId++;
    await this.request(id, { type: "prepare", id, job });
    return id;
  }

  run(id: number, schedule: Schedule): Promise<JobResult> {
    return this.request(id, { type: "run", id, schedule }) as Promise<JobResult>;
  }

  /** Disconnects (the process then exits by itself); SIGKILL if it has not after 5 s. */
  async stop(): Promise<void> {
    if (this.exited) return;
    const exit = once(this.child, "exit");
    if (this.child.connected) this.child.disconnect();
    const timer = setTimeout(() => this.child.kill("SIGKILL"), 5_000);
    await exit;
    clearTimeout(timer);
  }

  private request(id: number, message: ToWorker): Promise<unknown> {
    if (this.exited) return Promise.reject(new Error(`load process ${this.child.pid} has exited`));
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.send(message);
    });
  }

  private send(message: ToWorker): void {
    this.child.send(message);
  }

  private receive(message: FromWorker): void {
    switch (message.type) {
      case "ready":
        this.ready?.resolve(undefined);
        this.ready = undefined;
        return;
      case "prepared":
        this.settle(message.id, undefined);
        return;
      case "result":
        this.settle(message.id, message.result);
        return;
      case "failed": {
        const error = new Error(`load process ${this.child.pid}: ${message.error}`);
        if (message.id === null) {
          this.ready?.reject(error);
          this.ready = undefined;
        } else {
          this.pending.get(message.id)?.reject(error);
          this.pending.delete(message.id);
        }
        return;
      }
    }
  }

  private settle(id: number, value: unknown): void {
    this.pending.get(id)?.resolve(value);
    this.pending.delete(id);
  }
}
