/** Keep-alive policies and eviction priorities (executor/keepalive.ts), on synthetic idle times. */
import { describe, expect, it } from 'vitest';
import { cheapestWindowEndMs, FixedTtlPolicy, GreedyDualSizeFrequency, HybridHistogramPolicy, IdleTimeHistogram, LruPriority, OPENWHISK_TTL_MS } from '../../executor/keepalive.ts';

const MIN = 60_000;

/** Feeds `policy` calls of `fn` separated by the given idle times (each call takes no time). */
function replay(policy: HybridHistogramPolicy, fn: string, idleMs: number[]): void {
  let now = 0;
  policy.onCallStart(fn, now);
  policy.onCallsDone(fn, now);
  for (const idle of idleMs) {
    now += idle;
    policy.onCallStart(fn, now);
    policy.onCallsDone(fn, now);
  }
}

describe('fixed TTL', () => {
  it('keeps every function OpenWhisk-style for 10 minutes by default', () => {
    expect(new FixedTtlPolicy().decide()).toEqual({ preWarmMs: 0, keepAliveMs: OPENWHISK_TTL_MS, basis: 'fixed' });
  });
});

describe('hybrid histogram', () => {
  it('falls back to the fixed TTL while it has too few idle times', () => {
    const policy = new HybridHistogramPolicy({ fallbackTtlMs: 7 * MIN });
    replay(policy, 'f', [30 * MIN, 30 * MIN]);
    expect(policy.decide('f')).toMatchObject({ preWarmMs: 0, keepAliveMs: 7 * MIN, basis: 'fallback: too few idle times' });
    expect(policy.decide('never-seen').basis).toBe('fallback: too few idle times');
  });

  it('falls back when most idle times are beyond the histogram range', () => {
    const policy = new HybridHistogramPolicy();
    replay(policy, 'rare', Array(10).fill(6 * 60 * MIN));
    expect(policy.decide('rare').basis).toBe('fallback: idle times mostly out of range');
  });

  it('falls back when the idle times are spread too evenly to predict', () => {
    const policy = new HybridHistogramPolicy({ rangeMs: 10 * MIN });
    replay(policy, 'flat', Array.from({ length: 50 }, (_, i) => (i % 10) * MIN + 1_000));
    expect(policy.decide('flat').basis).toBe('fallback: idle times too spread out');
  });

  it('unloads a periodic function after each call and pre-warms it just before the next (paper windows)', () => {
    const policy = new HybridHistogramPolicy({ costAware: false });
    replay(policy, 'timer', Array(20).fill(30 * MIN));
    const decision = policy.decide('timer');
    // Head: bin [30, 31) min → 30 min − 10 %; tail: 31 min + 10 %.
    expect(decision).toEqual({ preWarmMs: 27 * MIN, keepAliveMs: Math.ceil(31 * MIN * 1.1) - 27 * MIN, basis: 'histogram' });
  });

  it('keeps a function with short idle times warm from the call on (no pre-warm)', () => {
    const policy = new HybridHistogramPolicy();
    replay(policy, 'busy', Array(30).fill(20_000));
    const decision = policy.decide('busy');
    expect(decision.preWarmMs).toBe(0);
    expect(decision.keepAliveMs).toBeGreaterThanOrEqual(MIN);
    expect(decision.keepAliveMs).toBeLessThanOrEqual(2 * MIN);
  });

  it('cuts a long tail back when keeping the container that long costs more than the cold starts it saves', () => {
    // Bursts with 30 s gaps, and one long gap (3 h) between bursts, per 20 calls.
    const idle = Array.from({ length: 100 }, (_, i) => (i % 20 === 19 ? 180 * MIN : 30_000));
    const paper = new HybridHistogramPolicy({ costAware: false });
    const capped = new HybridHistogramPolicy();
    replay(paper, 'bursty', idle);
    replay(capped, 'bursty', idle);
    expect(paper.decide('bursty').keepAliveMs).toBeGreaterThan(180 * MIN);
    expect(capped.decide('bursty')).toMatchObject({ preWarmMs: 0, keepAliveMs: MIN, basis: 'histogram (cost-capped)' });
  });
});

describe('idle-time histogram', () => {
  it('reads head percentiles at the lower bin edge and tail ones at the upper', () => {
    const h = new IdleTimeHistogram(MIN, 10 * MIN);
    for (const m of [1, 2, 2, 3, 9]) h.add(m * MIN + 5_000);
    expect(h.percentileMs(5, 'lower')).toBe(MIN);
    expect(h.percentileMs(99, 'upper')).toBe(10 * MIN);
    h.add(20 * MIN);
    expect(h.outOfBounds).toBe(1);
    expect(h.inBounds).toBe(5);
  });

  it('finds the window end with the lowest expected cost', () => {
    const h = new IdleTimeHistogram(MIN, 60 * MIN);
    for (let i = 0; i < 9; i++) h.add(30_000);
    h.add(50 * MIN);
    // Keeping 51 min to catch 1 call in 10 costs far more than a 10-minute-priced cold start.
    expect(cheapestWindowEndMs(h, 0, 60 * MIN, 10 * MIN)).toBe(MIN);
    // With cold starts priced at 10 hours, catching it is worth it.
    expect(cheapestWindowEndMs(h, 0, 60 * MIN, 600 * MIN)).toBe(51 * MIN);
  });
});

describe('eviction priorities', () => {
  it('LRU evicts the least recently used first', () => {
    const lru = new LruPriority();
    expect(lru.priority({ fn: 'a', memoryMb: 128, lastUsedMs: 5 })).toBeLessThan(lru.priority({ fn: 'b', memoryMb: 128, lastUsedMs: 9 }));
  });

  it('GDSF keeps frequent, costly, small functions and ages the rest through its clock', () => {
    const gdsf = new GreedyDualSizeFrequency();
    for (let i = 0; i < 5; i++) gdsf.onUse('hot', 500, 128);
    gdsf.onUse('cold', 500, 128);
    gdsf.onUse('big', 500, 1024);
    const p = (fn: string, memoryMb: number) => gdsf.priority({ fn, memoryMb, lastUsedMs: 0 });
    expect(p('hot', 128)).toBeGreaterThan(p('cold', 128));
    expect(p('cold', 128)).toBeGreaterThan(p('big', 1024));
    // Evicting raises the clock: a function used afterwards outranks ones not used since.
    gdsf.onEvict(p('cold', 128));
    expect(gdsf.clock).toBe(p('cold', 128));
    gdsf.onUse('late', 500, 1024);
    expect(p('late', 1024)).toBeGreaterThan(p('big', 1024));
  });
});
