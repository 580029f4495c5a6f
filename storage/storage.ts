/**
 * ClickHouseStorage: batchers for what happened (invocations, logs, container events), direct
 * writes for the function registry, and the queries the gateway answers from. Backend-agnostic.
 */
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { pino, type Logger } from 'pino';
import type { ContainerEvent, LogLine } from '../bus/messages.ts';
import type { SkiffConfig } from '../config.ts';
import type { Backend } from './backend.ts';
import { Batcher } from './batcher.ts';
import { openChdbBackend } from './chdb-backend.ts';
import { toStorageError } from './errors.ts';
import { migrate } from './migrate.ts';
import {
  getInvocationSql,
  invocationLogsSql,
  latestFunctionsSql,
  listContainerEventsSql,
  listInvocationsSql,
  writeProbeSql,
} from './queries.ts';
import type { StoredContainerEvent, StoredLogLine } from './rows.ts';
import { openServerBackend } from './server-backend.ts';
import type {
  ContainerEventQuery,
  InvocationQuery,
  InvocationRecord,
  LogRow,
  Storage,
  StorageOptions,
  StorageStats,
  StoredFunction,
} from './types.ts';

/** Waits between the attempts of a failing batch (4 attempts, ~3 s in all). */
const DEFAULT_RETRY_DELAYS_MS = [100, 500, 2500] as const;
/** Batches' worth of rows kept per table while ClickHouse is failing. */
const MAX_PENDING_BATCHES = 10;

class ClickHouseStorage implements Storage {
  readonly #backend: Backend;
  readonly #database: string;
  readonly #logger: Logger;
  readonly #invocations: Batcher<InvocationRecord>;
  readonly #logs: Batcher<StoredLogLine>;
  readonly #events: Batcher<StoredContainerEvent>;
  /** Prefix of this process's log-line and event ids: ids stay unique across gateways and restarts. */
  readonly #writerId = randomBytes(6).toString('hex');
  #seq = 0;
  #migrating: Promise<void> | undefined;
  #closed: Promise<void> | undefined;

  constructor(backend: Backend, options: StorageOptions, logger: Logger) {
    this.#backend = backend;
    this.#database = options.database;
    this.#logger = logger;
    const common = {
      maxBatchRows: options.maxBatchRows,
      flushIntervalMs: options.flushIntervalMs,
      retryDelaysMs: options.retryDelaysMs ?? DEFAULT_RETRY_DELAYS_MS,
      maxPendingRows: options.maxBatchRows * MAX_PENDING_BATCHES,
      onWriteError: (err: unknown, info: { table: string; rows: number; attempt: number; final: boolean }) =>
        logger.warn({ err, ...info }, info.final ? 'storage batch failed every attempt; rows kept for the next flush' : 'storage batch write failed; retrying'),
      onDrop: (info: { table: string; rows: number; reason: 'full' | 'closed' }) => logger.error(info, 'storage dropped rows'),
    };
    this.#invocations = new Batcher({ ...common, name: 'invocations', write: (rows) => backend.insert('invocations', rows) });
    this.#logs = new Batcher({ ...common, name: 'logs', write: (rows) => backend.insert('logs', rows) });
    this.#events = new Batcher({ ...common, name: 'container_events', write: (rows) => backend.insert('container_events', rows) });
  }

  migrate(): Promise<void> {
    const run = (this.#migrating ?? Promise.resolve()).then(() => migrate(this.#backend, this.#database, this.#logger));
    this.#migrating = run.catch(() => undefined);
    return run;
  }

  recordInvocation(rec: InvocationRecord): void {
    try {
      this.#invocations.push([rec]);
    } catch (err) {
      this.#logger.error({ err }, 'storage could not queue an invocation record');
    }
  }

  recordLogs(lines: LogLine[]): void {
    try {
      this.#logs.push(lines.map((line) => ({ ...line, ...this.#nextId() }) satisfies StoredLogLine));
    } catch (err) {
      this.#logger.error({ err }, 'storage could not queue log lines');
    }
  }

  recordContainerEvents(events: ContainerEvent[]): void {
    try {
      this.#events.push(events.map((event) => ({ ...event, eventId: this.#nextId().lineId }) satisfies StoredContainerEvent));
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

  listInvocations(q: InvocationQuery = {}): Promise<InvocationRecord[]> {
    return this.#backend.select('invocations', listInvocationsSql(this.#database, q));
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
    await settleAll([this.#invocations.flush(), this.#logs.flush(), this.#events.flush()], 'flush');
  }

  async checkWritable(): Promise<void> {
    await this.#backend.command(writeProbeSql(this.#database));
  }

  stats(): StorageStats {
    const all = [this.#invocations.stats(), this.#logs.stats(), this.#events.stats()];
    const sum = (key: keyof StorageStats): number => all.reduce((total, s) => total + s[key], 0);
    return {
      recordsWritten: sum('recordsWritten'),
      batchesWritten: sum('batchesWritten'),
      retries: sum('retries'),
      failedBatches: sum('failedBatches'),
      droppedRows: sum('droppedRows'),
      pendingRows: sum('pendingRows'),
    };
  }

  /** Rejects (after releasing the backend) when pending rows could not be written: they are lost. */
  close(): Promise<void> {
    this.#closed ??= (async () => {
      try {
        await settleAll([this.#invocations.close(), this.#logs.close(), this.#events.close()], 'close');
      } catch (err) {
        this.#logger.error({ err, lostRows: this.stats().pendingRows }, 'storage closed with unwritten rows');
        throw err;
      } finally {
        await this.#backend.close().catch((err: unknown) => this.#logger.warn({ err }, 'storage backend did not close cleanly'));
      }
    })();
    return this.#closed;
  }
}

/** Waits for every promise; then throws the first failure as STORAGE_UNAVAILABLE. */
async function settleAll(promises: Promise<void>[], operation: string): Promise<void> {
  const failed = (await Promise.allSettled(promises)).find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw toStorageError(failed.reason, operation);
}

const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]*$/;

function validate(options: StorageOptions): void {
  if (options.backend !== 'chdb' && options.backend !== 'server') throw new TypeError(`storage backend must be 'chdb' or 'server', got "${String(options.backend)}"`);
  if (!IDENTIFIER.test(options.database)) throw new TypeError('storage.database must be a plain identifier');
  if (!Number.isInteger(options.maxBatchRows) || options.maxBatchRows <= 0) throw new TypeError('storage.maxBatchRows must be a positive integer');
  if (!Number.isInteger(options.flushIntervalMs) || options.flushIntervalMs <= 0) throw new TypeError('storage.flushIntervalMs must be a positive integer');
  if (options.backend === 'server' && !/^https?:\/\//.test(options.clickhouseUrl)) throw new TypeError('storage.clickhouseUrl must be an http(s) URL for the server backend');
  if (options.backend === 'chdb' && options.dataDir === '') throw new TypeError('storage dataDir must be a directory path for the chdb backend');
}

/**
 * Opens storage on chDB (embedded, under options.dataDir) or a ClickHouse server, and migrates
 * the schema. Rejects with SkiffError STORAGE_UNAVAILABLE when ClickHouse cannot be reached.
 */
export async function openStorage(options: StorageOptions): Promise<Storage> {
  validate(options);
  const logger = (options.logger ?? pino({ level: 'silent' })).child({ component: 'storage', backend: options.backend });
  const backend = options.backend === 'chdb' ? await openChdbBackend(options.dataDir, options.database) : openServerBackend(options.clickhouseUrl, options.database);
  const storage = new ClickHouseStorage(backend, options, logger);
  try {
    await storage.migrate();
  } catch (err) {
    await backend.close().catch(() => undefined);
    throw toStorageError(err, 'migration');
  }
  return storage;
}

/** Storage options from Skiff's config: a ClickHouse server when storage.clickhouseUrl is set, else chDB under dataDir/chdb. */
export function storageOptionsFromConfig(config: SkiffConfig): StorageOptions {
  const { clickhouseUrl, database, flushIntervalMs, maxBatchRows } = config.storage;
  return {
    backend: clickhouseUrl ? 'server' : 'chdb',
    dataDir: path.join(config.dataDir, 'chdb'),
    clickhouseUrl,
    database,
    flushIntervalMs,
    maxBatchRows,
  };
}
