/**
 * Hot path, off the event loop: the piscina worker that turns a batch into the bytes ClickHouse
 * and the spool take, and splits a batch in halves when a poison row must be isolated. A batch
 * arrives as a JSON array of tuples (rows.ts toTupleJson, the cheap hand-off); here each tuple is
 * checked and clamped by its table's codec, the rows are encoded as JSONEachRow (one
 * JSON.stringify of the whole array: rows separated by commas, which every ClickHouse since 18.x
 * accepts) and gzip-compressed for the spool and for a server across a network. A tuple no codec can read is refused here with its error rather
 * than sent. Loaded through encode-worker.mjs (registers tsx).
 */
import { gunzipSync, gzipSync } from 'node:zlib';
import { encodeRow, fromTuple, type Row } from './rows.ts';
import type { TableName } from './schema.ts';

/** gzip level 1: most of the size win at a fraction of the CPU of the default level. */
const GZIP_LEVEL = 1;

/** What the main thread asks of the encoder. */
export type EncodeTask =
  | { op: 'encode'; table: TableName; tuples: string; gzip: boolean }
  | { op: 'split'; body: Uint8Array; gzip: boolean }
  | { op: 'compress'; body: Uint8Array };

/** An encoded batch body: JSONEachRow rows, gzip-compressed when `gzip`. */
export interface EncodedBody {
  body: Uint8Array;
  gzip: boolean;
  rows: number;
  /** Uncompressed size. */
  rawBytes: number;
}

/** A row refused before it reached ClickHouse, with why. */
export interface RefusedRow {
  row: string;
  error: string;
}

export type EncodeReply =
  | ({ op: 'encode'; refused: RefusedRow[] } & EncodedBody)
  /** A batch of two or more rows cut in two; a single row comes back as its text. */
  | { op: 'split'; halves: EncodedBody[]; line: string }
  | { op: 'compress'; body: Uint8Array };

function compressed(raw: Buffer, rows: number, gzip: boolean): EncodedBody {
  return { body: gzip ? gzipSync(raw, { level: GZIP_LEVEL }) : raw, gzip, rows, rawBytes: raw.length };
}

function pack(rows: readonly Row[], gzip: boolean): EncodedBody {
  return compressed(Buffer.from(JSON.stringify(rows).slice(1, -1), 'utf8'), rows.length, gzip);
}

function preview(value: unknown): string {
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}

function encode(table: TableName, tuplesJson: string, gzip: boolean): EncodeReply {
  const tuples: unknown = JSON.parse(tuplesJson);
  if (!Array.isArray(tuples)) throw new TypeError('a batch must be a JSON array of tuples');
  const rows: Row[] = [];
  const refused: RefusedRow[] = [];
  for (const tuple of tuples) {
    try {
      rows.push(encodeRow(table, fromTuple(table, tuple)));
    } catch (err) {
      refused.push({ row: preview(tuple), error: err instanceof Error ? err.message : String(err) });
    }
  }
  return { op: 'encode', refused, ...pack(rows, gzip) };
}

/** The rows of an encoded body: comma-separated JSON objects (or one per line, as older spools and hand-made files have). */
function rowsOf(body: Uint8Array, gzip: boolean): { rows: Row[] } | { lines: string[] } {
  const text = (gzip ? gunzipSync(body) : Buffer.from(body.buffer, body.byteOffset, body.byteLength)).toString('utf8');
  try {
    return { rows: JSON.parse(`[${text}]`) as Row[] };
  } catch {
    return { lines: text.split('\n').filter((l) => l.trim() !== '') };
  }
}

function split(body: Uint8Array, gzip: boolean): EncodeReply {
  const parsed = rowsOf(body, gzip);
  if ('rows' in parsed) {
    const { rows } = parsed;
    if (rows.length <= 1) return { op: 'split', halves: [], line: rows.length === 1 ? JSON.stringify(rows[0]) : '' };
    const mid = Math.ceil(rows.length / 2);
    return { op: 'split', halves: [pack(rows.slice(0, mid), gzip), pack(rows.slice(mid), gzip)], line: '' };
  }
  const { lines } = parsed;
  if (lines.length <= 1) return { op: 'split', halves: [], line: lines[0] ?? '' };
  const mid = Math.ceil(lines.length / 2);
  const packLines = (part: string[]): EncodedBody => compressed(Buffer.from(part.join('\n'), 'utf8'), part.length, gzip);
  return { op: 'split', halves: [packLines(lines.slice(0, mid)), packLines(lines.slice(mid))], line: '' };
}

/** Runs one task; throws only on input that is not a batch at all (corrupt JSON or gzip). */
export default function encodeTask(task: EncodeTask): EncodeReply {
  switch (task.op) {
    case 'encode':
      return encode(task.table, task.tuples, task.gzip);
    case 'split':
      return split(task.body, task.gzip);
    case 'compress':
      return { op: 'compress', body: gzipSync(task.body, { level: GZIP_LEVEL }) };
  }
}
