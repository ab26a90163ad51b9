/**
 * The bench's arithmetic, pure so that it can be tested (test/unit/bench-stats.test.ts): latency
 * histograms pooled over rounds, the worst round, ratios against goals, shares of a total, and the
 * token bucket the load generator paces each sender with.
 */
import * as hdr from 'hdr-histogram-js';

export type Histogram = hdr.Histogram;

/** Microseconds from 1 µs to 120 s, 3 significant digits. */
export const newHistogram = (): Histogram =>
  hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 120_000_000, numberOfSignificantValueDigits: 3 });

export const encodeHistogram = (h: Histogram): string => hdr.encodeIntoCompressedBase64(h);

/** One histogram holding every sample of `encoded` (hdr compressed base64, microseconds). */
export function poolHistograms(encoded: string[]): Histogram {
  const pooled = newHistogram();
  for (const e of encoded) pooled.add(hdr.decodeFromCompressedBase64(e));
  return pooled;
}

/** Percentile `p` (0–100) in milliseconds of the samples of all `encoded` together; NaN without samples. */
export function pooledPercentileMs(encoded: string[], p: number): number {
  const h = poolHistograms(encoded);
  return h.totalCount === 0 ? Number.NaN : h.getValueAtPercentile(p) / 1000;
}

/** The worst of per-round values: the highest when higher is worse (latency), else the lowest. */
export function worstOf(values: number[], higherIsWorse: boolean): number {
  const finite = values.filter(Number.isFinite);
  if (finite.length === 0) return Number.NaN;
  return higherIsWorse ? Math.max(...finite) : Math.min(...finite);
}

export const sum = (xs: number[]): number => xs.reduce((a, b) => a + b, 0);

/** a / b, NaN when either is missing or b is 0. */
export function ratio(a: number | undefined, b: number | undefined): number {
  if (a === undefined || b === undefined || !Number.isFinite(a) || !Number.isFinite(b) || b === 0) return Number.NaN;
  return a / b;
}

export interface Goal {
  ratio: number;
  /** True: the ratio must be at least `ratio` (throughput); false: at most (latency, cost). */
  atLeast: boolean;
}

export function goalText(goal: Goal): string {
  return `${goal.atLeast ? '>=' : '<='} ${goal.ratio}x`;
}

/** 'met', 'NOT MET', or '' when the ratio is unknown. */
export function verdict(value: number, goal: Goal): '' | 'met' | 'NOT MET' {
  if (!Number.isFinite(value)) return '';
  return (goal.atLeast ? value >= goal.ratio : value <= goal.ratio) ? 'met' : 'NOT MET';
}

/** `min-max` of the finite values, '' for fewer than two. */
export function rangeText(values: number[], digits = 2): string {
  const finite = values.filter(Number.isFinite);
  if (finite.length < 2) return '';
  return `${Math.min(...finite).toFixed(digits)}-${Math.max(...finite).toFixed(digits)}`;
}

/** Part `i` of `total` cut into `parts` as evenly as possible (the first parts get the remainder). */
export function share(total: number, i: number, parts: number): number {
  return Math.floor(total / parts) + (i < total % parts ? 1 : 0);
}

/**
 * A token bucket: `rate` tokens per second, at most `burst` at once, full at the start. The load
 * generator keeps every sender within chatgate's default per-session send rate with one.
 */
export class Pacer {
  #tokens: number;
  #at: number;
  constructor(
    readonly rate: number,
    readonly burst: number,
    now: number,
  ) {
    this.#tokens = burst;
    this.#at = now;
  }

  #refill(now: number): void {
    this.#tokens = Math.min(this.burst, this.#tokens + ((now - this.#at) / 1000) * this.rate);
    this.#at = now;
  }

  /** Takes a token if there is one. */
  take(now: number): boolean {
    this.#refill(now);
    if (this.#tokens < 1) return false;
    this.#tokens -= 1;
    return true;
  }

  /** Milliseconds until the next token (0 when there is one). */
  waitMs(now: number): number {
    this.#refill(now);
    return this.#tokens >= 1 ? 0 : ((1 - this.#tokens) / this.rate) * 1000;
  }
}
