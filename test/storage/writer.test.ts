/**
 * The table writer and the spool on their own: a fake backend stands in for ClickHouse to hold
 * inserts back or fail them on cue (the real backends are exercised in storage.test.ts and the
 * e2e outage test). The encoder and the spool are the real ones.
 */
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import { gunzipSync } from 'node:zlib';
import path from 'node:path';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Backend } from '../../storage/backend.ts';
import { Encoder, handOffRecords } from '../../storage/encoder.ts';
import type { InvocationRecord } from '../../storage/types.ts';
import { Spool, type SpoolEntry } from '../../storage/spool.ts';
import { openSpoolFile } from '../../storage/spool-file.ts';
import { TableWriter } from '../../storage/writer.ts';
import { columnNames } from '../../storage/schema.ts';
import { idsOf } from './helpers.ts';

interface FakeBackend extends Backend {
  /** ids of each insert that landed, in order */
  landed: string[][];
  /** When set, inserts wait for it. */
  gate: Promise<void> | undefined;
  failWith: Error | undefined;
}

/** The invocation ids of a batch, in either format the writer may send. */
function fakeBackend(): FakeBackend {
  const fake: FakeBackend = {
    kind: 'server',
    landed: [],
    gate: undefined,
    failWith: undefined,
    command: async () => undefined,
    insert: async () => undefined,
    select: async () => [],
    rows: async () => [],
    close: async () => undefined,
    async insertEncoded(_table, batch) {
      await fake.gate;
      if (fake.failWith) throw fake.failWith;
      fake.landed.push(idsOf(batch));
    },
  };
  return fake;
}

const record = (id: string) => ({ id, function: 'f', receivedAtMs: 1, finishedAtMs: 2 }) as InvocationRecord;

let dir: string;
let encoder: Encoder;

beforeEach(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'skiff-writer-'));
  encoder = new Encoder(0);
});

afterEach(async () => {
  await encoder.close();
  await rm(dir, { recursive: true, force: true });
});

function writer(backend: Backend, spool: Spool, overrides: Partial<ConstructorParameters<typeof TableWriter>[0]> = {}): TableWriter {
  return new TableWriter({
    table: 'invocations',
    backend,
    encoder,
    spool,
    logger: pino({ level: 'silent' }),
    retryDelaysMs: [1],
    replayMaxDelayMs: 20,
    replayMaxAttempts: 3,
    maxQueuedBatches: 1,
    concurrency: 1,
    compressInserts: true,
    ...overrides,
  });
}

describe('TableWriter', () => {
  it('sends batches to the spool while the queue is full, without waiting, and replays them oldest first', async () => {
    const backend = fakeBackend();
    let open!: () => void;
    backend.gate = new Promise((resolve) => (open = resolve));
    const spool = await Spool.open(dir, 1 << 20, () => undefined);
    const w = writer(backend, spool);
    const durable = ['a', 'b', 'c', 'd'].map((id) => w.submit([record(id)]));
    // a is in flight, b waits in the queue of one, c and d go to the spool.
    await Promise.all([durable[2], durable[3]]);
    expect(spool.count('invocations')).toBe(2);
    backend.gate = undefined;
    open();
    await Promise.all(durable);
    await w.whenIdle();
    const order = backend.landed.flat();
    expect([...order].sort()).toEqual(['a', 'b', 'c', 'd']);
    expect(order.indexOf('c')).toBeLessThan(order.indexOf('d')); // the spool replays oldest first
    expect(w.stats()).toMatchObject({ recordsWritten: 4, batchesSpooled: 2, batchesReplayed: 2, droppedRows: 0 });
    expect(await readdir(dir)).toEqual([]);
    await w.close();
  });

  it('sends the batches that waited for an insert slot in one insert, in order', async () => {
    const backend = fakeBackend();
    let open!: () => void;
    backend.gate = new Promise((resolve) => (open = resolve));
    const spool = await Spool.open(dir, 1 << 20, () => undefined);
    const w = writer(backend, spool, { maxQueuedBatches: 3 });
    const durable = [w.submit([record('a')]), w.submit([record('b'), record('c')]), w.submit([record('d')])];
    expect(w.stats().queuedBatches).toBe(3); // a in flight, b and d waiting
    backend.gate = undefined;
    open();
    await Promise.all(durable);
    expect(backend.landed).toEqual([['a'], ['b', 'c', 'd']]);
    expect(w.stats()).toMatchObject({ recordsWritten: 4, batchesWritten: 2, batchesSpooled: 0, droppedRows: 0 });
    expect(spool.count()).toBe(0);
    await w.close();
  });

  it('writes a batch staged slice by slice, then its tail, as one batch in order', async () => {
    const backend = fakeBackend();
    const spool = await Spool.open(dir, 1 << 20, () => undefined);
    const w = writer(backend, spool, { maxQueuedBatches: 4 });
    const ids = Array.from({ length: 2500 }, (_, i) => `staged-${i}`);
    const slices = [ids.slice(0, 1024), ids.slice(1024, 2048)].map((slice) => handOffRecords('invocations', slice.map(record)));
    await w.submitStaged(ids.slice(2048).map(record), slices, 2048);
    expect(backend.landed).toEqual([ids]);
    expect(w.stats()).toMatchObject({ recordsWritten: 2500, batchesWritten: 1, droppedRows: 0 });
    await w.close();
    // After close every row of a staged batch is counted as dropped, never lost silently.
    await w.submitStaged([record('late')], [handOffRecords('invocations', [record('late-staged')])], 1);
    expect(w.stats().droppedRows).toBe(2);
  });

  it('spools a batch after its last failed attempt and keeps replaying with back-off until ClickHouse takes it', async () => {
    const backend = fakeBackend();
    backend.failWith = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:8123'), { code: 'ECONNREFUSED' });
    const spool = await Spool.open(dir, 1 << 20, () => undefined);
    const w = writer(backend, spool);
    await w.submit([record('x'), record('y')]);
    expect(w.stats()).toMatchObject({ retries: 1, batchesSpooled: 1 });
    expect(spool.rows('invocations')).toBe(2);
    const idle = w.whenIdle();
    backend.failWith = undefined;
    await idle;
    expect(backend.landed).toEqual([['x', 'y']]);
    await w.close();
  });

  it('sends live batches uncompressed when told to, and still spools them gzip-compressed', async () => {
    const backend = fakeBackend();
    const seen: boolean[] = [];
    const insert = backend.insertEncoded.bind(backend);
    backend.insertEncoded = async (table, batch) => {
      seen.push(batch.gzip);
      return insert(table, batch);
    };
    const spool = await Spool.open(dir, 1 << 20, () => undefined);
    const w = writer(backend, spool, { compressInserts: false, maxQueuedBatches: 1 });
    backend.failWith = Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' });
    await w.submit([record('p')]);
    const entry = spool.oldest('invocations')!;
    const spooled = openSpoolFile(entry.file, 'invocations', entry.rows, await spool.read(entry));
    expect(spooled).toMatchObject({ format: 'TabSeparated', gzip: true, rows: 1 });
    expect(idsOf(spooled)).toEqual(['p']);
    backend.failWith = undefined;
    await w.submit([record('q')]); // the spool is not empty: q goes there too, behind p
    await w.whenIdle();
    expect(backend.landed.flat()).toEqual(['p', 'q']);
    expect(seen.at(0)).toBe(false);
    expect(seen.at(-1)).toBe(true);
    await w.close();
  });

  it('replays batches a previous process left, and removes half-written files', async () => {
    await writeFile(path.join(dir, '00000000000001-00000001-old.invocations.1.jsonl.gz.tmp'), 'torn');
    const first = await Spool.open(dir, 1 << 20, () => undefined);
    const { batch } = await encoder.encode('invocations', handOffRecords('invocations', [record('left-over')]), true);
    await first.put('invocations', 'old', 1, await encoder.spoolFile('invocations', batch));
    const backend = fakeBackend();
    const spool = await Spool.open(dir, 1 << 20, () => undefined);
    expect(spool.count()).toBe(1);
    const w = writer(backend, spool);
    await w.whenIdle();
    expect(backend.landed).toEqual([['left-over']]);
    expect(await readdir(dir)).toEqual([]);
    await w.close();
  });
});

describe('Encoder', () => {
  const rowsOf = (n: number, tag: string) => Buffer.from(Array.from({ length: n }, (_, i) => `${tag}${i}\tx\n`).join(''));

  it('encodes rows already encoded with compression in its thread, each body whole', async () => {
    const { batch } = await encoder.encode('logs', { rows: 5, chunks: [], encoded: [{ body: rowsOf(3, 'm'), rows: 3 }, { body: rowsOf(2, 'c'), rows: 2 }] }, true);
    expect(batch).toMatchObject({ rows: 5, gzip: true, rawBytes: rowsOf(3, 'm').length + rowsOf(2, 'c').length });
    expect(gunzipSync(batch.body).toString()).toBe(rowsOf(3, 'm').toString() + rowsOf(2, 'c').toString());
  });

  it('takes rows already encoded, with nothing to compress, as they are, without its thread', async () => {
    const body = new Uint8Array(rowsOf(3, 'a'));
    const { batch, refused } = await encoder.encode('logs', { rows: 3, chunks: [], encoded: [{ body, rows: 3 }] }, false);
    expect(batch.body).toBe(body); // the same bytes, not a copy back from a thread
    expect(batch).toMatchObject({ format: 'TabSeparated', columns: columnNames('logs'), rows: 3, gzip: false, rawBytes: body.byteLength });
    expect(refused).toEqual([]);
    const two = await encoder.encode('logs', { rows: 5, chunks: [], encoded: [{ body: rowsOf(3, 'a'), rows: 3 }, { body: rowsOf(2, 'b'), rows: 2 }] }, false);
    expect(Buffer.from(two.batch.body).toString()).toBe(rowsOf(3, 'a').toString() + rowsOf(2, 'b').toString());
    await expect(encoder.encode('logs', { rows: 4, chunks: [], encoded: [{ body: rowsOf(3, 'a'), rows: 3 }] }, false)).rejects.toThrow(/4 logs rows held 3/);
  });
});

describe('Spool', () => {
  it('deletes its oldest batches past maxBytes and reports them as dropped', async () => {
    const dropped: SpoolEntry[] = [];
    const body = Buffer.alloc(100, 1);
    const spool = await Spool.open(dir, 250, (entry) => dropped.push(entry));
    await spool.put('logs', 'one', 10, body);
    await spool.put('invocations', 'two', 20, body);
    expect(dropped).toEqual([]);
    await spool.put('logs', 'three', 30, body);
    expect(dropped.map((e) => e.batchId)).toEqual(['one']);
    expect(spool.bytes).toBe(200);
    expect(spool.oldest('logs')?.batchId).toBe('three');
  });
});
