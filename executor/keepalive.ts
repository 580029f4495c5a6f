/**
 * Keep-alive policies: how long an idle container of a function stays warm, and whether it is
 * unloaded at once and pre-warmed later. Two policies, used unchanged by the executor and by the
 * trace simulator (bench/trace/simulator.ts):
 *  - FixedTtlPolicy: OpenWhisk's fixed idle TTL (10 min by default);
 *  - HybridHistogramPolicy: the "hybrid histogram" policy of Shahrad et al. (ATC'20): a per-function
 *    histogram of idle times; while it is representative, the pre-warm window is its head
 *    percentile minus a margin and the keep-alive window its tail percentile plus a margin; while
 *    it is not (too few samples, too spread out, mostly out of range), a fixed TTL.
 * Times are milliseconds of whatever clock the caller uses (Date.now() or simulated time).
 */

/** What a policy decides for one function after a call ends. */
export interface KeepAliveDecision {
  /** Unload the container now and load one again this long after the call ended (0: keep it). */
  preWarmMs: number;
  /** Then keep it warm this long (from the call's end when preWarmMs is 0, else from the pre-warm). */
  keepAliveMs: number;
  /** Why: 'fixed', 'histogram' or the reason for the fallback. */
  basis: string;
}

/** A keep-alive policy; one instance serves every function of a node. */
export interface KeepAlivePolicy {
  readonly name: string;
  /** A call of `fn` starts at `nowMs` (records the idle time since the function's last call ended). */
  onCallStart(fn: string, nowMs: number): void;
  /** The function has no call running any more, as of `nowMs`. */
  onCallsDone(fn: string, nowMs: number): void;
  /** The window for `fn` as of now. */
  decide(fn: string): KeepAliveDecision;
  /** Forgets a function (undeployed). */
  forget(fn: string): void;
}

/** OpenWhisk's default: an idle container is kept 10 minutes. */
export const OPENWHISK_TTL_MS = 10 * 60_000;

/** OpenWhisk-style fixed TTL. */
export class FixedTtlPolicy implements KeepAlivePolicy {
  readonly name = 'fixed-ttl';
  readonly #ttlMs: number;

  constructor(ttlMs: number = OPENWHISK_TTL_MS) {
    this.#ttlMs = ttlMs;
  }

  onCallStart(): void {}
  onCallsDone(): void {}
  forget(): void {}

  decide(): KeepAliveDecision {
    return { preWarmMs: 0, keepAliveMs: this.#ttlMs, basis: 'fixed' };
  }
}

/** Parameters of the hybrid histogram policy (defaults: the paper's). */
export interface HybridHistogramOptions {
  /** Histogram bin width (the paper: 1 minute). */
  binMs: number;
  /** Histogram range; longer idle times are out of bounds (the paper: 4 hours). */
  rangeMs: number;
  /** Percentile of idle times that sets the pre-warm window (the paper: 5th). */
  headPercentile: number;
  /** Percentile that sets the end of the keep-alive window (the paper: 99th). */
  tailPercentile: number;
  /** Safety margin applied to both ends (the paper: 10 %). */
  marginFraction: number;
  /** Idle times needed before the histogram is trusted. */
  minSamples: number;
  /** Below this coefficient of variation of the bin counts the histogram is too flat to trust (the paper: 2). */
  minBinCv: number;
  /** Above this fraction of out-of-bounds idle times the histogram is not used. */
  maxOutOfBoundsFraction: number;
  /** The fallback keep-alive while the histogram is not representative. */
  fallbackTtlMs: number;
  /** A pre-warm window shorter than this is not worth an unload: keep the container instead. */
  minPreWarmMs: number;
  /**
   * Cut the keep-alive window back from the tail percentile to the window with the lowest
   * expected cost on the histogram, pricing one cold start like `fallbackTtlMs` of idle memory
   * (the exchange rate a fixed TTL implies: ski rental). Off: the paper's window as is.
   */
  costAware: boolean;
}

export const HYBRID_HISTOGRAM_DEFAULTS: Readonly<HybridHistogramOptions> = Object.freeze({
  binMs: 60_000,
  rangeMs: 4 * 60 * 60_000,
  headPercentile: 5,
  tailPercentile: 99,
  marginFraction: 0.1,
  minSamples: 5,
  minBinCv: 2,
  maxOutOfBoundsFraction: 0.5,
  fallbackTtlMs: OPENWHISK_TTL_MS,
  minPreWarmMs: 60_000,
  costAware: true,
});

/** Idle times of one function, binned. */
export class IdleTimeHistogram {
  readonly bins: Uint32Array;
  readonly binMs: number;
  samples = 0;
  outOfBounds = 0;

  constructor(binMs: number, rangeMs: number) {
    this.binMs = binMs;
    this.bins = new Uint32Array(Math.max(1, Math.ceil(rangeMs / binMs)));
  }

  add(idleMs: number): void {
    const bin = Math.floor(Math.max(0, idleMs) / this.binMs);
    if (bin >= this.bins.length) this.outOfBounds++;
    else this.bins[bin]++;
    this.samples++;
  }

  /** In-bounds samples. */
  get inBounds(): number {
    return this.samples - this.outOfBounds;
  }

  /**
   * The idle time at percentile `p` of the in-bounds samples: the lower edge of its bin for a
   * head percentile (`edge` 'lower'), the upper edge for a tail one.
   */
  percentileMs(p: number, edge: 'lower' | 'upper'): number {
    const n = this.inBounds;
    if (n === 0) return 0;
    const rank = Math.max(1, Math.ceil((p / 100) * n));
    let seen = 0;
    for (let i = 0; i < this.bins.length; i++) {
      seen += this.bins[i];
      if (seen >= rank) return (edge === 'lower' ? i : i + 1) * this.binMs;
    }
    return this.bins.length * this.binMs;
  }

  /** Coefficient of variation of the bin counts (0 for a flat histogram). */
  binCv(): number {
    const k = this.bins.length;
    const mean = this.inBounds / k;
    if (mean === 0) return 0;
    let sq = 0;
    for (const count of this.bins) sq += (count - mean) ** 2;
    return Math.sqrt(sq / k) / mean;
  }
}

interface FunctionHistory {
  histogram: IdleTimeHistogram;
  /** When the function's last call ended; undefined while a call runs or before the first. */
  idleSinceMs: number | undefined;
}

/**
 * The window end in (preWarmMs, maxEndMs] (a bin edge) with the lowest expected cost per idle
 * period on `hist`: idle memory time kept plus `coldPriceMs` for each idle time the window misses
 * (out-of-bounds ones included). Idle times fall at their bin's middle.
 */
export function cheapestWindowEndMs(hist: IdleTimeHistogram, preWarmMs: number, maxEndMs: number, coldPriceMs: number): number {
  const { bins, binMs } = hist;
  const n = hist.samples;
  if (n === 0) return maxEndMs;
  const firstBin = Math.floor(preWarmMs / binMs);
  const lastBin = Math.min(bins.length - 1, Math.ceil(maxEndMs / binMs) - 1);
  let early = 0;
  for (let i = 0; i < firstBin; i++) early += bins[i];
  let best = maxEndMs;
  let bestCost = Infinity;
  // Walk the end edge up one bin at a time: hits accumulate, so does their idle time.
  let hits = 0;
  let hitIdle = 0;
  for (let i = firstBin; i <= lastBin; i++) {
    hits += bins[i];
    hitIdle += bins[i] * Math.max(0, (i + 0.5) * binMs - preWarmMs);
    const endMs = (i + 1) * binMs;
    const misses = n - hits - early;
    const cost = (hitIdle + misses * (endMs - preWarmMs) + (misses + early) * coldPriceMs) / n;
    if (cost < bestCost) {
      bestCost = cost;
      best = endMs;
    }
  }
  return Math.min(best, maxEndMs);
}

/** The hybrid histogram policy (Shahrad et al., ATC'20), with a fixed TTL as its fallback. */
export class HybridHistogramPolicy implements KeepAlivePolicy {
  readonly name: string;
  readonly options: Readonly<HybridHistogramOptions>;
  readonly #functions = new Map<string, FunctionHistory>();

  constructor(options: Partial<HybridHistogramOptions> = {}) {
    this.options = { ...HYBRID_HISTOGRAM_DEFAULTS, ...options };
    this.name = this.options.costAware ? 'hybrid-histogram+cost' : 'hybrid-histogram';
  }

  #history(fn: string): FunctionHistory {
    let h = this.#functions.get(fn);
    if (!h) {
      h = { histogram: new IdleTimeHistogram(this.options.binMs, this.options.rangeMs), idleSinceMs: undefined };
      this.#functions.set(fn, h);
    }
    return h;
  }

  onCallStart(fn: string, nowMs: number): void {
    const h = this.#history(fn);
    if (h.idleSinceMs !== undefined) h.histogram.add(nowMs - h.idleSinceMs);
    h.idleSinceMs = undefined;
  }

  onCallsDone(fn: string, nowMs: number): void {
    this.#history(fn).idleSinceMs = nowMs;
  }

  forget(fn: string): void {
    this.#functions.delete(fn);
  }

  /** The histogram of `fn` (for tests and reports). */
  histogramOf(fn: string): IdleTimeHistogram | undefined {
    return this.#functions.get(fn)?.histogram;
  }

  decide(fn: string): KeepAliveDecision {
    const o = this.options;
    const hist = this.#functions.get(fn)?.histogram;
    const fallback = (basis: string): KeepAliveDecision => ({ preWarmMs: 0, keepAliveMs: o.fallbackTtlMs, basis });
    if (!hist || hist.samples < o.minSamples) return fallback('fallback: too few idle times');
    if (hist.outOfBounds / hist.samples > o.maxOutOfBoundsFraction) return fallback('fallback: idle times mostly out of range');
    if (hist.binCv() < o.minBinCv) return fallback('fallback: idle times too spread out');
    const head = hist.percentileMs(o.headPercentile, 'lower');
    const tail = hist.percentileMs(o.tailPercentile, 'upper');
    let preWarmMs = Math.floor(head * (1 - o.marginFraction));
    if (preWarmMs < o.minPreWarmMs) preWarmMs = 0;
    let endMs = Math.ceil(tail * (1 + o.marginFraction));
    let basis = 'histogram';
    if (o.costAware) {
      const cheapest = cheapestWindowEndMs(hist, preWarmMs, endMs, o.fallbackTtlMs);
      if (cheapest < endMs) {
        endMs = cheapest;
        basis = 'histogram (cost-capped)';
      }
    }
    return { preWarmMs, keepAliveMs: Math.max(o.binMs, endMs - preWarmMs), basis };
  }
}

/** What an eviction priority knows about one idle container. */
export interface EvictionCandidate {
  fn: string;
  memoryMb: number;
  lastUsedMs: number;
}

/** Orders idle containers for eviction under memory pressure: the lowest priority goes first. */
export interface EvictionPriority {
  readonly name: string;
  /** A call of `fn` started (cold or warm); `coldStartMs` is what a cold start of it costs (0: unknown). */
  onUse(fn: string, coldStartMs: number, memoryMb: number): void;
  priority(candidate: EvictionCandidate): number;
  /** `candidate` was evicted with priority `priority`. */
  onEvict(priority: number): void;
  forget(fn: string): void;
}

/** Least recently used first (what a fixed-TTL platform does when it must make room). */
export class LruPriority implements EvictionPriority {
  readonly name = 'lru';
  onUse(): void {}
  onEvict(): void {}
  forget(): void {}
  priority(candidate: EvictionCandidate): number {
    return candidate.lastUsedMs;
  }
}

/**
 * Greedy-Dual-Size-Frequency (FaasCache, ASPLOS'21): priority = clock + frequency × cost / size,
 * where the clock rises to the priority of each evicted container, so containers that were not
 * used since (which kept their old priority) age out.
 */
export class GreedyDualSizeFrequency implements EvictionPriority {
  readonly name = 'gdsf';
  #clock = 0;
  readonly #frequency = new Map<string, number>();
  readonly #cost = new Map<string, number>();
  /** Each function's priority as of its last use. */
  readonly #priority = new Map<string, number>();

  get clock(): number {
    return this.#clock;
  }

  /** Priority is set at use, with the clock of that moment. */
  onUse(fn: string, coldStartMs: number, memoryMb: number): void {
    const frequency = (this.#frequency.get(fn) ?? 0) + 1;
    this.#frequency.set(fn, frequency);
    if (coldStartMs > 0) this.#cost.set(fn, coldStartMs);
    const cost = this.#cost.get(fn) ?? 1;
    this.#priority.set(fn, this.#clock + (frequency * cost) / Math.max(1, memoryMb));
  }

  priority(candidate: EvictionCandidate): number {
    return this.#priority.get(candidate.fn) ?? this.#clock;
  }

  onEvict(priority: number): void {
    if (priority > this.#clock) this.#clock = priority;
  }

  forget(fn: string): void {
    this.#frequency.delete(fn);
    this.#cost.delete(fn);
    this.#priority.delete(fn);
  }
}

export type KeepAlivePolicyName = 'fixed' | 'adaptive';

/** The policy pair a node runs: 'fixed' = fixed TTL + LRU; 'adaptive' = hybrid histogram + GDSF. */
export function createKeepAlive(name: KeepAlivePolicyName, ttlMs: number, histogram: Partial<HybridHistogramOptions> = {}): { policy: KeepAlivePolicy; eviction: EvictionPriority } {
  if (name === 'fixed') return { policy: new FixedTtlPolicy(ttlMs), eviction: new LruPriority() };
  return { policy: new HybridHistogramPolicy({ fallbackTtlMs: ttlMs, ...histogram }), eviction: new GreedyDualSizeFrequency() };
}
