/**
 * Fencing tokens handed out from blocks reserved in the fence file.
 *
 * The fence file holds an upper bound of every token issued for a resource
 * (docs/protocol.md, "The fencing counter file"). Writing it durably on every
 * grant would double the fsyncs of an acquisition, so the store reserves a
 * block at once: it writes `token + blockSize - 1` and then issues the tokens
 * of that block from memory while the fence file still holds exactly the value
 * it wrote. Any other writer (another process, another instance) raises the
 * fence above it, which the next grant sees under the guard, and a new block
 * starts above that. After a restart memory is empty and the next grant starts
 * a block above the file's value: tokens jump but never repeat or go back.
 */
export class TokenReservations {
  private readonly blocks = new Map<string, { next: number; reservedUpTo: number }>();

  constructor(
    readonly blockSize = 1000,
    private readonly maxResources = 100_000,
  ) {}

  /**
   * The token to issue given the fence file's value and the token of the
   * expired lease being replaced (0 if none), and the fence value to write
   * first when a new block is needed.
   */
  next(resource: string, fence: number, previousToken: number): { token: number; reserveUpTo?: number } {
    const block = this.blocks.get(resource);
    if (block && block.reservedUpTo === fence && block.next > previousToken && block.next <= block.reservedUpTo) {
      return { token: block.next };
    }
    const token = Math.max(fence, previousToken) + 1;
    return { token, reserveUpTo: token + this.blockSize - 1 };
  }

  /** Records a token as issued, once its block is durably reserved. */
  issued(resource: string, token: number, reservedUpTo: number): void {
    // Forgetting is always safe (the next grant reserves anew): bound memory.
    if (this.blocks.size >= this.maxResources && !this.blocks.has(resource)) this.blocks.clear();
    this.blocks.set(resource, { next: token + 1, reservedUpTo });
  }
}
