/**
 * The piscina worker that owns the process's one chDB Session (chDB calls block their thread, so
 * none run on the event loop). Encoded batches are written to a file in the chDB directory and
 * inserted with INSERT … SELECT FROM file(), single-threaded: measured on 15k-row log batches,
 * that costs chDB ~2 µs of CPU a row where its inline insert (the bytes passed with the query)
 * costs ~4.5, and it leaves the other core to the gateway. Records from the registry are encoded
 * to JSONEachRow here and results decoded, keeping that CPU work off the event loop too. Loaded
 * through chdb-worker.mjs (registers tsx).
 */
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { workerData } from 'node:worker_threads';
import { gunzipSync } from 'node:zlib';
import { Session } from 'chdb';
import type { EncodedBatch } from './backend.ts';
import { decodeRows, encodeJsonEachRow, parseJsonEachRow, type RecordOf } from './rows.ts';
import { columnList, columnType, qualified, type TableName } from './schema.ts';
import { niceThisThread } from './thread-priority.ts';

/** Given to the worker at start: the chDB data directory it opens, and the nice value of its threads. */
export interface ChdbWorkerData {
  path: string;
  threadNice: number;
}

// Before the Session exists: every ClickHouse thread it starts (inserts, merges) inherits it.
niceThisThread((workerData as ChdbWorkerData).threadNice);

/** What the main thread asks of the worker. */
export type ChdbTask =
  | { op: 'command'; sql: string }
  | { [T in TableName]: { op: 'insert'; database: string; table: T; records: readonly RecordOf[T][] } }[TableName]
  | { op: 'insertEncoded'; database: string; table: TableName; batch: EncodedBatch }
  | { op: 'select'; table: TableName; sql: string }
  | { op: 'rows'; sql: string }
  | { op: 'close' };

/** Errors cross the thread as data: structured clone would drop their code. */
export type ChdbReply = { ok: true; rows: unknown[] } | { ok: false; message: string; code: string };

let session: Session | undefined;
/** Inserts of one batch at a time (the worker owns the Session): one staging file name is enough. */
const INSERT_FILE = 'insert-batch';
/**
 * A batch insert is one thread's work: parallel parsing and insert threads cost more CPU than they
 * save at batch sizes. optimize_on_insert = 0: ReplacingMergeTree would otherwise collapse rows of
 * equal sorting key inside each inserted block, a pass that rarely finds anything (a retried batch
 * repeats as a whole, in another part) and cost ~15 % of the storage threads' CPU per log row;
 * queries dedup anyway (storage/queries.ts), and merges in time.
 */
const FILE_INSERT_SETTINGS = 'input_format_parallel_parsing = 0, max_threads = 1, max_insert_threads = 1, optimize_on_insert = 0';

/** `name Type, …` of a batch's columns, for file(); undefined when one is not in the schema (then the inline insert). */
function structureOf(table: TableName, columns: readonly string[]): string | undefined {
  try {
    return columns.map((column) => `\`${column}\` ${columnType(table, column)}`).join(', ');
  } catch {
    return undefined;
  }
}

let stagingFile: string | undefined;

/** The staging file's path in the chDB directory, its folder made on first use. */
function stagingPath(): string {
  if (stagingFile === undefined) {
    const dir = path.join((workerData as ChdbWorkerData).path, 'staging');
    mkdirSync(dir, { recursive: true });
    stagingFile = path.join(dir, INSERT_FILE);
  }
  return stagingFile;
}

/** Inserts a batch's bytes through the staging file, removed afterwards. */
function insertThroughFile(database: string, table: TableName, batch: EncodedBatch, values: Buffer, structure: string): void {
  const file = stagingPath();
  writeFileSync(file, values);
  try {
    const columns = batch.columns.map((c) => `\`${c}\``).join(', ');
    open().query(`INSERT INTO ${qualified(database, table)} (${columns}) SELECT * FROM file('${file.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}', ${batch.format}, '${structure}') SETTINGS ${FILE_INSERT_SETTINGS}`, 'TSV');
  } finally {
    rmSync(file, { force: true });
  }
}

const ZLIB_INFLATE_FAILED = '354';

function isZlibError(err: unknown): boolean {
  const code = typeof err === 'object' && err !== null ? (err as { code?: unknown }).code : undefined;
  return typeof code === 'string' && code.startsWith('Z_');
}

function open(): Session {
  session ??= new Session((workerData as ChdbWorkerData).path);
  return session;
}

async function run(task: ChdbTask): Promise<unknown[]> {
  switch (task.op) {
    case 'command':
      open().query(task.sql, 'TSV');
      return [];
    case 'insert': {
      if (task.records.length === 0) return [];
      const head = `INSERT INTO ${qualified(task.database, task.table)} (${columnList(task.table)}) FORMAT JSONEachRow\n`;
      open().query(head + encodeJsonEachRow(task.table, task.records), 'TSV');
      return [];
    }
    case 'insertEncoded': {
      const { batch } = task;
      const values = batch.gzip ? gunzipSync(batch.body) : Buffer.from(batch.body.buffer, batch.body.byteOffset, batch.body.byteLength);
      const structure = structureOf(task.table, batch.columns);
      if (structure !== undefined) insertThroughFile(task.database, task.table, batch, values, structure);
      else await open().insert({ table: `${task.database}.${task.table}`, values, format: batch.format, columns: batch.columns });
      return [];
    }
    case 'rows':
      return parseJsonEachRow(open().query(task.sql, 'JSONEachRow'));
    case 'select':
      return decodeRows(task.table, parseJsonEachRow(open().query(task.sql, 'JSONEachRow')));
    case 'close':
      session?.close();
      session = undefined;
      return [];
  }
}

/** Runs one task on the worker's Session; failures come back as data, never thrown. */
export default async function chdbTask(task: ChdbTask): Promise<ChdbReply> {
  try {
    return { ok: true, rows: await run(task) };
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    // A gzip body that does not inflate is what a ClickHouse server answers as 354 (ZLIB_INFLATE_FAILED): say so alike.
    if (isZlibError(err)) return { ok: false, message: `Code: ${ZLIB_INFLATE_FAILED} (ZLIB_INFLATE_FAILED): inflate failed: ${message}`, code: ZLIB_INFLATE_FAILED };
    return { ok: false, message, code: /Code: (\d+)/.exec(message)?.[1] ?? '' };
  }
}
