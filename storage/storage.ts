/**
 * ClickHouseStorage: a batcher and a writer per table for what happened (invocations, logs,
 * container events), direct writes for the function registry, and the queries the gateway
 * answers from. Backend-agnostic. Records flow push → batcher (seal by rows, bytes, time) →
 * writer (encode in a worker, insert with retries, spool on outage, replay oldest first).
 */
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { pino, type Logger } from 'pino';
import { countLogRows, type ContainerEvent, type LogLine } from '../bus/index.ts';
import type { SkiffConfig } from '../config.ts';
import type { Backend } from './backend.ts';
import { Batcher } from './batcher.ts';
import { openChdbBackend } from './chdb-backend.ts';
import { Encoder, HAND_OFF_STAGE_ROWS, handOffRecords, type HandOff } from './encoder.ts';
import { toStorageError } from './errors.ts';
import { migrate } from './migrate.ts';
import {
  clampLimit,
  encodeCursor,
  functionStatsSql,
  getInvocationSql,
  invocationLogsSql,
  latestFunctionsSql,
  listContainerEventsSql,
  listInvocationsSql,
  writeProbeSql,
} from './queries.ts';
import type { RecordOf, Row, StoredContainerEvent, StoredLogLine } from './rows.ts';
import { columnNames, type TableName } from './schema.ts';
import { openServerBackend } from './server-backend.ts';
import { isThreadNice, MAX_THREAD_NICE } from './thread-priority.ts';
import { Spool } from './spool.ts';
import type {
  ContainerEventQuery,
  FunctionStats,
  InvocationPage,
  InvocationQuery,
  InvocationRecord,
  LogRow,
  Percentiles,
  Storage,
  StorageCluster,
  StorageOptions,
  StorageStats,
  StoredFunction,
  TableStats,
} from './types.ts';
import { TableWriter } from './writer.ts';

/** Waits between the insert attempts of a live batch (4 attempts, ~3 s in all), then it is spooled. */
const DEFAULT_RETRY_DELAYS_MS = [100, 500, 2500] as const;
/** The spool replay backs off up to this while ClickHouse stays down. */
const DEFAULT_REPLAY_MAX_DELAY_MS = 5000;
/** Replays of a batch ClickHouse keeps refusing (not an outage, not bad rows) before it is set aside. */
const DEFAULT_REPLAY_MAX_ATTEMPTS = 10;
/** Storage threads' nice value unless told (config.ts storage.threadNice). */
const DEFAULT_THREAD_NICE = 5;
/** Inserts per table in flight at once: one encodes while another is on the wire. */
const WRITER_CONCURRENCY = 2;
/** Size estimates per row (bytes of JSON besides the variable strings), for maxBatchBytes. */
const ROW_OVERHEAD_BYTES = { invocations: 480, logs: 200, container_events: 220 } as const;

const LOG_COLUMNS = columnNames('logs');

/** Why encoded log rows cannot be queued as they are, or '' when they can. */
function logRowsProblem(columns: readonly string[], body: Buffer): string {
  if (!Array.isArray(columns)) return 'log rows without their column list';
  if (columns.length !== LOG_COLUMNS.length || columns.some((c, i) => c !== LOG_COLUMNS[i])) {
    return `log rows in columns (${columns.join(', ')}) where the logs table has (${LOG_COLUMNS.join(', ')})`;
  }
  if (body.length > 0 && body[body.length - 1] !== 0x0a) return 'log rows whose last one has no newline';
  return '';
}

type BatchedTable = 'invocations' | 'logs' | 'container_events';
const BATCHED_TABLES: readonly BatchedTable[] = ['invocations', 'logs', 'container_events'];

interface Lane<T> {
  batcher: Batcher<T, HandOff>;
  writer: TableWriter;
}

class ClickHouseStorage implements Storage {
  readonly #backend: Backend;
  readonly #database: string;
  readonly #cluster: StorageOptions['cluster'];
  readonly #logger: Logger;
  readonly #encoder: Encoder;
  readonly #spool: Spool;
  readonly #invocations: Lane<InvocationRecord>;
  readonly #logs: Lane<StoredLogLine>;
  readonly #events: Lane<StoredContainerEvent>;
  /** Prefix of this process's log-line and event ids: ids stay unique across gateways and restarts. */
  readonly #writerId = randomBytes(6).toString('hex');
  #seq = 0;
  #spoolDropped = 0;
  #migrating: Promise<void> | undefined;
  #closed: Promise<void> | undefined;

  constructor(backend: Backend, options: StorageOptions, logger: Logger, encoder: Encoder, spool: Spool) {
    this.#backend = backend;
    this.#database = options.database;
    this.#cluster = options.cluster;
    this.#logger = logger;
    this.#encoder = encoder;
    this.#spool = spool;
    const lane = <T>(table: BatchedTable, sizeOf: (row: T) => number): Lane<T> => {
      const writer = new TableWriter({
        table,
        backend,
        encoder,
        spool,
        logger,
        retryDelaysMs: options.retryDelaysMs ?? DEFAULT_RETRY_DELAYS_MS,
        replayMaxDelayMs: options.replayMaxDelayMs ?? DEFAULT_REPLAY_MAX_DELAY_MS,
        replayMaxAttempts: options.replayMaxAttempts ?? DEFAULT_REPLAY_MAX_ATTEMPTS,
        maxQueuedBatches: options.maxQueuedBatches,
        concurrency: WRITER_CONCURRENCY,
        compressInserts: options.backend === 'server' && !isLoopback(options.clickhouseUrl),
      });
      const batcher = new Batcher<T, HandOff>({
        name: table,
        maxBatchRows: options.maxBatchRows,
        maxBatchBytes: options.maxBatchBytes,
        flushIntervalMs: options.flushIntervalMs,
        sizeOf,
        stage: { rows: HAND_OFF_STAGE_ROWS, run: (rows) => handOffRecords(table, rows as unknown as RecordOf[TableName][]) },
        bytesSlice: (bytes, rows) => ({ rows, chunks: [], encoded: [{ body: bytes, rows }] }),
        submit: (rows, staged, stagedRows) => writer.submitStaged(rows as unknown as RecordOf[TableName][], staged, stagedRows),
        onDrop: (info) => logger.error(info, 'storage dropped rows'),
      });
      return { batcher, writer };
    };
    this.#invocations = lane<InvocationRecord>('invocations', (r) => ROW_OVERHEAD_BYTES.invocations + r.id.length + r.function.length + r.traceId.length);
    this.#logs = lane<StoredLogLine>('logs', (r) => ROW_OVERHEAD_BYTES.logs + r.line.length + r.invocationId.length + r.function.length);
    this.#events = lane<StoredContainerEvent>('container_events', (r) => ROW_OVERHEAD_BYTES.container_events + r.detail.length);
  }

  /** Counts rows the spool deleted to stay within its bound. */
  countSpoolDrop(rows: number): void {
    this.#spoolDropped += rows;
  }

  /** Starts replaying batches earlier runs left in the spool. */
  startReplay(): void {
    for (const lane of this.#lanes()) lane.writer.replay();
  }

  #lanes(): [Lane<InvocationRecord>, Lane<StoredLogLine>, Lane<StoredContainerEvent>] {
    return [this.#invocations, this.#logs, this.#events];
  }

  migrate(): Promise<void> {
    const run = (this.#migrating ?? Promise.resolve()).then(() => migrate(this.#backend, { database: this.#database, cluster: this.#cluster }, this.#logger));
    this.#migrating = run.catch(() => undefined);
    return run;
  }

  recordInvocation(rec: InvocationRecord): void {
    try {
      this.#invocations.batcher.push([rec]);
    } catch (err) {
      this.#logger.error({ err }, 'storage could not queue an invocation record');
    }
  }

  recordLogs(lines: LogLine[]): void {
    try {
      // Field by field, not a spread: spreading took ~3 µs a line (V8's generic copy) and most of ingest's GC.
      this.#logs.batcher.push(
        lines.map((l) => {
          const { seq, lineId } = this.#nextId();
          return { invocationId: l.invocationId, function: l.function, containerId: l.containerId, timeMs: l.timeMs, stream: l.stream, line: l.line, truncated: l.truncated, seq, lineId } satisfies StoredLogLine;
        }),
      );
    } catch (err) {
      this.#logger.error({ err }, 'storage could not queue log lines');
    }
  }

  recordLogRows(columns: readonly string[], body: Buffer): void {
    try {
      const problem = logRowsProblem(columns, body);
      if (problem) {
        void this.#logs.writer.refuse(problem, body.toString('utf8').split('\n').filter((row) => row !== ''));
        return;
      }
      const rows = countLogRows(body);
      this.#logs.batcher.pushBytes(body, rows);
    } catch (err) {
      this.#logger.error({ err }, 'storage could not queue log rows');
    }
  }

  recordContainerEvents(events: ContainerEvent[]): void {
    try {
      this.#events.batcher.push(events.map((event) => ({ ...event, eventId: this.#nextId().lineId }) satisfies StoredContainerEvent));
    } catch (err) {
      this.#logger.error({ err }, 'storage could not queue container events');
    }
  }

  #nextId(): { seq: number; lineId: string } {
    const seq = ++this.#seq;
    return { seq, lineId: `${this.#writerId}-${seq}` };
  }

  async saveFunction(fn: StoredFunction): Promise<void> {
    await this.#backend.insert('functions', [fn]);
  }

  loadFunctions(): Promise<StoredFunction[]> {
    return this.#backend.select('functions', latestFunctionsSql(this.#database));
  }

  async listInvocations(q: InvocationQuery = {}): Promise<InvocationPage> {
    const limit = clampLimit(q.limit);
    const rows = await this.#backend.select('invocations', listInvocationsSql(this.#database, q));
    const records = rows.slice(0, limit);
    return { records, nextCursor: rows.length > limit ? encodeCursor(records[records.length - 1]) : null };
  }

  async functionStats(fn: string, sinceMs: number, untilMs: number = Date.now() + 1): Promise<FunctionStats> {
    const [row = {}] = await this.#backend.rows(functionStatsSql(this.#database, fn, sinceMs, untilMs));
    const num = (key: string): number => Number(row[key] ?? 0) || 0;
    const percentiles = (key: string): Percentiles => {
      const value = (row as Record<string, unknown>)[key];
      const [p50 = 0, p95 = 0, p99 = 0] = Array.isArray(value) ? value.map((v) => Number(v) || 0) : [];
      return { p50, p95, p99 };
    };
    const count = num('count');
    const rate = (n: number): number => (count === 0 ? 0 : n / count);
    const statuses = { ok: num('ok'), error: num('error'), timeout: num('timeout'), rejected: num('rejected') };
    return {
      function: fn,
      sinceMs,
      untilMs,
      count,
      statuses,
      errorRate: rate(statuses.error + statuses.timeout),
      coldStarts: num('cold'),
      coldStartRate: rate(num('cold')),
      totalUs: count === 0 ? { p50: 0, p95: 0, p99: 0 } : percentiles('total_us'),
      runUs: count === 0 ? { p50: 0, p95: 0, p99: 0 } : percentiles('run_us'),
      requestBytes: num('request_bytes'),
      responseBytes: num('response_bytes'),
    };
  }

  /** Any SELECT, for tests and operators' tools: rows as ClickHouse sent them. */
  query(sql: string): Promise<Row[]> {
    return this.#backend.rows(sql);
  }

  async getInvocation(id: string): Promise<{ record: InvocationRecord; logs: LogRow[] } | null> {
    const [record] = await this.#backend.select('invocations', getInvocationSql(this.#database, id));
    if (record === undefined) return null;
    const lines = await this.#backend.select('logs', invocationLogsSql(this.#database, id, record.function));
    const logs = lines.map(({ invocationId, function: fn, containerId, timeMs, stream, line, truncated }) => ({
      invocationId,
      function: fn,
      containerId,
      timeMs,
      stream,
      line,
      truncated,
    }));
    return { record, logs };
  }

  async listContainerEvents(q: ContainerEventQuery = {}): Promise<ContainerEvent[]> {
    const events = await this.#backend.select('container_events', listContainerEventsSql(this.#database, q));
    return events.map(({ eventId: _eventId, ...event }) => event);
  }

  async flush(): Promise<void> {
    await Promise.all(this.#lanes().map((lane) => lane.batcher.flush()));
  }

  async drain(): Promise<void> {
    if (this.#closed) throw toStorageError(new Error('storage is closed'), 'drain');
    await this.flush();
    await Promise.all(this.#lanes().map((lane) => lane.writer.whenIdle()));
  }

  async checkWritable(): Promise<void> {
    await this.#backend.command(writeProbeSql(this.#database));
  }

  stats(): StorageStats {
    const tables = {} as Record<BatchedTable, TableStats>;
    for (const [i, lane] of this.#lanes().entries()) {
      const table = BATCHED_TABLES[i];
      const w = lane.writer.stats();
      const b = lane.batcher.stats();
      const spooledRows = this.#spool.rows(table);
      tables[table] = {
        recordsWritten: w.recordsWritten,
        batchesWritten: w.batchesWritten,
        retries: w.retries,
        batchesSpooled: w.batchesSpooled,
        batchesReplayed: w.batchesReplayed,
        deadLetteredRows: w.deadLetteredRows,
        deadLetteredBatches: w.deadLetteredBatches,
        droppedRows: w.droppedRows + b.droppedRows,
        pendingRows: b.pendingRows,
        queuedBatches: w.queuedBatches,
        spooledBatches: this.#spool.count(table),
        spooledRows,
      };
    }
    const all = Object.values(tables);
    const sum = (key: keyof TableStats): number => all.reduce((total, t) => total + t[key], 0);
    return {
      recordsWritten: sum('recordsWritten'),
      batchesWritten: sum('batchesWritten'),
      retries: sum('retries'),
      batchesSpooled: sum('batchesSpooled'),
      batchesReplayed: sum('batchesReplayed'),
      deadLetteredRows: sum('deadLetteredRows'),
      deadLetteredBatches: sum('deadLetteredBatches'),
      droppedRows: sum('droppedRows') + this.#spoolDropped,
      pendingRows: sum('pendingRows'),
      queuedBatches: sum('queuedBatches'),
      spooledBatches: sum('spooledBatches'),
      spooledRows: sum('spooledRows'),
      spooledBytes: this.#spool.bytes,
      spoolDir: this.#spool.dir,
      tables,
    };
  }

  /**
   * Seals and writes (or spools) everything pending, then releases the encoder and the backend;
   * idempotent. Batches still in the spool stay there for the next open.
   */
  close(): Promise<void> {
    this.#closed ??= (async () => {
      try {
        await Promise.all(this.#lanes().map((lane) => lane.batcher.close()));
        await Promise.all(this.#lanes().map((lane) => lane.writer.close()));
        const left = this.#spool.count();
        if (left > 0) this.#logger.warn({ spooledBatches: left, spoolDir: this.#spool.dir }, 'storage closed with batches in the spool; they replay at the next start');
      } finally {
        await this.#encoder.close().catch((err: unknown) => this.#logger.warn({ err }, 'storage encoder did not close cleanly'));
        await this.#backend.close().catch((err: unknown) => this.#logger.warn({ err }, 'storage backend did not close cleanly'));
      }
    })();
    return this.#closed;
  }
}

/**
 * gzip costs more CPU (here and in ClickHouse) than it saves on a loopback connection; across a
 * network it pays. Spooled batches are compressed either way.
 */
function isLoopback(url: string): boolean {
  const host = new URL(url).hostname;
  return host === 'localhost' || host === '[::1]' || host === '::1' || /^127\./.test(host);
}

const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]*$/;

function validate(options: StorageOptions): void {
  if (options.backend !== 'chdb' && options.backend !== 'server') throw new TypeError(`storage backend must be 'chdb' or 'server', got "${String(options.backend)}"`);
  if (!IDENTIFIER.test(options.database)) throw new TypeError('storage.database must be a plain identifier');
  if (!Number.isInteger(options.maxBatchRows) || options.maxBatchRows <= 0) throw new TypeError('storage.maxBatchRows must be a positive integer');
  if (!Number.isInteger(options.flushIntervalMs) || options.flushIntervalMs <= 0) throw new TypeError('storage.flushIntervalMs must be a positive integer');
  if (!Number.isInteger(options.maxBatchBytes) || options.maxBatchBytes <= 0) throw new TypeError('storage.maxBatchBytes must be a positive integer');
  if (!Number.isInteger(options.maxQueuedBatches) || options.maxQueuedBatches <= 0) throw new TypeError('storage.maxQueuedBatches must be a positive integer');
  if (!Number.isInteger(options.spoolMaxBytes) || options.spoolMaxBytes <= 0) throw new TypeError('storage.spoolMaxBytes must be a positive integer');
  if (options.replayMaxAttempts !== undefined && (!Number.isInteger(options.replayMaxAttempts) || options.replayMaxAttempts <= 0)) throw new TypeError('storage.replayMaxAttempts must be a positive integer');
  if (options.threadNice !== undefined && !isThreadNice(options.threadNice)) {
    throw new TypeError(`storage.threadNice must be an integer 0..${MAX_THREAD_NICE}`);
  }
  if (options.spoolDir === '') throw new TypeError('storage spoolDir must be a directory path');
  if (options.backend === 'server' && !/^https?:\/\//.test(options.clickhouseUrl)) throw new TypeError('storage.clickhouseUrl must be an http(s) URL for the server backend');
  if (options.backend === 'chdb' && options.dataDir === '') throw new TypeError('storage dataDir must be a directory path for the chdb backend');
  if (options.cluster) validateCluster(options.cluster, options.backend);
}

/** The rules config.ts applies to storage.cluster, for options built by code; the path and names go into DDL as they are. */
function validateCluster(cluster: StorageCluster, backend: StorageOptions['backend']): void {
  if (backend !== 'server') throw new TypeError('storage.cluster.name needs storage.clickhouseUrl: chDB is one embedded server');
  if (!/^[A-Za-z_][A-Za-z0-9_.-]*$/.test(cluster.name)) throw new TypeError('storage.cluster.name must be a cluster name of <remote_servers> (letters, digits, _ . -)');
  if (!/^(\/[A-Za-z0-9_.{}-]+)+$/.test(cluster.zooKeeperPath) || !cluster.zooKeeperPath.includes('{shard}') || !cluster.zooKeeperPath.includes('{table}')) {
    throw new TypeError('storage.cluster.zooKeeperPath must be a ZooKeeper path of letters, digits, _ . - and {macros} containing {shard} and {table}');
  }
  if (!/^[A-Za-z0-9_.{}-]+$/.test(cluster.replicaName)) throw new TypeError('storage.cluster.replicaName must be a replica name or macro such as {replica}');
}

/**
 * Opens storage on chDB (embedded, under options.dataDir) or a ClickHouse server, and migrates
 * the schema. Rejects with SkiffError STORAGE_UNAVAILABLE when ClickHouse cannot be reached.
 */
export async function openStorage(options: StorageOptions): Promise<Storage> {
  validate(options);
  const logger = (options.logger ?? pino({ level: 'silent' })).child({ component: 'storage', backend: options.backend });
  let storage: ClickHouseStorage | undefined;
  const spool = await Spool.open(options.spoolDir, options.spoolMaxBytes, (entry) => {
    logger.error({ table: entry.table, batchId: entry.batchId, rows: entry.rows, spoolMaxBytes: options.spoolMaxBytes }, 'storage spool is full: dropped its oldest batch');
    storage?.countSpoolDrop(entry.rows);
  });
  const threadNice = options.threadNice ?? DEFAULT_THREAD_NICE;
  const backend = options.backend === 'chdb' ? await openChdbBackend(options.dataDir, options.database, threadNice) : openServerBackend(options.clickhouseUrl, options.database);
  const encoder = new Encoder(threadNice);
  storage = new ClickHouseStorage(backend, options, logger, encoder, spool);
  try {
    await storage.migrate();
  } catch (err) {
    await encoder.close().catch(() => undefined);
    await backend.close().catch(() => undefined);
    throw toStorageError(err, 'migration');
  }
  if (spool.count() > 0) logger.warn({ spooledBatches: spool.count(), spooledBytes: spool.bytes, spoolDir: spool.dir }, 'storage replays batches left in the spool');
  storage.startReplay();
  return storage;
}

/** Storage options from Skiff's config: a ClickHouse server when storage.clickhouseUrl is set, else chDB under dataDir/chdb. */
export function storageOptionsFromConfig(config: SkiffConfig): StorageOptions {
  const { clickhouseUrl, database, flushIntervalMs, maxBatchRows, maxBatchBytes, maxQueuedBatches, spoolMaxBytes, replayMaxAttempts, threadNice } = config.storage;
  const { cluster } = config.storage;
  return {
    backend: clickhouseUrl ? 'server' : 'chdb',
    dataDir: path.join(config.dataDir, 'chdb'),
    clickhouseUrl,
    database,
    cluster: cluster.name === '' ? undefined : { ...cluster },
    flushIntervalMs,
    maxBatchRows,
    maxBatchBytes,
    maxQueuedBatches,
    spoolDir: path.join(config.dataDir, 'spool', database),
    spoolMaxBytes,
    replayMaxAttempts,
    threadNice,
  };
}
