/**
 * Handshakes per client IP per second: a token bucket per address, kept only while it is not full,
 * so the map holds just the addresses seen in the last few seconds, and never more than `maxIps`:
 * past that, the address used longest ago is forgotten to make room for a new one.
 */
export interface IpLimiterOptions {
  /** Handshakes per second per IP, and the burst. @default 20 */
  perSecond: number;
  /** Addresses tracked at most. @default 100000 */
  maxIps?: number;
  now?: () => number;
}

export class IpLimiter {
  readonly #perSecond: number;
  readonly #maxIps: number;
  readonly #now: () => number;
  readonly #buckets = new Map<string, { tokens: number; at: number }>();

  constructor(options: IpLimiterOptions) {
    this.#perSecond = options.perSecond;
    this.#maxIps = options.maxIps ?? 100_000;
    this.#now = options.now ?? Date.now;
  }

  get size(): number {
    return this.#buckets.size;
  }

  /** Takes one handshake for `ip`; false when it is over its rate. */
  take(ip: string): boolean {
    const now = this.#now();
    const bucket = this.#buckets.get(ip);
    if (!bucket) {
      // Full: the address seen longest ago makes room. A newcomer is never refused for want of
      // room; the forgotten address starts again with a full bucket, as after a sweep.
      if (this.#buckets.size >= this.#maxIps) this.#buckets.delete(this.#buckets.keys().next().value!);
      this.#buckets.set(ip, { tokens: this.#perSecond - 1, at: now });
      return true;
    }
    // Seen again: to the back of the map, which is kept in order of last use.
    this.#buckets.delete(ip);
    this.#buckets.set(ip, bucket);
    bucket.tokens = Math.min(this.#perSecond, bucket.tokens + ((now - bucket.at) / 1000) * this.#perSecond);
    bucket.at = now;
    if (bucket.tokens < 1) return false;
    bucket.tokens -= 1;
    return true;
  }

  /** Forgets addresses whose bucket has refilled: they are as good as new. */
  sweep(): void {
    const now = this.#now();
    for (const [ip, bucket] of this.#buckets) {
      if (bucket.tokens + ((now - bucket.at) / 1000) * this.#perSecond >= this.#perSecond) this.#buckets.delete(ip);
    }
  }
}
