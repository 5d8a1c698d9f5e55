import type { Clock, TimerHandle } from "../../src/core/clock.ts";

/** A clock that moves only when told to; timers fire during advance(). */
export class ManualClock implements Clock {
  private current: number;
  private timers: Array<{ at: number; seq: number; callback: () => void; cancelled: boolean }> = [];
  private seq = 0;

  constructor(start = Date.now()) {
    this.current = start;
  }

  now(): number {
    return this.current;
  }

  /** Moves with now(): this clock never steps back. */
  monotonic(): number {
    return this.current;
  }

  /** Jumps to `at` (forward or back) without firing timers: for stores, which set none. */
  set(at: number): this {
    this.current = at;
    return this;
  }

  setTimer(delayMs: number, callback: () => void): TimerHandle {
    const timer = { at: this.current + Math.max(0, delayMs), seq: this.seq++, callback, cancelled: false };
    this.timers.push(timer);
    return { cancel: () => void (timer.cancelled = true) };
  }

  /** Moves time forward, firing due timers in order and letting their async work settle. */
  async advance(ms: number): Promise<void> {
    const target = this.current + ms;
    for (;;) {
      this.timers = this.timers.filter((t) => !t.cancelled);
      const due = this.timers.filter((t) => t.at <= target).sort((a, b) => a.at - b.at || a.seq - b.seq)[0];
      if (!due) break;
      this.current = Math.max(this.current, due.at);
      due.cancelled = true;
      due.callback();
      await settle();
    }
    this.current = target;
    await settle();
  }
}

/** Lets pending promise chains and file I/O run (real files are involved). */
export async function settle(rounds = 20): Promise<void> {
  for (let i = 0; i < rounds; i++) await new Promise((resolve) => setImmediate(resolve));
}
