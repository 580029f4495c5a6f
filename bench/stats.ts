/**
 * Every figure a benchmark reports is the median of repeated runs with their min and max.
 */

/** Median with the spread of the runs it came from. */
export interface Spread {
  median: number;
  min: number;
  max: number;
}

/** Median (mean of the middle two for an even count), min and max; NaN fields for no values. */
export function spread(values: readonly number[]): Spread {
  if (values.length === 0) return { median: Number.NaN, min: Number.NaN, max: Number.NaN };
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  const median = sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
  return { median, min: sorted[0], max: sorted[sorted.length - 1] };
}

/** The spread of one numeric field across runs. */
export function spreadOf<T>(runs: readonly T[], pick: (run: T) => number): Spread {
  return spread(runs.map(pick));
}

/** `median (min–max)` with `digits` decimals, for tables; `n/a` when there were no values. */
export function formatSpread(s: Spread, digits = 0, scale = 1): string {
  if (Number.isNaN(s.median)) return 'n/a';
  const f = (v: number) => (v / scale).toFixed(digits);
  return s.min === s.max ? f(s.median) : `${f(s.median)} (${f(s.min)}–${f(s.max)})`;
}

/** Ratio of two medians, 3 decimals; NaN when the denominator is 0. */
export function ratio(numerator: Spread, denominator: Spread): number {
  return denominator.median === 0 ? Number.NaN : Number((numerator.median / denominator.median).toFixed(3));
}
