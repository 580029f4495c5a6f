/**
 * The piscina worker that owns the process's one chDB Session (chDB calls block their thread, so
 * none run on the event loop). It also encodes insert batches to JSONEachRow and decodes results,
 * keeping that CPU work off the event loop too. Loaded through chdb-worker.mjs (registers tsx).
 */
import { workerData } from 'node:worker_threads';
import { gunzipSync } from 'node:zlib';
import { Session } from 'chdb';
import { decodeRows, encodeJsonEachRow, parseJsonEachRow, type RecordOf } from './rows.ts';
import { columnList, qualified, type TableName } from './schema.ts';

/** Given to the worker at start: the chDB data directory it opens. */
export interface ChdbWorkerData {
  path: string;
}

/** What the main thread asks of the worker. */
export type ChdbTask =
  | { op: 'command'; sql: string }
  | { [T in TableName]: { op: 'insert'; database: string; table: T; records: readonly RecordOf[T][] } }[TableName]
  | { op: 'insertEncoded'; database: string; table: TableName; body: Uint8Array; gzip: boolean }
  | { op: 'select'; table: TableName; sql: string }
  | { op: 'rows'; sql: string }
  | { op: 'close' };

/** Errors cross the thread as data: structured clone would drop their code. */
export type ChdbReply = { ok: true; rows: unknown[] } | { ok: false; message: string; code: string };

let session: Session | undefined;

function open(): Session {
  session ??= new Session((workerData as ChdbWorkerData).path);
  return session;
}

function run(task: ChdbTask): unknown[] {
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
      const head = `INSERT INTO ${qualified(task.database, task.table)} (${columnList(task.table)}) FORMAT JSONEachRow\n`;
      const body = task.gzip ? gunzipSync(task.body) : Buffer.from(task.body.buffer, task.body.byteOffset, task.body.byteLength);
      open().query(head + body.toString('utf8'), 'TSV');
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
export default function chdbTask(task: ChdbTask): ChdbReply {
  try {
    return { ok: true, rows: run(task) };
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    const code = /Code: (\d+)/.exec(message)?.[1] ?? '';
    return { ok: false, message, code };
  }
}
