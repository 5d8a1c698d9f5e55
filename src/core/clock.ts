// The lock manager and its store read time and set timers only through a
// Clock, so tests can drive expiry and stall writers with a manual clock
// instead of sleeping.

export interface TimerHandle {
  cancel(): void;
}

export interface Clock {
  /** Milliseconds since the Unix epoch (the wall clock every participant shares). */
  now(): number;
  /**
   * Milliseconds on a clock that never steps (for a writer's own deadlines:
   * how long it has held its guard, docs/protocol.md §3).
   */
  monotonic(): number;
  /** Runs `callback` once after `delayMs` (clamped to >= 0). */
  setTimer(delayMs: number, callback: () => void): TimerHandle;
}

const MAX_TIMER_DELAY_MS = 2 ** 31 - 1;

export const systemClock: Clock = {
  now: () => Date.now(),
  monotonic: () => performance.now(),
  setTimer(delayMs, callback) {
    // setTimeout turns delays past 2^31-1 ms into 1 ms; firing early is safe
    // (callers re-check and re-arm), spinning is not.
    const timer = setTimeout(callback, Math.min(Math.max(0, delayMs), MAX_TIMER_DELAY_MS));
    // Timers must not keep a shutting-down process alive.
    timer.unref?.();
    return { cancel: () => clearTimeout(timer) };
  },
};
