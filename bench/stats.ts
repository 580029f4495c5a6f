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

/**
 * A run's latencies as (value, count) pairs sorted by value, each value kept to 3 significant
 * digits (as the load generator's HDR histogram keeps them): a few hundred pairs for thousands of
 * calls, small enough to pool over runs and resample.
 */
export type Distribution = ReadonlyArray<readonly [value: number, count: number]>;

const SIGNIFICANT_DIGITS = 3;

/** `value` kept to SIGNIFICANT_DIGITS significant digits (rounded down, as a histogram bucket). */
function bucketOf(value: number): number {
  if (value < 10 ** SIGNIFICANT_DIGITS) return Math.floor(value);
  const unit = 10 ** (Math.floor(Math.log10(value)) + 1 - SIGNIFICANT_DIGITS);
  return Math.floor(value / unit) * unit;
}

/** The distribution of `samples` (e.g. latencies in µs). */
export function distributionOf(samples: Iterable<number>): Distribution {
  const counts = new Map<number, number>();
  for (const sample of samples) {
    const bucket = bucketOf(sample);
    counts.set(bucket, (counts.get(bucket) ?? 0) + 1);
  }
  return [...counts].sort((a, b) => a[0] - b[0]);
}

/**
 * The `percentile` (0–100) of every call of `runs` together: the smallest value at or below which
 * that share of the calls lies (the HDR histogram's definition). NaN for no calls.
 */
export function pooledPercentile(runs: readonly Distribution[], percentile: number): number {
  const pairs = runs.flat().sort((a, b) => a[0] - b[0]);
  const total = pairs.reduce((n, [, count]) => n + count, 0);
  if (total === 0) return Number.NaN;
  const rank = Math.max(1, Math.ceil((percentile / 100) * total));
  let seen = 0;
  for (const [value, count] of pairs) {
    seen += count;
    if (seen >= rank) return value;
  }
  return pairs[pairs.length - 1][0];
}

/** A ratio with the interval a bootstrap gives it. */
export interface RatioInterval {
  ratio: number;
  low: number;
  high: number;
  /** The interval's confidence, e.g. 0.9. */
  confidence: number;
}

/** A small seeded generator (mulberry32): the same runs give the same interval. */
function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

/**
 * A statistic of paired rounds with a bootstrap interval: `statistic` is given round indices; it
 * is computed on every round, then on `resamples` draws of the rounds with replacement (a round's
 * runs stay together, as they shared its conditions), and the interval is the central
 * `confidence` share of the draws. It says how far the machine's round-to-round noise alone could
 * move the figure. 3 decimals; the same rounds give the same interval.
 */
export function roundsInterval(rounds: number, statistic: (rounds: readonly number[]) => number, resamples = 2000, confidence = 0.9, seed = 1): RatioInterval {
  if (rounds === 0) throw new RangeError('no rounds to resample');
  const random = seededRandom(seed);
  const draws: number[] = [];
  for (let r = 0; r < resamples; r++) {
    const value = statistic(Array.from({ length: rounds }, () => Math.floor(random() * rounds)));
    if (Number.isFinite(value)) draws.push(value);
  }
  draws.sort((x, y) => x - y);
  const at = (q: number) => draws[Math.min(draws.length - 1, Math.max(0, Math.floor(q * draws.length)))];
  const round3 = (v: number) => Number(v.toFixed(3));
  return {
    ratio: round3(statistic(Array.from({ length: rounds }, (_, i) => i))),
    low: round3(at((1 - confidence) / 2)),
    high: round3(at(1 - (1 - confidence) / 2)),
    confidence,
  };
}

function pairedRounds(a: readonly unknown[], b: readonly unknown[]): number {
  if (a.length !== b.length || a.length === 0) throw new RangeError(`paired runs needed: ${a.length} and ${b.length}`);
  return a.length;
}

/** Pooled `percentile` of b's runs over that of a's (a[i] and b[i] ran in the same round), with its interval. */
export function pooledRatioInterval(a: readonly Distribution[], b: readonly Distribution[], percentile: number, resamples?: number, confidence?: number): RatioInterval {
  const pooled = (runs: readonly Distribution[], rounds: readonly number[]) => pooledPercentile(rounds.map((i) => runs[i]), percentile);
  return roundsInterval(pairedRounds(a, b), (rounds) => pooled(b, rounds) / pooled(a, rounds), resamples, confidence);
}

/**
 * The median over rounds of b[i] / a[i] (figures of runs of the same round), with its interval:
 * robust to a round a stall of the machine spoiled, which a pooled percentile is not.
 */
export function medianRatioInterval(a: readonly number[], b: readonly number[], resamples?: number, confidence?: number): RatioInterval {
  return roundsInterval(pairedRounds(a, b), (rounds) => spread(rounds.map((i) => b[i] / a[i])).median, resamples, confidence);
}
