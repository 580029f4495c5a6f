import { describe, expect, it } from 'vitest';
import { formatSpread, ratio, spread } from '../../bench/stats.ts';

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
