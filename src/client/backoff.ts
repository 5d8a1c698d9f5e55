/**
 * Exponential backoff with jitter for reconnecting the KeepAlive stream: the
 * n-th delay is min(max, initial * 2^n) scaled by a random factor in
 * [0.5, 1], so that many clients of a restarted service do not reconnect in
 * lockstep ("equal jitter").
 */
export class Backoff {
  private attempt = 0;

  constructor(
    readonly initialMs: number,
    readonly maxMs: number,
    private readonly random: () => number = Math.random,
  ) {}

  next(): number {
    const base = Math.min(this.maxMs, this.initialMs * 2 ** Math.min(this.attempt, 30));
    this.attempt += 1;
    return base * (0.5 + 0.5 * this.random());
  }

  reset(): void {
    this.attempt = 0;
  }
}
