/** `skiff stats`' tables from a GET /system/stats reply (the command itself: test/e2e/tls-and-cli.test.ts). */
import { describe, expect, it } from 'vitest';
import { renderStats, type StatsReply } from '../../cli/stats.ts';
import type { RuntimeStats } from '../../runtime-stats.ts';
import type { TableStats } from '../../storage/index.ts';

const NOW = 1_800_000_000_000;

function table(recordsWritten: number, droppedRows = 0): TableStats {
  return { recordsWritten, batchesWritten: 3, retries: 1, batchesSpooled: 2, batchesReplayed: 2, deadLetteredRows: 0, deadLetteredBatches: 0, droppedRows, pendingRows: 5, queuedBatches: 0, spooledBatches: 0, spooledRows: 0 };
}

function runtime(sinceMs: number): RuntimeStats {
  return {
    sinceMs,
    eventLoopDelayMs: { p50: 10.1, p99: 12.34, max: 40 },
    gc: { minor: { count: 7, totalMs: 14.25, maxMs: 3.5 }, major: { count: 1, totalMs: 6, maxMs: 6 }, incremental: { count: 2, totalMs: 1, maxMs: 0.6 }, weakCallbacks: { count: 0, totalMs: 0, maxMs: 0 } },
    heapUsedMb: 31.5,
    rssMb: 120.25,
  };
}

const reply: StatsReply = {
  storage: { ...table(150, 0), spooledBytes: 0, spoolDir: '/data/spool', tables: { invocations: table(100), logs: table(40), container_events: table(10) } },
  gateway: { runtime: runtime(NOW - 60_000) },
  executors: [
    { nodeId: 'node-a', lastSeenMs: NOW - 250, runtime: runtime(NOW - 30_000) },
    { nodeId: 'node-b', lastSeenMs: NOW - 100 },
  ],
};

describe('renderStats', () => {
  const text = renderStats(reply, NOW);
  const line = (start: string) => text.split('\n').find((l) => l.startsWith(start)) ?? '';

  it('prints a row per table and the totals, with the spool', () => {
    expect(line('invocations').split(/\s+/).slice(0, 3)).toEqual(['invocations', '100', '3']);
    expect(line('container_events').split(/\s+/)[1]).toBe('10');
    expect(line('all').split(/\s+/)[1]).toBe('150');
    expect(line('spool:')).toBe('spool: 0 batches, 0 bytes in /data/spool');
  });

  it('prints each process with how long it was watched, its event-loop delay and its pauses', () => {
    expect(line('gateway')).toMatch(/^gateway\s+60\.0 s\s+10\.1 \/ 12\.3 \/ 40\.0\s+7 \/ 14\.3 \/ 3\.5\s+1 \/ 6\.0 \/ 6\.0\s+2 \/ 1\.0 \/ 0\.6\s+31\.5\s+120\.3$/);
    expect(line('executor node-a')).toMatch(/^executor node-a\s+0\.3 s ago\s+30\.0 s\s+10\.1 \/ 12\.3/);
    expect(line('executor node-b')).toMatch(/^executor node-b\s+0\.1 s ago\s+no report yet$/);
  });
});
