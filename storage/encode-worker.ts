/**
 * Hot path, off the event loop: the piscina worker that turns a batch into the bytes ClickHouse
 * and the spool take, splits a batch in halves when a poison row must be isolated, and frames and
 * checks spool files (spool-file.ts). A batch arrives as chunks of its rows' fields, each a flat
 * array in rows.ts TUPLE_FIELDS order, serialized (encoder.ts handOffRecords, the cheap hand-off).
 * Here each row is checked and clamped by its table's codec and written as one TabSeparated line
 * in the table's schema columns: ClickHouse 18.16 parses that with about two thirds of the CPU of
 * JSONEachRow and as cheaply as RowBinary, and chDB takes it as raw bytes (it takes no binary
 * format that way). Each chunk becomes one string and one Buffer: no per-row Buffer writes. A
 * row no codec can read is refused here with its error rather than sent. Rows that came already
 * encoded (LOGS bodies, bus/log-rows.ts) are appended as they are. Loaded through
 * encode-worker.mjs (registers tsx).
 */
import { deserialize } from 'node:v8';
import { workerData } from 'node:worker_threads';
import { gunzipSync, gzipSync } from 'node:zlib';
import { tsvField } from '../tsv.ts';
import type { EncodedBatch } from './backend.ts';
import type { EncoderWorkerData, HandOff } from './encoder.ts';
import { encodeRow, fromTuple, TUPLE_FIELDS } from './rows.ts';
import { columnNames, TABLE_NAMES, TABLES, type ColumnType, type TableName } from './schema.ts';
import { DamagedSpoolFile, frameSpoolFile, openSpoolFile } from './spool-file.ts';
import { niceThisThread } from './thread-priority.ts';

niceThisThread((workerData as EncoderWorkerData).threadNice);

/** gzip level 1: most of the size win at a fraction of the CPU of the default level. */
const GZIP_LEVEL = 1;

/** What the main thread asks of the encoder. */
export type EncodeTask =
  | { op: 'encode'; table: TableName; handOff: HandOff; gzip: boolean }
  | { op: 'split'; batch: EncodedBatch }
  | { op: 'spoolFile'; table: TableName; batch: EncodedBatch }
  | { op: 'openSpoolFile'; table: TableName; file: string; rows: number; bytes: Uint8Array };

/** A row refused before it reached ClickHouse, with why. */
export interface RefusedRow {
  row: string;
  error: string;
}

export type EncodeReply =
  | { op: 'encode'; batch: EncodedBatch; refused: RefusedRow[] }
  /** A batch of two or more rows cut in two; a single row comes back as its text. */
  | { op: 'split'; halves: EncodedBatch[]; line: string }
  | { op: 'spoolFile'; bytes: Uint8Array }
  | { op: 'openSpoolFile'; batch: EncodedBatch }
  | { op: 'openSpoolFile'; damaged: string };

interface Layout {
  names: readonly string[];
  /** Per column: a String (escaped), else an unsigned integer. */
  strings: readonly boolean[];
}

/** Per table, the columns in schema order (schema.ts is the one list: a new column flows through). */
const LAYOUT = new Map<TableName, Layout>(
  TABLE_NAMES.map((t) => [t, { names: columnNames(t), strings: TABLES[t].columns.map(([, type]) => (type as ColumnType) === 'String') }]),
);

function compressed(raw: Buffer, rows: number, gzip: boolean, batch: Pick<EncodedBatch, 'format' | 'columns'>): EncodedBatch {
  return { format: batch.format, columns: batch.columns, body: gzip ? gzipSync(raw, { level: GZIP_LEVEL }) : raw, gzip, rows, rawBytes: raw.length };
}

function preview(value: unknown): string {
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}

/** One hand-off chunk → its rows' TabSeparated text (UTF-8), counting rows and collecting refusals. */
function encodeChunk(table: TableName, chunk: Uint8Array, refused: RefusedRow[]): { text: Buffer; rows: number } {
  const fields: unknown = deserialize(chunk);
  const width = TUPLE_FIELDS[table].length;
  if (!Array.isArray(fields) || fields.length % width !== 0) throw new TypeError(`a ${table} hand-off must be a flat array of ${width}-field rows`);
  const { names, strings } = LAYOUT.get(table)!;
  // One tuple and one field list reused for every row: fromTuple copies what it needs into the record.
  const tuple = new Array<unknown>(width);
  const line = new Array<string>(names.length);
  const lines: string[] = [];
  for (let at = 0; at < fields.length; at += width) {
    for (let f = 0; f < width; f++) tuple[f] = fields[at + f];
    try {
      const row = encodeRow(table, fromTuple(table, tuple));
      for (let c = 0; c < names.length; c++) {
        const value = row[names[c]];
        // The codecs give every column a value; a missing one (a codec lagging the schema) is the column's default.
        line[c] = value === undefined ? (strings[c] ? '' : '0') : strings[c] ? tsvField(String(value)) : String(value);
      }
    } catch (err) {
      refused.push({ row: preview(tuple), error: err instanceof Error ? err.message : String(err) });
      continue;
    }
    lines.push(line.join('\t'));
  }
  // One flat string per chunk, encoded once: cheaper than appending row by row.
  return { text: Buffer.from(lines.length === 0 ? '' : `${lines.join('\n')}\n`, 'utf8'), rows: lines.length };
}

function encode(table: TableName, handOff: HandOff, gzip: boolean): EncodeReply {
  const refused: RefusedRow[] = [];
  const texts: Buffer[] = [];
  let rows = 0;
  for (const chunk of handOff.chunks) {
    const encoded = encodeChunk(table, chunk, refused);
    texts.push(encoded.text);
    rows += encoded.rows;
  }
  // Already in the table's columns (storage.ts checked them when they came): as they are.
  for (const { body, rows: bodyRows } of handOff.encoded) {
    texts.push(Buffer.from(body.buffer, body.byteOffset, body.byteLength));
    rows += bodyRows;
  }
  if (rows + refused.length !== handOff.rows) throw new TypeError(`a hand-off of ${handOff.rows} ${table} rows held ${rows + refused.length}`);
  const raw = texts.length === 1 ? texts[0] : Buffer.concat(texts);
  return { op: 'encode', batch: compressed(raw, rows, gzip, { format: 'TabSeparated', columns: LAYOUT.get(table)!.names }), refused };
}

/** A batch's rows as lines: TabSeparated escapes newlines, and JSONEachRow of any version is one object per line or comma-separated. */
function linesOf(batch: EncodedBatch): string[] {
  const { body } = batch;
  const text = (batch.gzip ? gunzipSync(body) : Buffer.from(body.buffer, body.byteOffset, body.byteLength)).toString('utf8');
  if (batch.format === 'JSONEachRow') {
    try {
      // Comma-separated objects (the JSON encoder of earlier versions wrote them so).
      return (JSON.parse(`[${text}]`) as unknown[]).map((row) => JSON.stringify(row));
    } catch {
      // One object per line, or not JSON at all: lines, so a bad one can still be isolated.
    }
  }
  return text.split('\n').filter((line) => line.trim() !== '');
}

function split(batch: EncodedBatch): EncodeReply {
  const lines = linesOf(batch);
  if (lines.length <= 1) return { op: 'split', halves: [], line: lines[0] ?? '' };
  const mid = Math.ceil(lines.length / 2);
  const pack = (part: string[]): EncodedBatch => compressed(Buffer.from(`${part.join('\n')}\n`, 'utf8'), part.length, batch.gzip, batch);
  return { op: 'split', halves: [pack(lines.slice(0, mid)), pack(lines.slice(mid))], line: '' };
}

function spoolFile(table: TableName, batch: EncodedBatch): EncodeReply {
  const gzipped = batch.gzip ? batch : { ...batch, body: gzipSync(batch.body, { level: GZIP_LEVEL }), gzip: true };
  return { op: 'spoolFile', bytes: frameSpoolFile(table, gzipped) };
}

function open(table: TableName, file: string, rows: number, bytes: Uint8Array): EncodeReply {
  try {
    return { op: 'openSpoolFile', batch: openSpoolFile(file, table, rows, bytes) };
  } catch (err) {
    if (err instanceof DamagedSpoolFile) return { op: 'openSpoolFile', damaged: err.message };
    throw err;
  }
}

/** Runs one task; throws only on input that is not a batch at all (corrupt JSON or gzip). */
export default function encodeTask(task: EncodeTask): EncodeReply {
  switch (task.op) {
    case 'encode':
      return encode(task.table, task.handOff, task.gzip);
    case 'split':
      return split(task.batch);
    case 'spoolFile':
      return spoolFile(task.table, task.batch);
    case 'openSpoolFile':
      return open(task.table, task.file, task.rows, task.bytes);
  }
}
