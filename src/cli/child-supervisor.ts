import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";

// The command that `mcp-lockd run` runs under the lock.
//
// It runs in a process group of its own (spawn's `detached`, a new session),
// so that signals reach everything it started: when the lease is lost, a
// shell script's children must stop too, not only the shell. The price: the
// command has no controlling terminal. Its stdio is still the terminal's, so
// it reads and writes it as usual, and Ctrl-C reaches it because `run`
// forwards SIGINT; but tools that open /dev/tty themselves (password prompts)
// cannot, and job control (Ctrl-Z) is handled by `run` (see run-command.ts).

export interface ChildExit {
  /** The exit code, or null when the command died of a signal. */
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** The command could not be started; `errno` is ENOENT, EACCES, ... */
export class SpawnError extends Error {
  override name = "SpawnError";
  constructor(
    readonly command: string,
    readonly errno: string | undefined,
    message: string,
  ) {
    super(message);
  }
}

export interface TerminationEvents {
  /** SIGKILL was sent because the command outlived the grace period. */
  onKill?(): void;
}

export class SupervisedChild {
  readonly pid: number;
  /** Resolves when the command exits (never rejects). */
  readonly exited: Promise<ChildExit>;
  private running = true;
  private killTimer: NodeJS.Timeout | undefined;
  private terminating = false;
  private suspended = false;

  private constructor(private readonly child: ChildProcess) {
    this.pid = child.pid!;
    this.exited = once(child, "exit").then(([code, signal]) => {
      this.running = false;
      clearTimeout(this.killTimer);
      return { code: code as number | null, signal: signal as NodeJS.Signals | null };
    });
  }

  /**
   * Starts `command` with inherited stdio and `env`, in a new process group;
   * resolves once it runs, rejects with SpawnError if it cannot be started.
   */
  static async start(command: string, args: string[], env: NodeJS.ProcessEnv): Promise<SupervisedChild> {
    const child = spawn(command, args, { stdio: "inherit", env, detached: true });
    try {
      await once(child, "spawn");
    } catch (err) {
      const errno = (err as NodeJS.ErrnoException).code;
      throw new SpawnError(command, errno, `cannot run ${JSON.stringify(command)}: ${(err as Error).message}`);
    }
    return new SupervisedChild(child);
  }

  /** Sends `signal` to the command's process group while the command runs. */
  signal(signal: NodeJS.Signals): void {
    if (!this.running) return;
    this.signalGroup(signal);
  }

  /**
   * Job control: stops the whole group with SIGSTOP. (SIGTSTP would not do:
   * the command's group has no terminal and counts as orphaned, and the
   * kernel drops SIGTSTP for such groups.)
   */
  suspend(): void {
    if (!this.running) return;
    this.suspended = true;
    this.signalGroup("SIGSTOP");
  }

  resume(): void {
    if (!this.running || !this.suspended) return;
    this.suspended = false;
    this.signalGroup("SIGCONT");
  }

  /**
   * Stops the command: SIGTERM to its process group, then SIGKILL if it is
   * still running after `graceMs` (at once when `graceMs` is 0). Once the
   * command has exited, whatever is left in its group is SIGKILLed: nothing it
   * started may go on working without the lock. Idempotent.
   */
  terminate(graceMs: number, events: TerminationEvents = {}): void {
    if (this.terminating) return;
    this.terminating = true;
    void this.exited.then(() => this.signalGroup("SIGKILL"));
    if (!this.running) return;
    if (graceMs <= 0) {
      this.signalGroup("SIGKILL");
      events.onKill?.();
      return;
    }
    this.signalGroup("SIGTERM");
    // A stopped process acts on SIGTERM only once continued.
    this.resume();
    this.killTimer = setTimeout(() => {
      if (!this.running) return;
      this.signalGroup("SIGKILL");
      events.onKill?.();
    }, graceMs);
  }

  private signalGroup(signal: NodeJS.Signals): void {
    try {
      // A negative pid addresses the process group the command leads.
      process.kill(-this.pid, signal);
    } catch (err) {
      // ESRCH: the group is gone (everything in it has exited). EPERM cannot
      // happen for our own children; fall back to the command alone.
      if ((err as NodeJS.ErrnoException).code !== "ESRCH" && this.running) this.child.kill(signal);
    }
  }
}
