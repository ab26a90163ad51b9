/**
 * The bench's arithmetic (bench/stats.ts): pooled percentiles over rounds, the worst round,
 * verdicts against goals, shares, and the pacer that keeps senders within the default rate.
 */
import { describe, expect, test } from 'vitest';
import {
  Pacer,
  encodeHistogram,
  newHistogram,
  pooledPercentileMs,
  rangeText,
  ratio,
  share,
  verdict,
  worstOf,
} from '../../bench/stats.ts';

/** A round's histogram of latencies given in milliseconds. */
function round(ms: number[]): string {
  const h = newHistogram();
  for (const v of ms) h.recordValue(Math.round(v * 1000));
  return encodeHistogram(h);
}

describe('bench stats - pooled percentiles', () => {
  test('p99 pooled over rounds comes from every sample, not from one round or a median of rounds', () => {
    // Four quiet rounds (p99 1 ms) and one bad one (every sample 50 ms): 20 % of all samples are
    // 50 ms, so the pooled p99 is 50 ms, where a median of the per-round p99s would say 1 ms.
    const quiet = round(Array.from({ length: 1000 }, () => 1));
    const bad = round(Array.from({ length: 1000 }, () => 50));
    expect(pooledPercentileMs([quiet, quiet, quiet, quiet, bad], 99)).toBeCloseTo(50, 0);
    expect(pooledPercentileMs([quiet, quiet, quiet, quiet], 99)).toBeCloseTo(1, 1);
  });

  test('a pooled percentile weighs each round by its samples', () => {
    // 990 samples of 1 ms and 10 of 100 ms: p99 is still 1 ms, p99.9 is 100 ms.
    const many = round(Array.from({ length: 990 }, () => 1));
    const few = round(Array.from({ length: 10 }, () => 100));
    expect(pooledPercentileMs([many, few], 99)).toBeCloseTo(1, 1);
    expect(pooledPercentileMs([many, few], 99.9)).toBeCloseTo(100, 0);
  });

  test('no samples is NaN, not 0', () => {
    expect(pooledPercentileMs([], 99)).toBeNaN();
    expect(pooledPercentileMs([encodeHistogram(newHistogram())], 99)).toBeNaN();
  });
});

describe('bench stats - worst round, ratios, verdicts', () => {
  test('the worst round is the highest latency and the lowest throughput', () => {
    expect(worstOf([2, 9, 3], true)).toBe(9);
    expect(worstOf([2, 9, 3], false)).toBe(2);
    expect(worstOf([Number.NaN, 4], true)).toBe(4);
    expect(worstOf([], true)).toBeNaN();
  });

  test('ratios of missing or zero figures are NaN, and NaN has no verdict', () => {
    expect(ratio(3, 2)).toBe(1.5);
    expect(ratio(3, 0)).toBeNaN();
    expect(ratio(undefined, 2)).toBeNaN();
    expect(verdict(Number.NaN, { ratio: 1, atLeast: true })).toBe('');
  });

  test('at-least goals and at-most goals, the boundary included', () => {
    expect(verdict(0.7, { ratio: 0.7, atLeast: true })).toBe('met');
    expect(verdict(0.69, { ratio: 0.7, atLeast: true })).toBe('NOT MET');
    expect(verdict(1.5, { ratio: 1.5, atLeast: false })).toBe('met');
    expect(verdict(1.51, { ratio: 1.5, atLeast: false })).toBe('NOT MET');
  });

  test('ranges and shares', () => {
    expect(rangeText([1.234, 0.5, Number.NaN])).toBe('0.50-1.23');
    expect(rangeText([1])).toBe('');
    expect([0, 1, 2].map((i) => share(10, i, 3))).toEqual([4, 3, 3]);
    expect([0, 1].map((i) => share(1001, i, 2)).reduce((a, b) => a + b)).toBe(1001);
  });
});

describe('bench stats - pacer', () => {
  test('a full bucket gives its burst at once, then the rate', () => {
    const pacer = new Pacer(50, 4, 0);
    expect([1, 2, 3, 4, 5].map(() => pacer.take(0))).toEqual([true, true, true, true, false]);
    expect(pacer.waitMs(0)).toBeCloseTo(20, 5);
    expect(pacer.take(19)).toBe(false);
    expect(pacer.take(20)).toBe(true);
  });

  test('an idle sender saves up no more than the burst', () => {
    const pacer = new Pacer(50, 4, 0);
    let taken = 0;
    while (pacer.take(10_000)) taken += 1;
    expect(taken).toBe(4);
  });

  test('over any long window it never gives more than rate x time + burst', () => {
    const pacer = new Pacer(47.5, 4, 0);
    let taken = 0;
    for (let t = 0; t <= 10_000; t += 0.5) while (pacer.take(t)) taken += 1;
    expect(taken).toBeLessThanOrEqual(47.5 * 10 + 4);
    expect(taken).toBeGreaterThanOrEqual(47.5 * 10);
  });
});
