import { spawn, type ChildProcess } from "node:child_process";
import { createWriteStream, readFileSync } from "node:fs";

/**
 * A child of the campaign whose stderr goes to a file, and whose exit is
 * "expected" only when the campaign caused it (SIGKILL, or SIGTERM at the
 * end): any other exit is a crash.
 */
export class ChaosChild {
  readonly child: ChildProcess;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private expectExit = false;
  stopped = false;

  constructor(
    command: string,
    args: string[],
    private readonly stderrFile: string,
    onExit: (child: ChaosChild, code: number | null, signal: NodeJS.Signals | null, expected: boolean) => void,
  ) {
    const stderr = createWriteStream(stderrFile, { flags: "a" });
    this.child = spawn(command, args, { stdio: ["ignore", "pipe", "pipe"] });
    this.child.stderr!.pipe(stderr);
    this.exited = new Promise((resolve) => {
      this.child.once("exit", (code, signal) => {
        onExit(this, code, signal, this.expectExit);
        resolve({ code, signal });
      });
    });
  }

  get pid(): number {
    return this.child.pid ?? -1;
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  kill(): void {
    this.expectExit = true;
    this.cont();
    this.child.kill("SIGKILL");
  }

  /** SIGTERM: the campaign's end. */
  terminate(): void {
    this.expectExit = true;
    this.cont();
    this.child.kill("SIGTERM");
  }

  stop(): void {
    if (this.running) this.child.kill("SIGSTOP");
    this.stopped = true;
  }

  cont(): void {
    if (this.stopped && this.running) this.child.kill("SIGCONT");
    this.stopped = false;
  }

  stderrTail(chars = 2_000): string {
    try {
      return readFileSync(this.stderrFile, "utf8").slice(-chars);
    } catch {
      return "";
    }
  }
}
