/**
 * FIFO queue of waiters for one resource. A Set keeps insertion order and
 * removes a waiter that gave up in O(1), wherever it stands.
 */
export class WaitQueue<T> {
  private readonly items = new Set<T>();

  get size(): number {
    return this.items.size;
  }

  push(item: T): void {
    this.items.add(item);
  }

  peek(): T | undefined {
    return this.items.values().next().value;
  }

  remove(item: T): boolean {
    return this.items.delete(item);
  }

  /** In FIFO order. */
  inOrder(): T[] {
    return [...this.items];
  }

  drain(): T[] {
    const all = [...this.items];
    this.items.clear();
    return all;
  }
}
