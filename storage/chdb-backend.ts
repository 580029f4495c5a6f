/**
 * Embedded ClickHouse: every chDB call runs in one piscina worker that owns the Session, so the
 * blocking engine never runs on the event loop.
 */
import { mkdir } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { Piscina } from 'piscina';
import { SkiffError } from '../errors.ts';
import type { Backend, EncodedBatch } from './backend.ts';
import type { ChdbReply, ChdbTask, ChdbWorkerData } from './chdb-worker.ts';
import { toStorageError } from './errors.ts';
import type { RecordOf, Row } from './rows.ts';
import type { TableName } from './schema.ts';

/** chDB's engine is a process singleton: one open data path per process. */
let openPath: string | undefined;

/**
 * chDB's native addon crashes the whole process (SIGSEGV) when a worker thread that loaded it
 * exits while no other thread holds it; loading it once on the main thread keeps it resident.
 * The library is mapped once per process, so this costs no extra memory.
 */
function pinNativeAddon(): void {
  createRequire(import.meta.url)('chdb');
}

class ChdbBackend implements Backend {
  readonly kind = 'chdb';
  readonly #pool: Piscina<ChdbTask, ChdbReply>;
  readonly #path: string;
  readonly #database: string;
  #closing: Promise<void> | undefined;

  constructor(pool: Piscina<ChdbTask, ChdbReply>, dataPath: string, database: string) {
    this.#pool = pool;
    this.#path = dataPath;
    this.#database = database;
  }

  async #run(task: ChdbTask, operation: string): Promise<unknown[]> {
    if (this.#closing) throw new SkiffError('STORAGE_UNAVAILABLE', `storage ${operation} failed: chDB backend is closed`);
    let reply: ChdbReply;
    try {
      reply = await this.#pool.run(task);
    } catch (err) {
      throw toStorageError(err, operation);
    }
    if (!reply.ok) throw toStorageError(Object.assign(new Error(reply.message), { code: reply.code }), operation);
    return reply.rows;
  }

  async command(sql: string): Promise<void> {
    await this.#run({ op: 'command', sql }, 'command');
  }

  async insert<T extends TableName>(table: T, records: readonly RecordOf[T][]): Promise<void> {
    const task = { op: 'insert', database: this.#database, table, records } as ChdbTask;
    await this.#run(task, `insert into ${table}`);
  }

  async insertEncoded(table: TableName, batch: EncodedBatch): Promise<void> {
    await this.#run({ op: 'insertEncoded', database: this.#database, table, batch }, `insert into ${table}`);
  }

  async rows(sql: string): Promise<Row[]> {
    return (await this.#run({ op: 'rows', sql }, 'query')) as Row[];
  }

  async select<T extends TableName>(table: T, sql: string): Promise<RecordOf[T][]> {
    return (await this.#run({ op: 'select', table, sql }, `query of ${table}`)) as RecordOf[T][];
  }

  close(): Promise<void> {
    this.#closing ??= (async () => {
      try {
        await this.#pool.run({ op: 'close' });
      } finally {
        await this.#pool.destroy();
        if (openPath === this.#path) openPath = undefined;
      }
    })();
    return this.#closing;
  }
}

/** Starts the chDB worker on `dataPath` (created if missing) for tables in `database`, its threads at nice `threadNice`. */
export async function openChdbBackend(dataPath: string, database: string, threadNice: number): Promise<Backend> {
  const resolved = path.resolve(dataPath);
  if (openPath !== undefined) {
    throw new SkiffError('STORAGE_UNAVAILABLE', `chDB is already open on ${openPath} in this process (one data path per process); close that storage first`);
  }
  openPath = resolved; // claimed before any await, so two concurrent opens cannot both pass
  try {
    await mkdir(resolved, { recursive: true });
    pinNativeAddon();
    const workerData: ChdbWorkerData = { path: resolved, threadNice };
    const pool = new Piscina<ChdbTask, ChdbReply>({
      filename: new URL('./chdb-worker.mjs', import.meta.url).href,
      workerData,
      // One thread owns the one Session; it lives as long as the backend.
      minThreads: 1,
      maxThreads: 1,
      idleTimeout: Number.POSITIVE_INFINITY,
      concurrentTasksPerWorker: 1,
    });
    return new ChdbBackend(pool, resolved, database);
  } catch (err) {
    openPath = undefined;
    throw toStorageError(err, `open of chDB at ${resolved}`);
  }
}
