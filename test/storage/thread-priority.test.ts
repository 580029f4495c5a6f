/**
 * Storage's threads run below the request path's priority: the chDB worker lowers its own before
 * it opens the Session, so every ClickHouse thread it starts (inserts, merges) inherits it.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { LOG_ROW_COLUMNS, LogRowEncoder } from '../../bus/index.ts';
import { openStorage, type Storage } from '../../storage/index.ts';
import { niceThisThread } from '../../storage/thread-priority.ts';

/** Name and nice value of every thread of this process (/proc/self/task/<tid>/stat: nice is field 19). */
function threads(): Array<{ tid: number; name: string; nice: number }> {
  return readdirSync('/proc/self/task').map((tid) => {
    const stat = readFileSync(`/proc/self/task/${tid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return { tid: Number(tid), name: stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')')), nice: Number(fields[16]) };
  });
}

describe('storage thread priority', () => {
  let dir = '';
  let storage: Storage | undefined;

  afterAll(async () => {
    await storage?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('runs ClickHouse\'s threads in the chDB worker at storage.threadNice and leaves the caller\'s thread alone', async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'skiff-nice-'));
    storage = await openStorage({
      backend: 'chdb', dataDir: path.join(dir, 'chdb'), clickhouseUrl: '', database: 'nice_test', flushIntervalMs: 60_000, maxBatchRows: 1000,
      maxBatchBytes: 1 << 20, maxQueuedBatches: 4, spoolDir: path.join(dir, 'spool'), spoolMaxBytes: 1 << 30, threadNice: 7,
    });
    const row = new LogRowEncoder('nice').encode({ invocationId: 'n-1', function: 'f', containerId: 'c', timeMs: Date.now(), stream: 'stdout', line: 'hello', truncated: false });
    storage.recordLogRows(LOG_ROW_COLUMNS, Buffer.from(row));
    await storage.flush(); // an insert: ClickHouse's query and merge pools exist now
    const all = threads();
    const clickhouse = all.filter((t) => /^(ThreadPool|MergeMutate|BgSchPool)$/.test(t.name));
    expect(clickhouse.length).toBeGreaterThan(0);
    expect(clickhouse.every((t) => t.nice === 7)).toBe(true);
    expect(all.find((t) => t.tid === process.pid)?.nice).toBe(0);
    expect(storage.stats().tables.logs.recordsWritten).toBe(1);
  });

  it.each([-1, 20, 1.5])('refuses nice value %s', (nice) => {
    expect(() => niceThisThread(nice)).toThrow(/integer 0\.\.19/);
  });

  it.each([-1, 20])('refuses to open storage with threadNice %s', async (threadNice) => {
    await expect(openStorage({ backend: 'chdb', dataDir: '/tmp/x', clickhouseUrl: '', database: 'x', flushIntervalMs: 1, maxBatchRows: 1, maxBatchBytes: 1, maxQueuedBatches: 1, spoolDir: '/tmp/y', spoolMaxBytes: 1, threadNice })).rejects.toThrow(
      'storage.threadNice must be an integer 0..19',
    );
  });
});
