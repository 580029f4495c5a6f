/** The batcher alone, with an in-memory writer: when batches leave, what retries keep, what is dropped. */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { Batcher, type BatcherOptions } from '../../storage/batcher.ts';

interface Harness {
  batcher: Batcher<number>;
  written: number[][];
  drops: { rows: number; reason: string }[];
  /** Resolves with the next batch handed to the writer. */
  nextWrite(): Promise<number[]>;
}

function harness(overrides: Partial<BatcherOptions<number>> = {}): Harness {
  const written: number[][] = [];
  const drops: { rows: number; reason: string }[] = [];
  let waiter: ((rows: number[]) => void) | undefined;
  const batcher = new Batcher<number>({
    name: 'test',
    maxBatchRows: 3,
    flushIntervalMs: 1000,
    retryDelaysMs: [1, 1],
    maxPendingRows: 100,
    write: async (rows) => {
      written.push([...rows]);
      waiter?.(rows);
    },
    onWriteError: () => undefined,
    onDrop: (info) => drops.push(info),
    ...overrides,
  });
  const nextWrite = () => new Promise<number[]>((resolve) => (waiter = resolve));
  return { batcher, written, drops, nextWrite };
}

afterEach(() => {
  vi.useRealTimers();
});

describe('Batcher', () => {
  it('writes a batch as soon as maxBatchRows rows are pending', async () => {
    const h = harness();
    const write = h.nextWrite();
    h.batcher.push([1, 2]);
    expect(h.written).toEqual([]);
    h.batcher.push([3, 4]);
    expect(await write).toEqual([1, 2, 3]);
    // The 4th row waits for the interval (or a flush): pendingRows counts it and the batch in flight.
    expect(h.batcher.stats().pendingRows).toBe(4);
    await h.batcher.flush();
    expect(h.written).toEqual([[1, 2, 3], [4]]);
  });

  it('writes pending rows once flushIntervalMs has passed', async () => {
    vi.useFakeTimers();
    const h = harness();
    h.batcher.push([1]);
    await vi.advanceTimersByTimeAsync(999);
    expect(h.written).toEqual([]);
    await vi.advanceTimersByTimeAsync(1);
    expect(h.written).toEqual([[1]]);
  });

  it('flush() writes everything pending in batches of at most maxBatchRows', async () => {
    const h = harness({ maxBatchRows: 2 });
    h.batcher.push([1]);
    h.batcher.push([2]);
    h.batcher.push([3]);
    await h.batcher.flush();
    expect(h.written.flat()).toEqual([1, 2, 3]);
    expect(h.written.every((batch) => batch.length <= 2)).toBe(true);
    expect(h.batcher.stats()).toMatchObject({ recordsWritten: 3, pendingRows: 0 });
  });

  it('retries a failing batch with the same rows until it is written', async () => {
    const attempts: number[][] = [];
    const h = harness({
      write: async (rows) => {
        attempts.push([...rows]);
        if (attempts.length < 3) throw new Error('ClickHouse is down');
      },
    });
    h.batcher.push([7, 8]);
    await h.batcher.flush();
    expect(attempts).toEqual([[7, 8], [7, 8], [7, 8]]);
    expect(h.batcher.stats()).toMatchObject({ retries: 2, failedBatches: 0, recordsWritten: 2, batchesWritten: 1 });
  });

  it('rejects flush() and keeps the rows when every attempt fails', async () => {
    let down = true;
    const h = harness({
      write: async (rows) => {
        if (down) throw new Error('ClickHouse is down');
        h.written.push([...rows]);
      },
    });
    h.batcher.push([1, 2]);
    await expect(h.batcher.flush()).rejects.toThrow('ClickHouse is down');
    expect(h.batcher.stats()).toMatchObject({ retries: 2, failedBatches: 1, pendingRows: 2 });
    down = false;
    h.batcher.push([3]);
    await h.batcher.flush();
    expect(h.written).toEqual([[1, 2, 3]]);
  });

  it('drops the oldest rows beyond maxPendingRows and counts them', async () => {
    const h = harness({ maxBatchRows: 100, maxPendingRows: 4 });
    h.batcher.push([1, 2, 3, 4, 5, 6]);
    expect(h.drops).toEqual([{ table: 'test', rows: 2, reason: 'full' }]);
    await h.batcher.flush();
    expect(h.written).toEqual([[3, 4, 5, 6]]);
    expect(h.batcher.stats().droppedRows).toBe(2);
  });

  it('close() writes pending rows, is idempotent, and drops rows pushed afterwards', async () => {
    const h = harness();
    h.batcher.push([1]);
    await Promise.all([h.batcher.close(), h.batcher.close()]);
    expect(h.written).toEqual([[1]]);
    h.batcher.push([2]);
    expect(h.drops).toEqual([{ table: 'test', rows: 1, reason: 'closed' }]);
    expect(h.batcher.stats().pendingRows).toBe(0);
  });
});
