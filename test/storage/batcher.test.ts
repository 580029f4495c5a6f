/** The batcher alone, with an in-memory sink: when batches are sealed, what flush waits for, what is dropped. */
import fc from 'fast-check';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { Batcher, StagingBytes, type BatcherOptions } from '../../storage/batcher.ts';

interface Harness {
  batcher: Batcher<number>;
  sealed: number[][];
  drops: { rows: number; reason: string }[];
}

function harness(overrides: Partial<BatcherOptions<number>> = {}): Harness {
  const sealed: number[][] = [];
  const drops: { rows: number; reason: string }[] = [];
  const batcher = new Batcher<number>({
    name: 'test',
    maxBatchRows: 3,
    maxBatchBytes: 1000,
    flushIntervalMs: 1000,
    sizeOf: () => 10,
    submit: async (rows) => {
      sealed.push([...rows]);
    },
    onDrop: (info) => drops.push(info),
    ...overrides,
  });
  return { batcher, sealed, drops };
}

afterEach(() => {
  vi.useRealTimers();
});

describe('Batcher', () => {
  it('stages full slices as rows arrive and seals them, in order, with the rows not staged', async () => {
    const batches: Array<{ staged: string[]; stagedRows: number; rows: number[] }> = [];
    const slices: number[][] = [];
    const batcher = new Batcher<number, string>({
      name: 'staged',
      maxBatchRows: 10,
      maxBatchBytes: 1_000_000,
      flushIntervalMs: 1000,
      sizeOf: () => 1,
      stage: { rows: 4, run: (rows) => (slices.push([...rows]), rows.join(',')) },
      submit: async (rows, staged, stagedRows) => {
        batches.push({ staged: [...staged], stagedRows, rows: [...rows] });
      },
      onDrop: () => {},
    });
    batcher.push([1, 2, 3, 4, 5]);
    // Staged at once: the rows are no longer held as they were.
    expect(slices).toEqual([[1, 2, 3, 4]]);
    expect(batcher.stats().pendingRows).toBe(5);
    batcher.push([6, 7, 8, 9, 10, 11]);
    // The 10th row sealed the batch (two slices staged, two rows not), the 11th waits.
    expect(batches).toEqual([{ staged: ['1,2,3,4', '5,6,7,8'], stagedRows: 8, rows: [9, 10] }]);
    expect(batcher.stats().pendingRows).toBe(1);
    batcher.push([12, 13, 14]);
    await batcher.flush();
    expect(batches[1]).toEqual({ staged: ['11,12,13,14'], stagedRows: 4, rows: [] });
    expect(batcher.stats().pendingRows).toBe(0);
  });

  it('copies encoded rows into its staging buffer and seals them as one slice, with the staged slices', async () => {
    const batches: Array<{ staged: string[]; stagedRows: number; rows: number[] }> = [];
    const batcher = new Batcher<number, string>({
      name: 'bytes',
      maxBatchRows: 10,
      maxBatchBytes: 1_000_000,
      flushIntervalMs: 60_000,
      sizeOf: () => 1,
      stage: { rows: 2, run: (rows) => rows.join(',') },
      bytesSlice: (bytes, rows) => `${rows}:${bytes.toString()}`,
      submit: async (rows, staged, stagedRows) => {
        batches.push({ staged: [...staged], stagedRows, rows: [...rows] });
      },
      onDrop: () => {},
    });
    const sent = Buffer.from('a\nb\n');
    batcher.pushBytes(sent, 2);
    sent.fill(0x78); // the sender's buffer is free at once: the batch kept a copy
    batcher.push([1, 2, 3]);
    batcher.pushBytes(Buffer.from('c\n'), 1);
    expect(batcher.stats().pendingRows).toBe(6);
    await batcher.flush();
    expect(batches).toEqual([{ staged: ['1,2', '3:a\nb\nc\n'], stagedRows: 5, rows: [3] }]);
    // Rows in bytes count towards a full batch: the 10th row seals it.
    batcher.pushBytes(Buffer.from('d\n'.repeat(9)), 9);
    expect(batches).toHaveLength(1);
    batcher.pushBytes(Buffer.from('e\n'), 1);
    expect(batches[1]).toEqual({ staged: [`10:${'d\n'.repeat(9)}e\n`], stagedRows: 10, rows: [] });
    await batcher.close();
    batcher.pushBytes(Buffer.from('late\n'), 1);
    expect(batcher.stats()).toEqual({ pendingRows: 0, droppedRows: 1 });
  });

  it('lends a sealed batch its staged bytes until it is durable, then reuses the buffer', async () => {
    const lent: Buffer[] = [];
    const durable: Array<() => void> = [];
    const batcher = new Batcher<number, Buffer>({
      name: 'lend',
      maxBatchRows: 2,
      maxBatchBytes: 1_000_000,
      flushIntervalMs: 60_000,
      sizeOf: () => 1,
      bytesSlice: (bytes) => bytes,
      submit: (_rows, staged) => {
        lent.push(...staged);
        return new Promise<void>((resolve) => durable.push(resolve));
      },
      onDrop: () => {},
    });
    batcher.pushBytes(Buffer.from('one\ntwo\n'), 2); // full: sealed, not yet durable
    batcher.pushBytes(Buffer.from('ZZZZ\nYYYY\n'), 2); // a second batch, in another buffer
    expect(lent.map(String)).toEqual(['one\ntwo\n', 'ZZZZ\nYYYY\n']);
    expect(lent[0].buffer).not.toBe(lent[1].buffer);
    durable[0]();
    await new Promise((resolve) => setImmediate(resolve));
    // The first batch is durable: its buffer is staged into again (after the one being filled now).
    batcher.pushBytes(Buffer.from('3\n4\n'), 2);
    batcher.pushBytes(Buffer.from('5\n6\n'), 2);
    expect(lent.slice(2).map(String)).toEqual(['3\n4\n', '5\n6\n']);
    expect(lent[3].buffer).toBe(lent[0].buffer);
    expect(String(lent[1])).toBe('ZZZZ\nYYYY\n'); // still lent: untouched
    for (const resolve of durable) resolve();
    await batcher.close();
  });

  it('refuses encoded rows without a way to slice them', () => {
    const h = harness();
    expect(() => h.batcher.pushBytes(Buffer.from('x\n'), 1)).toThrow(/bytesSlice/);
  });

  it('seals a batch as soon as maxBatchRows rows are pending', () => {
    const h = harness();
    h.batcher.push([1, 2]);
    expect(h.sealed).toEqual([]);
    h.batcher.push([3, 4]);
    expect(h.sealed).toEqual([[1, 2, 3]]);
    expect(h.batcher.stats().pendingRows).toBe(1);
  });

  it('seals a batch as soon as its estimated size reaches maxBatchBytes', () => {
    const h = harness({ maxBatchRows: 100, maxBatchBytes: 25 });
    h.batcher.push([1, 2]);
    expect(h.sealed).toEqual([]);
    h.batcher.push([3, 4, 5, 6]);
    expect(h.sealed).toEqual([[1, 2, 3], [4, 5, 6]]);
  });

  it('seals pending rows once flushIntervalMs has passed', async () => {
    vi.useFakeTimers();
    const h = harness();
    h.batcher.push([1]);
    await vi.advanceTimersByTimeAsync(999);
    expect(h.sealed).toEqual([]);
    await vi.advanceTimersByTimeAsync(1);
    expect(h.sealed).toEqual([[1]]);
  });

  it('flush() resolves only when every sealed batch is durable', async () => {
    const releases: Array<() => void> = [];
    const h = harness({ submit: (rows) => new Promise<void>((resolve) => releases.push(() => resolve(void rows))) });
    h.batcher.push([1, 2, 3, 4]);
    let flushed = false;
    const flushing = h.batcher.flush().then(() => (flushed = true));
    await Promise.resolve();
    expect(releases).toHaveLength(2);
    releases[0]();
    await new Promise((resolve) => setImmediate(resolve));
    expect(flushed).toBe(false);
    releases[1]();
    await flushing;
    expect(flushed).toBe(true);
  });

  it('push() never waits on the sink, however slow it is', () => {
    const h = harness({ maxBatchRows: 1, submit: () => new Promise<void>(() => undefined) });
    for (let i = 0; i < 1000; i++) h.batcher.push([i]);
    expect(h.batcher.stats()).toEqual({ pendingRows: 0, droppedRows: 0 });
  });

  it('close() seals pending rows, is idempotent, and drops and counts rows pushed afterwards', async () => {
    const h = harness();
    h.batcher.push([1]);
    await Promise.all([h.batcher.close(), h.batcher.close()]);
    expect(h.sealed).toEqual([[1]]);
    h.batcher.push([2]);
    expect(h.drops).toEqual([{ table: 'test', rows: 1, reason: 'closed' }]);
    expect(h.batcher.stats()).toEqual({ pendingRows: 0, droppedRows: 1 });
  });
});

describe('StagingBytes', () => {
  it('gives back exactly what was appended since the last take, whatever the sizes', () => {
    fc.assert(
      fc.property(fc.array(fc.array(fc.uint8Array({ maxLength: 40_000 }), { maxLength: 6 }), { maxLength: 5 }), fc.boolean(), (batches, releaseEach) => {
        const stage = new StagingBytes();
        for (const appends of batches) {
          for (const bytes of appends) stage.append(bytes);
          const taken = stage.take();
          expect(taken.bytes.equals(Buffer.concat(appends))).toBe(true);
          expect(stage.length).toBe(0);
          if (releaseEach) taken.release();
        }
      }),
      { numRuns: 50 },
    );
  });

  it('keeps at most two buffers for reuse, and lets one go that a burst made too large', () => {
    const stage = new StagingBytes();
    const taken = [1, 2, 3].map(() => {
      stage.append(Buffer.alloc(1000));
      return stage.take();
    });
    for (const t of taken) t.release();
    expect(stage.spare).toBe(2);
    taken[0].release(); // twice: no effect
    expect(stage.spare).toBe(2);
    stage.append(Buffer.alloc(4 * 1024 * 1024));
    const burst = stage.take();
    stage.append(Buffer.alloc(100));
    stage.take().release();
    burst.release();
    expect(stage.spare).toBe(1); // the 4 MB buffer was not kept
    expect(stage.capacity).toBeLessThan(1024 * 1024);
  });
});
