/**
 * Storage on real ClickHouse, both backends: chDB in a temp directory, and the ClickHouse server
 * started by scripts/start-clickhouse.sh with a database unique to this run.
 */
import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { gzipSync } from 'node:zlib';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LOG_ROW_COLUMNS, LogRowEncoder, type ContainerEvent, type LogLine } from '../../bus/index.ts';
import { SkiffError } from '../../errors.ts';
import { DEAD_LETTER_FILE, openStorage, type DeadLetter, type InvocationRecord, type Storage, type StorageOptions, type StoredFunction } from '../../storage/index.ts';
import { EMBEDDED_MERGE_SELECTOR_BASE } from '../../storage/migrate.ts';
import { encodeRows } from '../../storage/rows.ts';
import { SERVER_URL, serverQuery } from './helpers.ts';

const repoRoot = path.resolve(import.meta.dirname, '../..');
const runId = `${Date.now()}_${process.pid}`;

interface BackendCase {
  name: 'chdb' | 'server';
  setup(): Promise<StorageOptions>;
  teardown(options: StorageOptions): Promise<void>;
}

const base = {
  clickhouseUrl: '',
  dataDir: '',
  database: `skiff_test_${runId}`,
  maxBatchRows: 1000,
  maxBatchBytes: 8 * 1024 * 1024,
  maxQueuedBatches: 4,
  spoolMaxBytes: 64 * 1024 * 1024,
  flushIntervalMs: 60_000,
  retryDelaysMs: [1, 1],
  replayMaxDelayMs: 50,
};
const spoolDirFor = (name: string): string => path.join(os.tmpdir(), `skiff-spool-${runId}-${name}`);

const BACKENDS: BackendCase[] = [
  {
    name: 'chdb',
    setup: async () => ({ ...base, backend: 'chdb', dataDir: await mkdtemp(path.join(os.tmpdir(), 'skiff-chdb-')), spoolDir: spoolDirFor('chdb') }),
    teardown: async (options) => {
      await rm(options.dataDir, { recursive: true, force: true });
      await rm(options.spoolDir, { recursive: true, force: true });
    },
  },
  {
    name: 'server',
    setup: async () => {
      execFileSync('bash', [path.join(repoRoot, 'scripts/start-clickhouse.sh')], { stdio: 'inherit' });
      return { ...base, backend: 'server', clickhouseUrl: SERVER_URL, spoolDir: spoolDirFor('server') };
    },
    teardown: async (options) => {
      await serverQuery(`DROP DATABASE IF EXISTS ${options.database}`);
      await rm(options.spoolDir, { recursive: true, force: true });
    },
  },
];

const NOW = 1_790_000_000_000;

function invocation(overrides: Partial<InvocationRecord> & Pick<InvocationRecord, 'id'>): InvocationRecord {
  return {
    namespace: 'default',
    function: 'hello',
    version: 3,
    executor: 'node-a',
    containerId: 'c-1',
    trigger: 'sync',
    attempt: 1,
    status: 'ok',
    errorCode: '',
    httpStatus: 200,
    start: 'warm',
    receivedAtMs: NOW,
    queuedAtMs: NOW,
    startedAtMs: NOW + 1,
    finishedAtMs: NOW + 12,
    queueUs: 150,
    initUs: 0,
    createUs: 0,
    runUs: 11_000,
    totalUs: 12_345,
    requestBytes: 17,
    responseBytes: 4096,
    traceId: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',
    ...overrides,
  };
}

function fn(overrides: Partial<StoredFunction> & Pick<StoredFunction, 'name' | 'version'>): StoredFunction {
  return {
    namespace: 'default',
    runtime: 'node20',
    image: '',
    codeHash: `sha256-${overrides.name}-${overrides.version}`,
    code: Buffer.from(`code of ${overrides.name} v${overrides.version}`).toString('base64'),
    handler: 'index.js',
    env: { GREETING: "it's \\ \"here\"" },
    limits: { memoryMB: 256, timeoutMs: 5000, concurrency: 2 },
    createdAtMs: NOW + overrides.version,
    deleted: false,
    ...overrides,
  };
}

describe.each(BACKENDS)('storage on $name', ({ name, setup, teardown }) => {
  let options: StorageOptions;
  let storage: Storage;

  beforeAll(async () => {
    options = await setup();
    storage = await openStorage(options);
  });

  afterAll(async () => {
    await storage?.close();
    if (options) await teardown(options);
  });

  it('migrates idempotently: migrate() again and a second open of the same database succeed', async () => {
    await storage.migrate();
    await storage.migrate();
    storage.recordInvocation(invocation({ id: 'migrate-1', function: 'migrate' }));
    await storage.close();
    storage = await openStorage(options);
    expect((await storage.listInvocations({ function: 'migrate' })).records.map((r) => r.id)).toEqual(['migrate-1']);
  });

  it(`${name === 'chdb' ? 'tunes' : 'leaves'} the merges of the batched tables (merge_selector_base ${EMBEDDED_MERGE_SELECTOR_BASE} on the embedded engine only)`, async () => {
    const rows = await storage.query(`SELECT name, engine_full FROM system.tables WHERE database = '${options.database}' AND name IN ('invocations', 'logs', 'container_events', 'functions') ORDER BY name`);
    const tuned = rows.filter((r) => String(r.engine_full).includes(`merge_selector_base = ${EMBEDDED_MERGE_SELECTOR_BASE}`)).map((r) => r.name);
    expect(rows.map((r) => r.name)).toEqual(['container_events', 'functions', 'invocations', 'logs']);
    expect(tuned).toEqual(name === 'chdb' ? ['container_events', 'invocations', 'logs'] : []);
  });

  it('round-trips an invocation record with every field', async () => {
    const rec = invocation({ id: "round'trip\\1", function: 'round-trip', trigger: 'async', attempt: 2, status: 'error', errorCode: 'FUNCTION_CRASHED', httpStatus: 502, start: 'cold', initUs: 850_000, createUs: 610_000 });
    storage.recordInvocation(rec);
    await storage.flush();
    expect((await storage.listInvocations({ function: 'round-trip' })).records).toEqual([rec]);
    expect((await storage.getInvocation(rec.id))?.record).toEqual(rec);
  });

  it('returns null for an invocation id that was never recorded', async () => {
    expect(await storage.getInvocation('no-such-id')).toBeNull();
  });

  it('returns the logs of an invocation ordered by time, lines of the same millisecond in arrival order', async () => {
    const line = (timeMs: number, text: string, extra: Partial<LogLine> = {}): LogLine => ({
      invocationId: 'logs-1', function: 'logger', containerId: 'c-9', timeMs, stream: 'stdout', line: text, truncated: false, ...extra,
    });
    storage.recordInvocation(invocation({ id: 'logs-1', function: 'logger' }));
    storage.recordLogs([line(NOW + 5, 'third'), line(NOW + 1, 'first'), line(NOW + 5, 'fourth', { stream: 'stderr', truncated: true })]);
    storage.recordLogs([line(NOW + 2, "second: it's \\ \"quoted\"\n ünïcode"), { ...line(NOW + 3, 'other call'), invocationId: 'logs-2' }]);
    await storage.flush();
    const found = await storage.getInvocation('logs-1');
    expect(found?.logs).toEqual([
      line(NOW + 1, 'first'),
      line(NOW + 2, "second: it's \\ \"quoted\"\n ünïcode"),
      line(NOW + 5, 'third'),
      line(NOW + 5, 'fourth', { stream: 'stderr', truncated: true }),
    ]);
  });

  it('stores log rows as the executor encoded them, each once however often its batch arrives', async () => {
    const encoder = new LogRowEncoder(`exec_${name}`);
    const lines: LogLine[] = [
      { invocationId: 'rows-1', function: 'row-logger', containerId: 'c-7', timeMs: NOW + 1, stream: 'stdout', line: 'tab\there, backslash \\ and ünïcode', truncated: false },
      { invocationId: 'rows-1', function: 'row-logger', containerId: 'c-7', timeMs: NOW + 1, stream: 'stderr', line: 'cut', truncated: true },
      { invocationId: 'rows-1', function: 'row-logger', containerId: 'c-7', timeMs: NOW + 2, stream: 'stdout', line: '', truncated: false },
    ];
    const body = Buffer.from(lines.map((l) => encoder.encode(l)).join(''));
    storage.recordInvocation(invocation({ id: 'rows-1', function: 'row-logger' }));
    const before = storage.stats().tables.logs.recordsWritten;
    storage.recordLogRows(LOG_ROW_COLUMNS, body);
    storage.recordLogRows(LOG_ROW_COLUMNS, Buffer.from(body)); // a batch sent again (a retry)
    await storage.flush();
    expect(storage.stats().tables.logs.recordsWritten - before).toBe(2 * lines.length);
    expect((await storage.getInvocation('rows-1'))?.logs).toEqual(lines);
  });

  it('dead-letters log rows in other columns than the logs table has, each with why', async () => {
    const before = storage.stats().deadLetteredRows;
    const rows = 'a\tb\nc\td\n';
    storage.recordLogRows(['invocation_id', 'line'], Buffer.from(rows));
    await storage.flush();
    await expect.poll(() => storage.stats().deadLetteredRows - before).toBe(2);
    const letters = (await readFile(path.join(options.spoolDir, DEAD_LETTER_FILE), 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as DeadLetter);
    const mine = letters.filter((l) => 'row' in l && (l.row === 'a\tb' || l.row === 'c\td'));
    expect(mine).toHaveLength(2);
    expect(mine[0]).toMatchObject({ table: 'logs', error: expect.stringContaining('columns (invocation_id, line)') });
  });

  it('round-trips container events, newest first, filtered by function and container', async () => {
    const event = (timeMs: number, kind: ContainerEvent['kind'], containerId = 'c-ev'): ContainerEvent => ({
      timeMs, nodeId: 'node-a', containerId, function: 'events', version: 1, kind, detail: `${kind} detail`,
    });
    storage.recordContainerEvents([event(NOW, 'created'), event(NOW + 10, 'ready'), event(NOW + 5, 'created', 'c-other')]);
    await storage.flush();
    expect(await storage.listContainerEvents({ function: 'events', containerId: 'c-ev' })).toEqual([event(NOW + 10, 'ready'), event(NOW, 'created')]);
    expect(await storage.listContainerEvents({ function: 'events', limit: 1 })).toEqual([event(NOW + 10, 'ready')]);
  });

  it('shows a record written twice with the same id once, in the list and by id', async () => {
    const rec = invocation({ id: 'twice-1', function: 'twice' });
    storage.recordInvocation(rec);
    await storage.flush();
    storage.recordInvocation(rec);
    await storage.flush();
    expect((await storage.listInvocations({ function: 'twice' })).records).toEqual([rec]);
    expect((await storage.getInvocation('twice-1'))?.record).toEqual(rec);
  });

  it('shows only the newest version of a retried invocation, also under a status filter', async () => {
    storage.recordInvocation(invocation({ id: 'retry-1', function: 'retried', attempt: 1, status: 'error', errorCode: 'FUNCTION_CRASHED', finishedAtMs: NOW + 10 }));
    await storage.flush();
    const final = invocation({ id: 'retry-1', function: 'retried', attempt: 2, status: 'ok', finishedAtMs: NOW + 20 });
    storage.recordInvocation(final);
    await storage.flush();
    expect((await storage.listInvocations({ function: 'retried' })).records).toEqual([final]);
    expect((await storage.listInvocations({ function: 'retried', status: 'error' })).records).toEqual([]);
    expect((await storage.getInvocation('retry-1'))?.record).toEqual(final);
  });

  it('filters invocations by function and status and applies the limit, newest first', async () => {
    const recs = [
      invocation({ id: 'f-1', function: 'filter-a', receivedAtMs: NOW + 1 }),
      invocation({ id: 'f-2', function: 'filter-a', receivedAtMs: NOW + 2, status: 'timeout', errorCode: 'FUNCTION_TIMEOUT', httpStatus: 504 }),
      invocation({ id: 'f-3', function: 'filter-a', receivedAtMs: NOW + 3 }),
      invocation({ id: 'f-4', function: 'filter-b', receivedAtMs: NOW + 4 }),
    ];
    for (const rec of recs) storage.recordInvocation(rec);
    await storage.flush();
    const ids = async (q: Parameters<Storage['listInvocations']>[0]) => (await storage.listInvocations(q)).records.map((r) => r.id);
    expect(await ids({ function: 'filter-a' })).toEqual(['f-3', 'f-2', 'f-1']);
    expect(await ids({ function: 'filter-a', status: 'ok' })).toEqual(['f-3', 'f-1']);
    expect(await ids({ function: 'filter-a', limit: 2 })).toEqual(['f-3', 'f-2']);
    expect(await ids({ status: 'timeout' })).toEqual(['f-2']);
    expect((await ids({})).length).toBeGreaterThanOrEqual(4);
  });

  it('filters by start type, trace id and time range, and pages with a cursor without gaps or repeats', async () => {
    const trace = 'ab'.repeat(16);
    const recs = Array.from({ length: 7 }, (_, i) =>
      invocation({ id: `p-${i}`, function: 'paged', receivedAtMs: NOW + 100 + Math.floor(i / 2), start: i % 3 === 0 ? 'cold' : 'warm', traceId: i === 4 ? trace : '' }),
    );
    for (const rec of recs) storage.recordInvocation(rec);
    await storage.flush();
    const ids = async (q: Parameters<Storage['listInvocations']>[0]) => (await storage.listInvocations(q)).records.map((r) => r.id);
    expect(await ids({ function: 'paged', start: 'cold' })).toEqual(['p-6', 'p-3', 'p-0']);
    expect(await ids({ traceId: trace })).toEqual(['p-4']);
    expect(await ids({ function: 'paged', sinceMs: NOW + 101, untilMs: NOW + 103 })).toEqual(['p-5', 'p-4', 'p-3', 'p-2']);
    const seen: string[] = [];
    let cursor: string | undefined;
    for (let page = 0; page < 10; page++) {
      const result = await storage.listInvocations({ function: 'paged', limit: 2, cursor });
      seen.push(...result.records.map((r) => r.id));
      if (result.nextCursor === null) break;
      cursor = result.nextCursor;
    }
    expect(seen).toEqual(['p-6', 'p-5', 'p-4', 'p-3', 'p-2', 'p-1', 'p-0']);
  });

  it('computes a function\'s count, error and cold-start rates, percentiles and bytes in a window', async () => {
    const t0 = Date.now() - 1000;
    const recs = Array.from({ length: 10 }, (_, i) =>
      invocation({
        id: `s-${i}`, function: 'stats', receivedAtMs: t0 + i, finishedAtMs: t0 + i + 5, totalUs: (i + 1) * 1000, runUs: (i + 1) * 100,
        start: i < 2 ? 'cold' : 'warm', status: i === 9 ? 'error' : 'ok', requestBytes: 10, responseBytes: 20,
      }),
    );
    recs.push(invocation({ id: 'old', function: 'stats', receivedAtMs: t0 - 3_600_000 }));
    for (const rec of recs) storage.recordInvocation(rec);
    storage.recordInvocation({ ...recs[0] }); // a duplicate counts once
    await storage.flush();
    const stats = await storage.functionStats('stats', t0 - 60_000);
    expect(stats).toMatchObject({ count: 10, statuses: { ok: 9, error: 1, timeout: 0, rejected: 0 }, errorRate: 0.1, coldStarts: 2, coldStartRate: 0.2, requestBytes: 100, responseBytes: 200 });
    expect(stats.totalUs.p50).toBeGreaterThanOrEqual(5000);
    expect(stats.totalUs.p50).toBeLessThanOrEqual(6000);
    expect(stats.totalUs.p99).toBe(10_000);
    expect(stats.runUs.p99).toBe(1000);
    expect(await storage.functionStats('no-such-function', t0)).toMatchObject({ count: 0, errorRate: 0, totalUs: { p50: 0, p95: 0, p99: 0 } });
  });

  it('dead-letters a malformed row with its error and lands the rest of its batch', async () => {
    await storage.close();
    const good = Array.from({ length: 9 }, (_, i) => invocation({ id: `dl-${i}`, function: 'dead-letter' }));
    const lines = encodeRows('invocations', good).map((row) => JSON.stringify(row));
    const bad = JSON.stringify({ ...encodeRows('invocations', [invocation({ id: 'dl-bad', function: 'dead-letter' })])[0], version: 'not a number' });
    lines.splice(4, 0, bad);
    await mkdir(options.spoolDir, { recursive: true });
    await writeFile(path.join(options.spoolDir, `00000000000001-00000001-planted.invocations.${lines.length}.jsonl.gz`), gzipSync(lines.join('\n')));
    storage = await openStorage(options);
    await storage.drain();
    expect((await storage.listInvocations({ function: 'dead-letter' })).records.map((r) => r.id).sort()).toEqual(good.map((r) => r.id).sort());
    expect(storage.stats()).toMatchObject({ deadLetteredRows: 1, batchesReplayed: 1, spooledBatches: 0, droppedRows: 0 });
    // The file also holds what earlier tests here dead-lettered into other tables.
    const letters = (await readFile(path.join(options.spoolDir, DEAD_LETTER_FILE), 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as DeadLetter).filter((l) => l.table === 'invocations');
    expect(letters).toHaveLength(1);
    expect(letters[0]).toMatchObject({ table: 'invocations', batchId: expect.stringContaining('planted'), row: bad });
    expect(letters[0].error).toMatch(/Code: \d+/);
  });

  it('loads the latest version of each function with its code, including deleted markers', async () => {
    await storage.saveFunction(fn({ name: 'alpha', version: 1 }));
    await storage.saveFunction(fn({ name: 'alpha', version: 2, env: {}, limits: { memoryMB: 512, timeoutMs: 100, concurrency: 8 } }));
    await storage.saveFunction(fn({ name: 'beta', version: 1, runtime: 'image', image: 'example/beta:1', code: '', codeHash: '' }));
    await storage.saveFunction(fn({ name: 'gamma', version: 1 }));
    await storage.saveFunction(fn({ name: 'gamma', version: 2, code: '', deleted: true }));
    const loaded = (await storage.loadFunctions()).sort((a, b) => a.name.localeCompare(b.name));
    expect(loaded).toEqual([
      fn({ name: 'alpha', version: 2, env: {}, limits: { memoryMB: 512, timeoutMs: 100, concurrency: 8 } }),
      fn({ name: 'beta', version: 1, runtime: 'image', image: 'example/beta:1', code: '', codeHash: '' }),
      fn({ name: 'gamma', version: 2, code: '', deleted: true }),
    ]);
  });

  it('keeps the event loop turning while a query runs', async () => {
    let turned = false;
    const query = storage.loadFunctions().then(() => turned);
    setImmediate(() => {
      turned = true;
    });
    expect(await query).toBe(true);
  });

  it('passes checkWritable on a migrated database', async () => {
    await expect(storage.checkWritable()).resolves.toBeUndefined();
  });

  it('writes pending records on close()', async () => {
    storage.recordInvocation(invocation({ id: 'close-1', function: 'closing' }));
    storage.recordLogs([{ invocationId: 'close-1', function: 'closing', containerId: 'c-1', timeMs: NOW, stream: 'stdout', line: 'bye', truncated: false }]);
    expect(storage.stats().pendingRows).toBe(2);
    await storage.close();
    await storage.close();
    await expect(storage.listInvocations()).rejects.toMatchObject({ code: 'STORAGE_UNAVAILABLE' });
    storage = await openStorage(options);
    const found = await storage.getInvocation('close-1');
    expect(found?.record.id).toBe('close-1');
    expect(found?.logs.map((l) => l.line)).toEqual(['bye']);
  });

  it('migrates a version-2 database: invocations gains create_us after init_us, 0 for the rows it had', async () => {
    const database = `${options.database}_v2`;
    // chDB allows one session per process: DDL goes through the open storage, which is then closed.
    const ddl = async (sql: string): Promise<void> => (name === 'server' ? serverQuery(sql) : void (await storage.query(sql)));
    await ddl(`CREATE DATABASE ${database}`);
    await ddl(`CREATE TABLE ${database}.schema_migrations (version UInt32, name String, applied_at_ms UInt64) ENGINE = ReplacingMergeTree(applied_at_ms) ORDER BY version`);
    await ddl(`INSERT INTO ${database}.schema_migrations VALUES (1, 'v1', 1), (2, 'v2', 2)`);
    const v2Columns = 'id String, namespace String, function String, version UInt32, executor String, container_id String, trigger String, attempt UInt16, status String, error_code String, http_status UInt16, start String, received_at_ms UInt64, queued_at_ms UInt64, started_at_ms UInt64, finished_at_ms UInt64, queue_us UInt64, init_us UInt64, run_us UInt64, total_us UInt64, request_bytes UInt64, response_bytes UInt64, trace_id String';
    await ddl(`CREATE TABLE ${database}.invocations (${v2Columns}) ENGINE = ReplacingMergeTree(finished_at_ms) PARTITION BY toYYYYMM(toDateTime(intDiv(received_at_ms, 1000))) ORDER BY (function, received_at_ms, id, attempt)`);
    await ddl(`INSERT INTO ${database}.invocations VALUES ('v2-1', 'default', 'legacy2', 1, 'n', 'c', 'sync', 1, 'ok', '', 200, 'cold', ${NOW}, ${NOW + 1}, ${NOW + 2}, ${NOW + 9}, 10, 700000, 5000, 9000, 1, 2, '')`);
    if (name === 'chdb') await storage.close();
    const migrated = await openStorage({ ...options, database, spoolDir: `${options.spoolDir}-v2` });
    try {
      // Only the tables a version-2 invocations needs exist here: read through the list, not getInvocation (logs).
      const [old] = (await migrated.listInvocations({ function: 'legacy2' })).records;
      expect(old).toMatchObject({ id: 'v2-1', initUs: 700_000, createUs: 0, runUs: 5000 });
      const columns = await migrated.query(`SELECT name FROM system.columns WHERE database = '${database}' AND table = 'invocations' AND name IN ('init_us', 'create_us', 'run_us')`); // in table order (18.16 has no position column)
      expect(columns).toEqual([{ name: 'init_us' }, { name: 'create_us' }, { name: 'run_us' }]);
      expect(await migrated.query(`SELECT version FROM ${database}.schema_migrations ORDER BY version LIMIT 1 BY version`)).toEqual([{ version: 1 }, { version: 2 }, { version: 3 }]);
      migrated.recordInvocation(invocation({ id: 'v2-2', function: 'legacy2', start: 'cold', initUs: 800_000, createUs: 450_000 }));
      await migrated.flush();
      expect((await migrated.listInvocations({ function: 'legacy2' })).records.map(({ id, initUs, createUs }) => ({ id, initUs, createUs }))).toEqual([
        { id: 'v2-2', initUs: 800_000, createUs: 450_000 },
        { id: 'v2-1', initUs: 700_000, createUs: 0 },
      ]);
      await migrated.migrate();
    } finally {
      await migrated.close();
      if (name === 'server') await serverQuery(`DROP DATABASE IF EXISTS ${database}`);
      await rm(`${options.spoolDir}-v2`, { recursive: true, force: true });
      if (name === 'chdb') storage = await openStorage(options);
    }
  });

  // Server only: dropping the database under a live storage needs a second client, which chDB's
  // one-session-per-process rule does not allow.
  if (name !== 'server') return;

  it('spools a batch ClickHouse refused on every attempt and replays it once the database is back', async () => {
    await serverQuery(`DROP DATABASE ${options.database}`);
    storage.recordInvocation(invocation({ id: 'outage-1', function: 'outage' }));
    await storage.flush();
    expect(storage.stats()).toMatchObject({ batchesSpooled: 1, retries: 2, spooledBatches: 1, spooledRows: 1, droppedRows: 0 });
    expect(storage.stats().spooledBytes).toBeGreaterThan(0);
    await storage.migrate();
    await storage.drain();
    expect(storage.stats()).toMatchObject({ spooledBatches: 0, spooledBytes: 0, droppedRows: 0 });
    expect((await storage.listInvocations({ function: 'outage' })).records.map((r) => r.id)).toEqual(['outage-1']);
  });

  it('replays the spool of a process killed with SIGKILL while spooling, each record once', async () => {
    const database = `${options.database}_killed`;
    const spoolDir = `${options.spoolDir}-killed`;
    const child = spawn(process.execPath, ['--import', 'tsx', path.join(import.meta.dirname, 'fixtures/spool-child.ts'), SERVER_URL, database, spoolDir], { stdio: ['pipe', 'pipe', 'inherit'] });
    const lines = createInterface({ input: child.stdout! });
    const nextLine = () => new Promise<string>((resolve, reject) => {
      lines.once('line', resolve);
      child.once('exit', (code) => reject(new Error(`spool child exited (${code})`)));
    });
    try {
      expect(await nextLine()).toBe('open');
      await serverQuery(`DROP DATABASE ${database}`);
      child.stdin!.write('go 1000\n');
      const spooled = JSON.parse((await nextLine()).slice('spooled '.length)) as { spooledRows: number; droppedRows: number };
      expect(spooled).toMatchObject({ spooledRows: 1000, droppedRows: 0 });
      // A half-written batch of a crash mid-write is a .tmp file: the next open must ignore it.
      await writeFile(path.join(spoolDir, '99999999999999-00000001-torn.invocations.5.jsonl.gz.tmp'), 'torn');
    } finally {
      child.kill('SIGKILL');
      if (child.exitCode === null && child.signalCode === null) await once(child, 'exit');
    }
    const restarted = await openStorage({ ...options, database, spoolDir });
    try {
      await restarted.drain();
      expect(restarted.stats()).toMatchObject({ spooledBatches: 0, droppedRows: 0, recordsWritten: 1000 });
      expect(await restarted.query(`SELECT count() AS rows, uniqExact(id) AS ids FROM ${database}.invocations WHERE function = 'killed'`)).toEqual([{ rows: '1000', ids: '1000' }]);
    } finally {
      await restarted.close();
      await serverQuery(`DROP DATABASE IF EXISTS ${database}`);
      await rm(spoolDir, { recursive: true, force: true });
    }
  });

  it('migrates a version-1 database: invocations re-sorted by function and time, rows kept, new timestamps filled', async () => {
    const database = `${options.database}_v1`;
    await serverQuery(`CREATE DATABASE ${database}`);
    await serverQuery(`CREATE TABLE ${database}.schema_migrations (version UInt32, name String, applied_at_ms UInt64) ENGINE = ReplacingMergeTree(applied_at_ms) ORDER BY version`);
    await serverQuery(`INSERT INTO ${database}.schema_migrations VALUES (1, 'v1', 1)`);
    const v1Columns = 'id String, namespace String, function String, version UInt32, executor String, container_id String, trigger String, attempt UInt16, status String, error_code String, http_status UInt16, start String, received_at_ms UInt64, finished_at_ms UInt64, queue_us UInt64, init_us UInt64, run_us UInt64, total_us UInt64, request_bytes UInt64, response_bytes UInt64, trace_id String';
    await serverQuery(`CREATE TABLE ${database}.invocations (${v1Columns}) ENGINE = ReplacingMergeTree(finished_at_ms) PARTITION BY toYYYYMM(toDateTime(intDiv(received_at_ms, 1000))) ORDER BY (function, id)`);
    await serverQuery(`INSERT INTO ${database}.invocations VALUES ('old-1', 'default', 'legacy', 1, 'n', 'c', 'sync', 1, 'ok', '', 200, 'warm', ${NOW}, ${NOW + 9}, 0, 0, 5000, 9000, 1, 2, '')`);
    const migrated = await openStorage({ ...options, database, spoolDir: `${options.spoolDir}-v1` });
    try {
      const [rec] = (await migrated.listInvocations({ function: 'legacy' })).records;
      expect(rec).toMatchObject({ id: 'old-1', receivedAtMs: NOW, queuedAtMs: NOW, startedAtMs: NOW, finishedAtMs: NOW + 9 });
      expect(await migrated.query(`SELECT version FROM ${database}.schema_migrations ORDER BY version`)).toEqual([{ version: 1 }, { version: 2 }, { version: 3 }]);
      expect(await migrated.query(`SELECT name FROM system.tables WHERE database = '${database}' AND name LIKE 'invocations%'`)).toEqual([{ name: 'invocations' }]);
      await migrated.migrate();
    } finally {
      await migrated.close();
      await serverQuery(`DROP DATABASE IF EXISTS ${database}`);
      await rm(`${options.spoolDir}-v1`, { recursive: true, force: true });
    }
  });

  it('rejects openStorage with STORAGE_UNAVAILABLE when the server is unreachable', async () => {
    await expect(openStorage({ ...options, clickhouseUrl: 'http://127.0.0.1:1' })).rejects.toMatchObject({ code: 'STORAGE_UNAVAILABLE' });
  });
});
