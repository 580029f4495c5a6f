/**
 * Generates Azure-Functions-2019-shaped traces: per-minute invocation counts for a mix of
 * periodic timers, bursty HTTP functions and rare functions, seeded (same parameters, same trace).
 *
 * The shape follows what Shahrad et al. (ATC'20) report of the Azure trace: timers are a large
 * share of functions and fire on cron periods (1 min … 1 day); HTTP traffic is bursty (on/off
 * periods) with a diurnal swing and rates spread over orders of magnitude; many functions run
 * only a few times a day. Memory is mostly 128–256 MB; run times are log-normal around 0.3 s.
 */
import { SeededRandom } from './random.ts';
import type { Trace, TraceFunction } from './trace.ts';

export interface GeneratorParameters {
  seed: number;
  functions: number;
  days: number;
  /** Shares of the function mix; normalized. */
  mix: { timer: number; http: number; rare: number };
  /** Cron periods timers pick from, minutes, with their weights. */
  timerPeriodsMin: ReadonlyArray<readonly [number, number]>;
  /** Chance that one timer firing lands a minute late (scheduler jitter). */
  timerJitter: number;
  /** HTTP: median and log-sigma of the per-minute rate while "on". */
  httpRateMedian: number;
  httpRateSigma: number;
  /** HTTP: median length of on and off periods, minutes (log-normal, sigma 1). */
  httpOnMedianMin: number;
  httpOffMedianMin: number;
  /** HTTP: relative amplitude of the day/night swing. */
  diurnalAmplitude: number;
  /** Rare: mean invocations per day (1 + Poisson). */
  rarePerDay: number;
  /** Memory sizes functions pick from, MB (repeats weight the choice). */
  memoryMb: readonly number[];
  /** Run time: log-normal median and sigma, ms. */
  durationMedianMs: number;
  durationSigma: number;
  /** Cold start: log-normal median and sigma, ms. */
  coldStartMedianMs: number;
  coldStartSigma: number;
}

export const GENERATOR_DEFAULTS: Readonly<GeneratorParameters> = Object.freeze<GeneratorParameters>({
  seed: 2019,
  functions: 400,
  days: 3,
  mix: { timer: 0.35, http: 0.45, rare: 0.2 },
  timerPeriodsMin: [
    [1, 3],
    [2, 1],
    [5, 4],
    [10, 3],
    [15, 3],
    [20, 1],
    [30, 3],
    [60, 4],
    [120, 2],
    [240, 1],
    [360, 1],
    [720, 1],
    [1440, 2],
  ],
  timerJitter: 0.05,
  httpRateMedian: 0.3,
  httpRateSigma: 2,
  httpOnMedianMin: 20,
  httpOffMedianMin: 90,
  diurnalAmplitude: 0.6,
  rarePerDay: 2,
  memoryMb: [128, 128, 128, 128, 256, 256, 256, 512, 1024],
  durationMedianMs: 300,
  durationSigma: 1.5,
  coldStartMedianMs: 600,
  coldStartSigma: 0.5,
});

const MINUTES_PER_DAY = 1440;
const MAX_DURATION_MS = 60_000;

function weightedPeriod(rng: SeededRandom, periods: GeneratorParameters['timerPeriodsMin']): number {
  const total = periods.reduce((sum, [, w]) => sum + w, 0);
  let x = rng.next() * total;
  for (const [period, weight] of periods) {
    x -= weight;
    if (x < 0) return period;
  }
  return periods[periods.length - 1][0];
}

function timerCounts(rng: SeededRandom, p: GeneratorParameters, minutes: number): Uint32Array {
  const counts = new Uint32Array(minutes);
  const period = weightedPeriod(rng, p.timerPeriodsMin);
  const fanOut = rng.next() < 0.1 ? rng.int(2, 5) : 1;
  for (let m = rng.int(0, period - 1); m < minutes; m += period) {
    const at = rng.next() < p.timerJitter ? m + 1 : m;
    if (at < minutes) counts[at] += fanOut;
  }
  return counts;
}

function httpCounts(rng: SeededRandom, p: GeneratorParameters, minutes: number): Uint32Array {
  const counts = new Uint32Array(minutes);
  const rate = rng.logNormal(p.httpRateMedian, p.httpRateSigma);
  const phase = rng.next() * MINUTES_PER_DAY;
  let on = rng.next() < 0.5;
  let left = Math.ceil(rng.logNormal(on ? p.httpOnMedianMin : p.httpOffMedianMin, 1));
  for (let m = 0; m < minutes; m++) {
    if (left-- <= 0) {
      on = !on;
      left = Math.ceil(rng.logNormal(on ? p.httpOnMedianMin : p.httpOffMedianMin, 1));
    }
    if (!on) continue;
    const diurnal = 1 + p.diurnalAmplitude * Math.sin((2 * Math.PI * (m + phase)) / MINUTES_PER_DAY);
    counts[m] = rng.poisson(rate * diurnal);
  }
  return counts;
}

function rareCounts(rng: SeededRandom, p: GeneratorParameters, minutes: number): Uint32Array {
  const counts = new Uint32Array(minutes);
  for (let day = 0; day * MINUTES_PER_DAY < minutes; day++) {
    const n = rng.poisson(p.rarePerDay);
    for (let i = 0; i < n; i++) {
      const m = day * MINUTES_PER_DAY + rng.int(0, MINUTES_PER_DAY - 1);
      if (m < minutes) counts[m]++;
    }
  }
  return counts;
}

/** A seeded Azure-shaped trace; parameters not given take GENERATOR_DEFAULTS. */
export function generateTrace(parameters: Partial<GeneratorParameters> = {}): Trace {
  const p: GeneratorParameters = { ...GENERATOR_DEFAULTS, ...parameters };
  const rng = new SeededRandom(p.seed);
  const minutes = Math.round(p.days * MINUTES_PER_DAY);
  const mixTotal = p.mix.timer + p.mix.http + p.mix.rare;
  const functions: TraceFunction[] = [];
  for (let i = 0; i < p.functions; i++) {
    const x = rng.next() * mixTotal;
    const trigger = x < p.mix.timer ? 'timer' : x < p.mix.timer + p.mix.http ? 'http' : 'rare';
    const counts = trigger === 'timer' ? timerCounts(rng, p, minutes) : trigger === 'http' ? httpCounts(rng, p, minutes) : rareCounts(rng, p, minutes);
    functions.push({
      id: `f${String(i).padStart(4, '0')}-${trigger}`,
      trigger,
      memoryMb: rng.pick(p.memoryMb),
      durationMs: Math.min(MAX_DURATION_MS, Math.max(1, Math.round(rng.logNormal(p.durationMedianMs, p.durationSigma)))),
      coldStartMs: Math.max(50, Math.round(rng.logNormal(p.coldStartMedianMs, p.coldStartSigma))),
      counts,
    });
  }
  return { source: { generator: 'skiff azure-shaped', ...p }, minutes, functions: functions.filter((f) => f.counts.some((c) => c > 0)) };
}
