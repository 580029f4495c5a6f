/**
 * Storage on real ClickHouse, both backends: chDB in a temp directory, and the ClickHouse server
 * started by scripts/start-clickhouse.sh with a database unique to this run.
 */
import { execFileSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ContainerEvent, LogLine } from '../../bus/messages.ts';
import { SkiffError } from '../../errors.ts';
import { openStorage, type InvocationRecord, type Storage, type StorageOptions, type StoredFunction } from '../../storage/index.ts';

const SERVER_URL = 'http://127.0.0.1:8123';
const repoRoot = path.resolve(import.meta.dirname, '../..');
const runId = `${Date.now()}_${process.pid}`;

async function serverQuery(sql: string): Promise<void> {
  const res = await fetch(SERVER_URL, { method: 'POST', body: sql });
  if (!res.ok) throw new Error(await res.text());
}

interface BackendCase {
  name: 'chdb' | 'server';
  setup(): Promise<StorageOptions>;
  teardown(options: StorageOptions): Promise<void>;
}

const base = { clickhouseUrl: '', dataDir: '', database: `skiff_test_${runId}`, maxBatchRows: 1000, flushIntervalMs: 60_000, retryDelaysMs: [1, 1] };

const BACKENDS: BackendCase[] = [
  {
    name: 'chdb',
    setup: async () => ({ ...base, backend: 'chdb', dataDir: await mkdtemp(path.join(os.tmpdir(), 'skiff-chdb-')) }),
    teardown: (options) => rm(options.dataDir, { recursive: true, force: true }),
  },
  {
    name: 'server',
    setup: async () => {
      execFileSync('bash', [path.join(repoRoot, 'scripts/start-clickhouse.sh')], { stdio: 'inherit' });
      return { ...base, backend: 'server', clickhouseUrl: SERVER_URL };
    },
    teardown: (options) => serverQuery(`DROP DATABASE IF EXISTS ${options.database}`),
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
    finishedAtMs: NOW + 12,
    queueUs: 150,
    initUs: 0,
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
    expect((await storage.listInvocations({ function: 'migrate' })).map((r) => r.id)).toEqual(['migrate-1']);
  });

  it('round-trips an invocation record with every field', async () => {
    const rec = invocation({ id: "round'trip\\1", function: 'round-trip', trigger: 'async', attempt: 2, status: 'error', errorCode: 'FUNCTION_CRASHED', httpStatus: 502, start: 'stemcell' });
    storage.recordInvocation(rec);
    await storage.flush();
    expect(await storage.listInvocations({ function: 'round-trip' })).toEqual([rec]);
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
    expect(await storage.listInvocations({ function: 'twice' })).toEqual([rec]);
    expect((await storage.getInvocation('twice-1'))?.record).toEqual(rec);
  });

  it('shows only the newest version of a retried invocation, also under a status filter', async () => {
    storage.recordInvocation(invocation({ id: 'retry-1', function: 'retried', attempt: 1, status: 'error', errorCode: 'FUNCTION_CRASHED', finishedAtMs: NOW + 10 }));
    await storage.flush();
    const final = invocation({ id: 'retry-1', function: 'retried', attempt: 2, status: 'ok', finishedAtMs: NOW + 20 });
    storage.recordInvocation(final);
    await storage.flush();
    expect(await storage.listInvocations({ function: 'retried' })).toEqual([final]);
    expect(await storage.listInvocations({ function: 'retried', status: 'error' })).toEqual([]);
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
    const ids = async (q: Parameters<Storage['listInvocations']>[0]) => (await storage.listInvocations(q)).map((r) => r.id);
    expect(await ids({ function: 'filter-a' })).toEqual(['f-3', 'f-2', 'f-1']);
    expect(await ids({ function: 'filter-a', status: 'ok' })).toEqual(['f-3', 'f-1']);
    expect(await ids({ function: 'filter-a', limit: 2 })).toEqual(['f-3', 'f-2']);
    expect(await ids({ status: 'timeout' })).toEqual(['f-2']);
    expect((await ids({})).length).toBeGreaterThanOrEqual(4);
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

  // Server only: dropping the database under a live storage needs a second client, which chDB's
  // one-session-per-process rule does not allow.
  if (name !== 'server') return;

  it('keeps a batch that failed every attempt and writes it once the database is back', async () => {
    await serverQuery(`DROP DATABASE ${options.database}`);
    storage.recordInvocation(invocation({ id: 'outage-1', function: 'outage' }));
    const failure = await storage.flush().catch((err: unknown) => err);
    expect(failure).toBeInstanceOf(SkiffError);
    expect((failure as SkiffError).code).toBe('STORAGE_UNAVAILABLE');
    expect(storage.stats()).toMatchObject({ failedBatches: 1, retries: 2, pendingRows: 1 });
    await storage.migrate();
    await storage.flush();
    expect((await storage.listInvocations({ function: 'outage' })).map((r) => r.id)).toEqual(['outage-1']);
  });

  it('rejects openStorage with STORAGE_UNAVAILABLE when the server is unreachable', async () => {
    await expect(openStorage({ ...options, clickhouseUrl: 'http://127.0.0.1:1' })).rejects.toMatchObject({ code: 'STORAGE_UNAVAILABLE' });
  });
});
