/**
 * `skiff stats`: GET /system/stats as tables a person reads — storage's counters per table, and
 * each process's GC pauses and event-loop delay (the gateway's own, each executor's from its
 * heartbeats).
 */
import type { ExecutorRuntime } from '../gateway/index.ts';
import type { RuntimeStats } from '../runtime-stats.ts';
import type { StorageStats, TableStats } from '../storage/index.ts';
import { renderTable } from './table.ts';

/** The body of GET /system/stats. */
export interface StatsReply {
  storage: StorageStats;
  gateway: { runtime: RuntimeStats };
  executors: ExecutorRuntime[];
}

const TABLE_COLUMNS: Array<[string, keyof TableStats]> = [
  ['records written', 'recordsWritten'],
  ['batches', 'batchesWritten'],
  ['retries', 'retries'],
  ['pending rows', 'pendingRows'],
  ['queued batches', 'queuedBatches'],
  ['spooled (ever)', 'batchesSpooled'],
  ['replayed', 'batchesReplayed'],
  ['in spool', 'spooledBatches'],
  ['dead-lettered rows', 'deadLetteredRows'],
  ['dropped rows', 'droppedRows'],
];

const ms = (value: number) => value.toFixed(1);
const pauses = (p: RuntimeStats['gc']['minor']) => `${p.count} / ${ms(p.totalMs)} / ${ms(p.maxMs)}`;

/** The text `skiff stats` prints for a reply, read at `nowMs`. */
export function renderStats(reply: StatsReply, nowMs: number): string {
  const { storage } = reply;
  const tables = renderTable(
    ['table', ...TABLE_COLUMNS.map(([title]) => title)],
    [
      ...Object.entries(storage.tables).map(([name, t]) => [name, ...TABLE_COLUMNS.map(([, key]) => t[key])]),
      ['all', ...TABLE_COLUMNS.map(([, key]) => storage[key])],
    ],
  );
  const processes: Array<[string, string, RuntimeStats | undefined]> = [
    ['gateway', '', reply.gateway.runtime],
    ...reply.executors.map((e): [string, string, RuntimeStats | undefined] => [`executor ${e.nodeId}`, `${ms((nowMs - e.lastSeenMs) / 1000)} s ago`, e.runtime]),
  ];
  const runtimes = renderTable(
    ['process', 'heard', 'watching for', 'event-loop delay ms p50 / p99 / max', 'minor GC count / ms / max ms', 'major GC count / ms / max ms', 'incremental marking count / ms / max ms', 'heap MB', 'RSS MB'],
    processes.map(([name, heard, r]) =>
      r
        ? [name, heard, `${ms((nowMs - r.sinceMs) / 1000)} s`, `${ms(r.eventLoopDelayMs.p50)} / ${ms(r.eventLoopDelayMs.p99)} / ${ms(r.eventLoopDelayMs.max)}`, pauses(r.gc.minor), pauses(r.gc.major), pauses(r.gc.incremental), ms(r.heapUsedMb), ms(r.rssMb)]
        : [name, heard, 'no report yet', '', '', '', '', '', ''],
    ),
  );
  const spool = `spool: ${storage.spooledBatches} batches, ${storage.spooledBytes} bytes in ${storage.spoolDir}`;
  return `${tables}\n${spool}\n\n${runtimes}\n`;
}
