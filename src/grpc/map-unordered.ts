/**
 * Applies `work` to the items of `source` with up to `limit` in flight and
 * yields the results as they complete, not in input order. The first failure
 * ends the iteration with that error once it is reached; items still in
 * flight then finish unobserved. Ending the iteration early (break, return)
 * also ends `source`.
 *
 * For request streams whose answers name what they answer (KeepAlive): one
 * slow item must not hold up the rest of the stream.
 */
export async function* mapUnordered<T, R>(
  source: AsyncIterable<T>,
  limit: number,
  work: (item: T) => Promise<R>,
): AsyncIterable<R> {
  const iterator = source[Symbol.asyncIterator]();
  const completed: R[] = [];
  let failure: { error: unknown } | undefined;
  let sourceDone = false;
  let inFlight = 0;
  let pulling = false;
  let wake: (() => void) | undefined;
  const notify = () => {
    wake?.();
    wake = undefined;
  };

  const pull = async () => {
    pulling = true;
    try {
      while (!sourceDone && failure === undefined && inFlight < limit) {
        const next = await iterator.next();
        if (next.done) {
          sourceDone = true;
          break;
        }
        inFlight++;
        work(next.value).then(
          (result) => void completed.push(result),
          (error: unknown) => void (failure ??= { error }),
        ).finally(() => {
          inFlight--;
          notify();
          if (!pulling) void pull();
        });
      }
    } catch (error) {
      failure ??= { error };
    } finally {
      pulling = false;
      notify();
    }
  };

  void pull();
  try {
    for (;;) {
      while (completed.length > 0) yield completed.shift()!;
      if (failure !== undefined) throw failure.error;
      if (sourceDone && inFlight === 0) return;
      await new Promise<void>((resolve) => (wake = resolve));
    }
  } finally {
    sourceDone = true;
    // After a failure the source may be parked waiting for its next item (a
    // request stream the client keeps open): awaiting its return() would
    // hold the failure back until the client sends or hangs up. It still
    // ends, unobserved, once it wakes.
    const ending = iterator.return?.();
    if (failure === undefined) await ending;
    else void Promise.resolve(ending).catch(() => {});
  }
}
