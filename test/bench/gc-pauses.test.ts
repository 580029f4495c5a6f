/** bench:logging's GC pause tally: windows of two /system/stats readings, per 1000 calls. */
import { describe, expect, it } from 'vitest';
import { GcPauseTally, type Runtimes } from '../../bench/logging-overhead.ts';
import type { RuntimeStats } from '../../runtime-stats.ts';

function runtime(minorMs: number, majorMs: number, incrementalMs: number): RuntimeStats {
  const pauses = (totalMs: number) => ({ count: totalMs > 0 ? 1 : 0, totalMs, maxMs: totalMs });
  return {
    sinceMs: 1,
    eventLoopDelayMs: { p50: 0, p99: 0, max: 0 },
    gc: { minor: pauses(minorMs), major: pauses(majorMs), incremental: pauses(incrementalMs), weakCallbacks: pauses(0) },
    heapUsedMb: 1,
    rssMb: 2,
  };
}

describe('GcPauseTally', () => {
  it('sums each window per process, major with incremental steps, over all calls', () => {
    const tally = new GcPauseTally();
    const readings: Runtimes[] = [
      { gateway: runtime(10, 0, 0), executor: runtime(20, 5, 1) },
      { gateway: runtime(14, 2, 1), executor: runtime(26, 5, 1) }, // +4 / +3 and +6 / +0 over 1000 calls
      { gateway: runtime(16, 2, 1), executor: runtime(30, 15, 3) }, // +2 / +0 and +4 / +12 over 3000 calls
    ];
    tally.add(readings[0], readings[1], 1000);
    tally.add(readings[1], readings[2], 3000);
    expect(tally.per1000Calls()).toEqual({ gateway: { minor: 1.5, major: 0.75 }, executor: { minor: 2.5, major: 3 } });
  });

  it('leaves out a window an executor reported nothing for, and reads 0 with no calls', () => {
    const tally = new GcPauseTally();
    expect(tally.per1000Calls()).toEqual({ gateway: { minor: 0, major: 0 }, executor: { minor: 0, major: 0 } });
    tally.add({ gateway: runtime(0, 0, 0) }, { gateway: runtime(8, 0, 0), executor: runtime(100, 100, 100) }, 2000);
    expect(tally.per1000Calls()).toEqual({ gateway: { minor: 4, major: 0 }, executor: { minor: 0, major: 0 } });
  });
});
