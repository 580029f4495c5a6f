/**
 * RuntimeMonitor: this process's GC pauses and event-loop delay, as the gateway and executors
 * report them (the end-to-end view is in test/e2e/storage-queries.test.ts).
 */
import { describe, expect, it } from 'vitest';
import { gcPausesBetween, RuntimeMonitor, type RuntimeStats } from '../runtime-stats.ts';

const tick = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Short-lived garbage, enough to fill the young generation many times over. */
function churn(megabytes: number): number {
  let kept = 0;
  for (let i = 0; i < megabytes * 1024; i++) {
    const garbage = new Array<number>(128).fill(i);
    kept += garbage.length;
  }
  return kept;
}

describe('RuntimeMonitor', () => {
  it('counts young-generation pauses as they happen, and a window is the difference of two snapshots', async () => {
    const monitor = new RuntimeMonitor();
    try {
      const before = monitor.snapshot();
      expect(churn(256)).toBeGreaterThan(0);
      await tick(50); // GC entries reach observers asynchronously
      const after = monitor.snapshot();
      expect(after.gc.minor.count).toBeGreaterThan(before.gc.minor.count);
      expect(after.gc.minor.totalMs).toBeGreaterThan(before.gc.minor.totalMs);
      expect(after.gc.minor.maxMs).toBeGreaterThan(0);
      expect(after.gc.minor.maxMs).toBeLessThanOrEqual(after.gc.minor.totalMs);
      const window = gcPausesBetween(before, after);
      expect(window.minor.count).toBe(after.gc.minor.count - before.gc.minor.count);
      expect(window.minor.totalMs).toBeCloseTo(after.gc.minor.totalMs - before.gc.minor.totalMs, 3);
      expect(after.sinceMs).toBe(before.sinceMs);
      expect(after.heapUsedMb).toBeGreaterThan(0);
      expect(after.rssMb).toBeGreaterThan(after.heapUsedMb);
    } finally {
      monitor.close();
    }
  });

  it('sees an event loop held up, in its max and not in its median', async () => {
    const monitor = new RuntimeMonitor(5);
    try {
      await tick(100); // some ordinary turns first
      const until = Date.now() + 120;
      while (Date.now() < until); // the loop is blocked: no timer can run
      await tick(30);
      const { eventLoopDelayMs } = monitor.snapshot();
      expect(eventLoopDelayMs.max).toBeGreaterThanOrEqual(100);
      expect(eventLoopDelayMs.p50).toBeLessThan(eventLoopDelayMs.max);
      expect(eventLoopDelayMs.p99).toBeLessThanOrEqual(eventLoopDelayMs.max);
    } finally {
      monitor.close();
    }
  });

  it('reads zeros, not garbage, before its first sample', () => {
    const monitor = new RuntimeMonitor();
    try {
      const stats: RuntimeStats = monitor.snapshot();
      expect(stats.eventLoopDelayMs).toEqual({ p50: 0, p99: 0, max: 0 });
      expect(Date.now() - stats.sinceMs).toBeLessThan(60_000);
    } finally {
      monitor.close();
    }
  });
});
