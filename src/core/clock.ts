// The lock manager reads time and sets timers only through a Clock, so tests
// can drive expiry with a manual clock instead of sleeping.

export interface TimerHandle {
  cancel(): void;
}

export interface Clock {
  /** Milliseconds since the Unix epoch. */
  now(): number;
  /** Runs `callback` once after `delayMs` (clamped to >= 0). */
  setTimer(delayMs: number, callback: () => void): TimerHandle;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  setTimer(delayMs, callback) {
    const timer = setTimeout(callback, Math.max(0, delayMs));
    // Timers must not keep a shutting-down process alive.
    timer.unref?.();
    return { cancel: () => clearTimeout(timer) };
  },
};
