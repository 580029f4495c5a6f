/**
 * Spool replay of files that cannot land as they are: damaged ones (truncated, failing their
 * checksum, no header, a torn gzip of an earlier version) are set aside at once, and a batch
 * ClickHouse keeps refusing for a reason that is neither bad rows nor an outage is set aside after
 * replayMaxAttempts replays — both into the spool's dead-letter/ with the reason, counted, never
 * deleted — while an outage is waited out however long it lasts. First the writer alone (a fake
 * backend fails inserts on cue; encoder and spool are real), then both real backends.
 */
import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Backend, EncodedBatch } from '../../storage/backend.ts';
import { Encoder, handOffRecords } from '../../storage/encoder.ts';
import { classifyInsertError, toStorageError, type InsertFailure } from '../../storage/errors.ts';
import { DEAD_LETTER_FILE, openStorage, type DeadLetter, type InvocationRecord, type StorageOptions } from '../../storage/index.ts';
import { encodeRows } from '../../storage/rows.ts';
import { DEAD_LETTER_DIR, Spool } from '../../storage/spool.ts';
import { frameSpoolFile } from '../../storage/spool-file.ts';
import { TableWriter } from '../../storage/writer.ts';
import { idsOf, SERVER_URL, serverQuery } from './helpers.ts';

const NOW = 1_790_000_000_000;
const record = (id: string, fn = 'f'): InvocationRecord => ({
  id, namespace: 'default', function: fn, version: 1, executor: 'n', containerId: 'c', trigger: 'sync', attempt: 1, status: 'ok', errorCode: '',
  httpStatus: 200, start: 'warm', receivedAtMs: NOW, finishedAtMs: NOW + 1, queueUs: 0, initUs: 0, runUs: 10, totalUs: 20, requestBytes: 1, responseBytes: 2, traceId: '',
});

let dir: string;
let encoder: Encoder;

beforeEach(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'skiff-spool-replay-'));
  encoder = new Encoder(0);
});

afterEach(async () => {
  await encoder.close();
  await rm(dir, { recursive: true, force: true });
});

let fileSeq = 0;
/** A spool file name that sorts after every earlier one. */
function fileName(batchId: string, rows: number, suffix = '.batch'): string {
  fileSeq += 1;
  return `${String(fileSeq).padStart(14, '0')}-00000001-${batchId}.invocations.${rows}${suffix}`;
}

async function encoded(ids: readonly string[], fn = 'f'): Promise<EncodedBatch> {
  return (await encoder.encode('invocations', handOffRecords('invocations', ids.map((id) => record(id, fn))), true)).batch;
}

/** Writes a spool file as a crashed (or damaged) earlier process would have left it. */
async function plant(spoolDir: string, name: string, bytes: Uint8Array): Promise<string> {
  await mkdir(spoolDir, { recursive: true });
  await writeFile(path.join(spoolDir, name), bytes);
  return name;
}

async function deadLetters(spoolDir: string): Promise<DeadLetter[]> {
  return (await readFile(path.join(spoolDir, DEAD_LETTER_FILE), 'utf8')).trim().split('\n').map((line) => JSON.parse(line) as DeadLetter);
}

interface FakeBackend extends Backend {
  landed: string[][];
  attempts: number;
  failWith: Error | undefined;
}

function fakeBackend(): FakeBackend {
  const fake: FakeBackend = {
    kind: 'server',
    landed: [],
    attempts: 0,
    failWith: undefined,
    command: async () => undefined,
    insert: async () => undefined,
    select: async () => [],
    rows: async () => [],
    close: async () => undefined,
    async insertEncoded(_table, batch) {
      fake.attempts += 1;
      if (fake.failWith) throw fake.failWith;
      fake.landed.push(idsOf(batch));
    },
  };
  return fake;
}

function writer(backend: Backend, spool: Spool, replayMaxAttempts = 3, logger = pino({ level: 'silent' })): TableWriter {
  return new TableWriter({
    table: 'invocations', backend, encoder, spool, logger, retryDelaysMs: [1], replayMaxDelayMs: 5, replayMaxAttempts,
    maxQueuedBatches: 1, concurrency: 1, compressInserts: true,
  });
}

describe('classifyInsertError', () => {
  const clickhouse = (code: number, text: string) => Object.assign(new Error(`HTTP 500: Code: ${code}, e.displayText() = DB::Exception: ${text}`), { clickhouseCode: String(code) });
  const cases: Array<[string, unknown, InsertFailure]> = [
    ['a row ClickHouse cannot parse', clickhouse(27, 'Cannot parse input'), 'poison'],
    ['a number that is no number', clickhouse(72, 'Cannot parse number'), 'poison'],
    ['a refused connection', Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:8123'), { code: 'ECONNREFUSED' }), 'outage'],
    ['an undici socket error', Object.assign(new Error('other side closed'), { code: 'UND_ERR_SOCKET' }), 'outage'],
    ['an HTTP error without a ClickHouse code', Object.assign(new Error('HTTP 502: Bad Gateway'), { clickhouseCode: '' }), 'outage'],
    ['a database that is not migrated', clickhouse(81, 'Database skiff does not exist'), 'outage'],
    ['too many parts', clickhouse(252, 'Too many parts (300)'), 'outage'],
    ['a full disk', clickhouse(243, 'Cannot reserve 1.00 MiB'), 'outage'],
    ['a body that does not inflate', clickhouse(354, 'inflate failed: data error'), 'refused'],
    ['an unknown format', clickhouse(73, 'Unknown format Nope'), 'refused'],
    ['a wrapped refusal', toStorageError(clickhouse(354, 'inflate failed: data error'), 'insert into logs'), 'refused'],
    ['a chDB error carrying its code', Object.assign(new Error('Code: 354 (ZLIB_INFLATE_FAILED): inflate failed'), { code: '354' }), 'refused'],
  ];
  it.each(cases)('classifies %s', (_what, err, expected) => {
    expect(classifyInsertError(err)).toBe(expected);
  });
});

describe('TableWriter replay', () => {
  it('sets truncated, checksum-failing, headerless and torn-gzip spool files aside with their reason and replays the whole ones around them', async () => {
    const whole = frameSpoolFile('invocations', await encoded(['a1', 'a2']));
    await plant(dir, fileName('good1', 2), whole);
    const truncated = await plant(dir, fileName('truncated', 2), whole.subarray(0, whole.length - 7));
    const flipped = Buffer.from(whole);
    flipped[flipped.length - 20] ^= 0xff;
    const badSum = await plant(dir, fileName('badsum', 2), flipped);
    const headerless = await plant(dir, fileName('headerless', 3), Buffer.from('this is not a spool file'));
    const tornGzip = gzipSync(encodeRows('invocations', [record('old-1')]).map((row) => JSON.stringify(row)).join('\n'));
    const torn = await plant(dir, fileName('torn', 1, '.jsonl.gz'), tornGzip.subarray(0, tornGzip.length - 4));
    await plant(dir, fileName('good2', 1), frameSpoolFile('invocations', await encoded(['b1'])));

    const backend = fakeBackend();
    const spool = await Spool.open(dir, 1 << 20, () => undefined);
    expect(spool.count('invocations')).toBe(6);
    const w = writer(backend, spool);
    await w.whenIdle();

    expect(backend.landed).toEqual([['a1', 'a2'], ['b1']]);
    expect(w.stats()).toMatchObject({ recordsWritten: 3, batchesReplayed: 2, deadLetteredBatches: 4, deadLetteredRows: 2 + 2 + 3 + 1, droppedRows: 0 });
    expect(spool.count()).toBe(0);
    // The spool keeps nothing but the dead-letter area; the set-aside files keep their bytes.
    expect((await readdir(dir)).sort()).toEqual([DEAD_LETTER_DIR, DEAD_LETTER_FILE]);
    expect((await readdir(path.join(dir, DEAD_LETTER_DIR))).sort()).toEqual([truncated, badSum, headerless, torn].sort());
    expect(await readFile(path.join(dir, DEAD_LETTER_DIR, badSum))).toEqual(flipped);
    const letters = await deadLetters(dir);
    expect(letters.map((l) => ('file' in l ? [l.file, l.rows] : l))).toEqual([
      [path.join(DEAD_LETTER_DIR, truncated), 2],
      [path.join(DEAD_LETTER_DIR, badSum), 2],
      [path.join(DEAD_LETTER_DIR, headerless), 3],
      [path.join(DEAD_LETTER_DIR, torn), 1],
    ]);
    expect(letters[0].error).toMatch(/^damaged spool file: the body is \d+ bytes, the header says \d+ \(truncated or extended\)$/);
    expect(letters[1].error).toBe('damaged spool file: the body does not match its sha256 checksum');
    expect(letters[2].error).toMatch(/^damaged spool file: no spool header/);
    expect(letters[3].error).toMatch(/^damaged spool file: the gzip body is damaged: /);
    await w.close();
  });

  it('sets a batch aside after replayMaxAttempts replays that ClickHouse refuses for a reason other than bad rows or an outage', async () => {
    const backend = fakeBackend();
    backend.failWith = Object.assign(new Error('Code: 354, e.displayText() = DB::Exception: inflate failed: data error'), { clickhouseCode: '354' });
    const name = await plant(dir, fileName('refused', 1), frameSpoolFile('invocations', await encoded(['r1'])));
    const spool = await Spool.open(dir, 1 << 20, () => undefined);
    const w = writer(backend, spool, 3);
    await w.whenIdle();
    expect(backend.attempts).toBe(3);
    expect(w.stats()).toMatchObject({ recordsWritten: 0, deadLetteredBatches: 1, deadLetteredRows: 1, droppedRows: 0 });
    expect(spool.count()).toBe(0);
    const [letter] = await deadLetters(dir);
    expect(letter).toMatchObject({ table: 'invocations', batchId: 'refused', file: path.join(DEAD_LETTER_DIR, name), rows: 1 });
    expect(letter.error).toMatch(/^refused on 3 replays: Code: 354/);
    await w.close();
  });

  it('keeps replaying through an outage far longer than replayMaxAttempts, then lands the batch', async () => {
    const backend = fakeBackend();
    backend.failWith = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:8123'), { code: 'ECONNREFUSED' });
    await plant(dir, fileName('outage', 1), frameSpoolFile('invocations', await encoded(['o1'])));
    const spool = await Spool.open(dir, 1 << 20, () => undefined);
    const w = writer(backend, spool, 2);
    const idle = w.whenIdle();
    await expect.poll(() => backend.attempts, { timeout: 30_000, interval: 5 }).toBeGreaterThanOrEqual(10);
    expect(spool.count()).toBe(1);
    backend.failWith = undefined;
    await idle;
    expect(backend.landed).toEqual([['o1']]);
    expect(w.stats()).toMatchObject({ recordsWritten: 1, deadLetteredBatches: 0, droppedRows: 0 });
    await w.close();
  });

  it('keeps a damaged file in the spool while it cannot be moved aside, and sets it aside once it can', async () => {
    await writeFile(path.join(dir, DEAD_LETTER_DIR), 'a file where the dead-letter directory should be');
    const name = await plant(dir, fileName('stuck', 4), Buffer.from('{"magic":"skiff-spool"'));
    const backend = fakeBackend();
    const spool = await Spool.open(dir, 1 << 20, () => undefined);
    const logged: string[] = [];
    const logger = pino({ level: 'error' }, { write: (line: string) => logged.push((JSON.parse(line) as { msg: string }).msg) });
    const w = writer(backend, spool, 3, logger);
    const idle = w.whenIdle();
    // Each failed move is retried with back-off, and the file stays where it was meanwhile.
    const failedMoves = () => logged.filter((msg) => msg === 'storage could not set a spooled batch aside; it stays in the spool').length;
    await expect.poll(failedMoves, { timeout: 30_000, interval: 5 }).toBeGreaterThanOrEqual(3);
    expect(spool.count()).toBe(1);
    expect(await readdir(dir)).toContain(name);
    expect(w.stats()).toMatchObject({ deadLetteredBatches: 0, droppedRows: 0 });
    await rm(path.join(dir, DEAD_LETTER_DIR));
    await idle;
    expect(await readdir(path.join(dir, DEAD_LETTER_DIR))).toEqual([name]);
    expect(w.stats()).toMatchObject({ deadLetteredBatches: 1, deadLetteredRows: 4, droppedRows: 0 });
    await w.close();
  });
});

// ---------------------------------------------------------------- the real backends

const repoRoot = path.resolve(import.meta.dirname, '../..');
const runId = `${Date.now()}_${process.pid}`;

const BACKENDS = [
  { name: 'chdb' as const, clickhouseUrl: '' },
  { name: 'server' as const, clickhouseUrl: SERVER_URL },
];

describe.each(BACKENDS)('spool replay into $name', ({ name, clickhouseUrl }) => {
  it('lands the whole batches, dead-letters a bad row, and sets aside a damaged file and one ClickHouse cannot read', async () => {
    if (name === 'server') execFileSync('bash', [path.join(repoRoot, 'scripts/start-clickhouse.sh')], { stdio: 'inherit' });
    const options: StorageOptions = {
      backend: name, clickhouseUrl, dataDir: path.join(dir, 'chdb'), database: `skiff_spool_${name}_${runId}`, spoolDir: path.join(dir, 'spool'),
      spoolMaxBytes: 64 * 1024 * 1024, maxBatchRows: 1000, maxBatchBytes: 8 * 1024 * 1024, maxQueuedBatches: 4, flushIntervalMs: 60_000,
      retryDelaysMs: [1], replayMaxDelayMs: 20, replayMaxAttempts: 2,
    };
    const spoolDir = options.spoolDir;
    const good = await encoded(['g1', 'g2'], 'spool-replay');
    await plant(spoolDir, fileName('good', 2), frameSpoolFile('invocations', good));
    const truncated = frameSpoolFile('invocations', await encoded(['t1'], 'spool-replay'));
    const truncatedName = await plant(spoolDir, fileName('truncated', 1), truncated.subarray(0, truncated.length - 1));
    // Intact on disk (the checksum holds) but not gzip: ClickHouse cannot inflate it (code 354), which is no outage and no bad row.
    const notGzip = { ...(await encoded(['n1'], 'spool-replay')), body: Buffer.from('not gzip at all') };
    const notGzipName = await plant(spoolDir, fileName('notgzip', 1), frameSpoolFile('invocations', notGzip));
    // One row whose version is no number: ClickHouse refuses it as bad data, the other rows land.
    const poisoned = await encoded(['p1', 'p2', 'p3'], 'spool-replay');
    const lines = gunzipSync(poisoned.body).toString('utf8').split('\n');
    const versionAt = poisoned.columns.indexOf('version');
    const badFields = lines[1].split('\t');
    badFields[versionAt] = 'not a number';
    lines[1] = badFields.join('\t');
    await plant(spoolDir, fileName('poisoned', 3), frameSpoolFile('invocations', { ...poisoned, body: gzipSync(lines.join('\n')) }));

    const storage = await openStorage(options);
    try {
      await storage.drain();
      const ids = (await storage.listInvocations({ function: 'spool-replay' })).records.map((r) => r.id).sort();
      expect(ids).toEqual(['g1', 'g2', 'p1', 'p3']);
      expect(storage.stats()).toMatchObject({ recordsWritten: 4, deadLetteredBatches: 2, deadLetteredRows: 1 + 1 + 1, spooledBatches: 0, droppedRows: 0 });
      const letters = await deadLetters(spoolDir);
      expect(letters).toHaveLength(3);
      const byBatch = new Map(letters.map((l) => [l.batchId.split('_')[0], l]));
      expect(byBatch.get('truncated')).toMatchObject({ file: path.join(DEAD_LETTER_DIR, truncatedName), rows: 1, error: expect.stringMatching(/^damaged spool file: /) });
      expect(byBatch.get('notgzip')).toMatchObject({ file: path.join(DEAD_LETTER_DIR, notGzipName), rows: 1, error: expect.stringMatching(/^refused on 2 replays: .*354/) });
      expect(byBatch.get('poisoned')).toMatchObject({ row: lines[1], error: expect.stringMatching(/Code: \d+/) });
      expect((await readdir(path.join(spoolDir, DEAD_LETTER_DIR))).sort()).toEqual([truncatedName, notGzipName].sort());
    } finally {
      await storage.close();
      if (name === 'server') await serverQuery(`DROP DATABASE IF EXISTS ${options.database}`);
    }
  });
});
