/**
 * The send budget of each user on this node: a byte bucket shared by all of a user's sessions
 * here. A session's own byte bucket bounds one socket; without this one, a user with
 * `MAX_SESSIONS_PER_USER` sessions could send a hundred bursts at once onto another user's
 * socket and have it closed with 4009. Sized below `MAX_BUFFERED_BYTES`, so that one user's
 * sessions on one node cannot fill a recipient's buffer faster than a normal reader drains it.
 *
 * The machine decides (connection.machine.ts, `isOverSendRate`): the session asks this budget
 * when a `send` arrives and gives the machine its verdict (`userRetryAfterMs`); the bytes are
 * taken only when the machine lets the frame through (`publishAndAck`). One bucket per user with
 * a session on this node, forgotten with the user's last session.
 */
export interface UserSendBudgetOptions {
  /** Refill, bytes per second. @default 131072 */
  bytesPerSecond: number;
  /** Bucket size, bytes. @default 524288 */
  burst: number;
  now?: () => number;
}

interface Bucket {
  bytes: number;
  checkedAt: number;
}

export class UserSendBudget {
  readonly #buckets = new Map<string, Bucket>();
  readonly #bytesPerSecond: number;
  readonly #burst: number;
  readonly #now: () => number;

  constructor(options: UserSendBudgetOptions) {
    this.#bytesPerSecond = options.bytesPerSecond;
    this.#burst = options.burst;
    this.#now = options.now ?? Date.now;
  }

  #available(user: string): number {
    const bucket = this.#buckets.get(user);
    if (bucket === undefined) return this.#burst;
    return Math.min(this.#burst, bucket.bytes + ((this.#now() - bucket.checkedAt) / 1000) * this.#bytesPerSecond);
  }

  /** 0 when the user may send `bytes` now; else how many milliseconds until it may. */
  retryAfterMs(user: string, bytes: number): number {
    const missing = bytes - this.#available(user);
    return missing <= 0 ? 0 : Math.ceil((missing / this.#bytesPerSecond) * 1000);
  }

  /** Takes `bytes` from the user's bucket (the machine let the frame through). */
  take(user: string, bytes: number): void {
    this.#buckets.set(user, { bytes: this.#available(user) - bytes, checkedAt: this.#now() });
  }

  /** The user's last session on this node ended. */
  forget(user: string): void {
    this.#buckets.delete(user);
  }
}
