import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { distributionOf, formatSpread, medianRatioInterval, pooledPercentile, pooledRatioInterval, ratio, spread } from '../../bench/stats.ts';

describe('spread', () => {
  it.each([
    [[3], { median: 3, min: 3, max: 3 }],
    [[5, 1, 3], { median: 3, min: 1, max: 5 }],
    [[4, 1, 3, 2], { median: 2.5, min: 1, max: 4 }],
  ])('takes the median, min and max of %j', (values, expected) => {
    expect(spread(values)).toEqual(expected);
  });

  it('gives NaN for no runs rather than a made-up figure', () => {
    expect(spread([]).median).toBeNaN();
  });
});

describe('formatSpread', () => {
  it('prints median (min–max), scaled, and the bare median when the runs agree', () => {
    expect(formatSpread({ median: 1500, min: 1000, max: 2500 }, 1, 1000)).toBe('1.5 (1.0–2.5)');
    expect(formatSpread({ median: 7, min: 7, max: 7 })).toBe('7');
  });
});

describe('ratio', () => {
  it('divides medians to 3 decimals and gives NaN for a zero baseline', () => {
    expect(ratio({ median: 1, min: 0, max: 2 }, { median: 3, min: 3, max: 3 })).toBe(0.333);
    expect(ratio({ median: 1, min: 1, max: 1 }, { median: 0, min: 0, max: 0 })).toBeNaN();
  });
});

describe('pooled percentiles', () => {
  it('keeps values to 3 significant digits and counts them', () => {
    expect(distributionOf([12, 12, 999, 1234, 1239, 98_765])).toEqual([[12, 2], [999, 1], [1230, 2], [98_700, 1]]);
  });

  it('takes the percentile of all runs\' calls together, as over one list of them', () => {
    fc.assert(
      fc.property(fc.array(fc.array(fc.integer({ min: 1, max: 999 }), { minLength: 1, maxLength: 50 }), { minLength: 1, maxLength: 5 }), fc.double({ min: 1, max: 100, noNaN: true }), (runs, p) => {
        const all = runs.flat().sort((x, y) => x - y);
        expect(pooledPercentile(runs.map(distributionOf), p)).toBe(all[Math.ceil((p / 100) * all.length) - 1]);
      }),
    );
    expect(pooledPercentile([], 99)).toBeNaN();
  });
});

describe('ratio intervals over rounds', () => {
  const run = (scale: number, n = 200) => distributionOf(Array.from({ length: n }, (_, i) => Math.round((100 + i) * scale)));

  it('gives the pooled ratio, inside an interval that is a point when every round says the same', () => {
    expect(pooledRatioInterval([run(1), run(1), run(1)], [run(2), run(2), run(2)], 99)).toEqual({ ratio: 2, low: 2, high: 2, confidence: 0.9 });
    expect(medianRatioInterval([10, 20, 30], [15, 30, 45])).toEqual({ ratio: 1.5, low: 1.5, high: 1.5, confidence: 0.9 });
  });

  it('widens with round-to-round noise and stays the same for the same runs', () => {
    const off = [run(1), run(1.5), run(0.8), run(1.2)];
    const on = [run(1.1), run(1.2), run(1.4), run(1)];
    const interval = pooledRatioInterval(off, on, 99);
    expect(interval.low).toBeLessThan(interval.ratio);
    expect(interval.high).toBeGreaterThan(interval.ratio);
    expect(pooledRatioInterval(off, on, 99)).toEqual(interval);
    expect(() => pooledRatioInterval(off, on.slice(1), 99)).toThrow(/paired/);
  });

  it('takes the median of per-round ratios, which one spoiled round does not move far', () => {
    const off = [100, 100, 100, 100, 100, 100, 100];
    const on = [105, 110, 108, 1000, 104, 109, 106];
    const interval = medianRatioInterval(off, on);
    expect(interval.ratio).toBe(1.08);
    expect(interval.low).toBeGreaterThanOrEqual(1.04);
    expect(interval.high).toBeLessThanOrEqual(1.1);
  });
});
