/**
 * The bytes of one spool file, framed so that replay can tell a whole batch from a damaged one
 * (a torn write that escaped the rename, a flipped bit, a file truncated by a full disk or edited
 * by hand) before sending anything to ClickHouse:
 *
 *   {"magic":"skiff-spool","version":1,"table":…,"format":…,"columns":[…],"rows":…,"bodyBytes":…,"sha256":…}\n
 *   <bodyBytes bytes: the batch, gzip-compressed>
 *
 * The header carries the batch's own column list, so a batch spooled before a schema change
 * replays into the columns it was encoded with. Files of earlier versions (`.jsonl.gz`: gzip'd
 * JSONEachRow, no header) are still read; gzip's own CRC and length check them. Pure functions:
 * they run in the encoder worker, off the event loop.
 */
import { createHash } from 'node:crypto';
import { gunzipSync } from 'node:zlib';
import type { EncodedBatch, InsertFormat } from './backend.ts';
import { columnNames, TABLE_NAMES, type TableName } from './schema.ts';

/** Suffix of framed spool files. */
export const FRAMED_SUFFIX = '.batch';
/** Suffix of spool files written before framing: gzip'd JSONEachRow rows of the table's columns. */
export const LEGACY_SUFFIX = '.jsonl.gz';

const MAGIC = 'skiff-spool';
const VERSION = 1;
/** A header is a few hundred bytes; past this, a file without a newline is not a spool file. */
const MAX_HEADER_BYTES = 64 * 1024;
const FORMATS: readonly InsertFormat[] = ['TabSeparated', 'JSONEachRow'];

interface Header {
  magic: typeof MAGIC;
  version: typeof VERSION;
  table: TableName;
  format: InsertFormat;
  columns: string[];
  rows: number;
  bodyBytes: number;
  sha256: string;
}

/** A spool file that cannot be replayed as it is; `message` says what is wrong with it. */
export class DamagedSpoolFile extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DamagedSpoolFile';
  }
}

function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** The file bytes of a gzip-compressed batch of `table`. */
export function frameSpoolFile(table: TableName, batch: EncodedBatch): Buffer {
  if (!batch.gzip) throw new TypeError('a spooled batch must be gzip-compressed');
  const header: Header = {
    magic: MAGIC,
    version: VERSION,
    table,
    format: batch.format,
    columns: [...batch.columns],
    rows: batch.rows,
    bodyBytes: batch.body.byteLength,
    sha256: sha256(batch.body),
  };
  return Buffer.concat([Buffer.from(`${JSON.stringify(header)}\n`, 'utf8'), batch.body]);
}

function isHeader(value: unknown): value is Header {
  if (typeof value !== 'object' || value === null) return false;
  const h = value as Record<string, unknown>;
  return (
    h.magic === MAGIC &&
    h.version === VERSION &&
    (TABLE_NAMES as unknown[]).includes(h.table) &&
    (FORMATS as unknown[]).includes(h.format) &&
    Array.isArray(h.columns) &&
    h.columns.length > 0 &&
    h.columns.every((c) => typeof c === 'string' && /^[A-Za-z_][A-Za-z0-9_]*$/.test(c)) &&
    Number.isSafeInteger(h.rows) &&
    (h.rows as number) > 0 &&
    Number.isSafeInteger(h.bodyBytes) &&
    typeof h.sha256 === 'string'
  );
}

function unframe(table: TableName, bytes: Uint8Array): EncodedBatch {
  const view = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const newline = view.indexOf(0x0a);
  if (newline < 0 || newline > MAX_HEADER_BYTES) throw new DamagedSpoolFile('no spool header (the file is truncated or not a spool file)');
  let header: unknown;
  try {
    header = JSON.parse(view.subarray(0, newline).toString('utf8'));
  } catch {
    throw new DamagedSpoolFile('the spool header is not readable JSON');
  }
  if (!isHeader(header)) throw new DamagedSpoolFile('the spool header is not a skiff-spool v1 header');
  if (header.table !== table) throw new DamagedSpoolFile(`the spool header names table ${header.table}, the file name ${table}`);
  const body = view.subarray(newline + 1);
  if (body.byteLength !== header.bodyBytes) throw new DamagedSpoolFile(`the body is ${body.byteLength} bytes, the header says ${header.bodyBytes} (truncated or extended)`);
  if (sha256(body) !== header.sha256) throw new DamagedSpoolFile('the body does not match its sha256 checksum');
  return { format: header.format, columns: header.columns, body, gzip: true, rows: header.rows, rawBytes: 0 };
}

function legacy(table: TableName, rows: number, bytes: Uint8Array): EncodedBatch {
  let raw: Buffer;
  try {
    // Checks gzip's CRC-32 and length of the content; the result itself is not needed.
    raw = gunzipSync(bytes);
  } catch (err) {
    throw new DamagedSpoolFile(`the gzip body is damaged: ${err instanceof Error ? err.message : String(err)}`);
  }
  return { format: 'JSONEachRow', columns: columnNames(table), body: bytes, gzip: true, rows, rawBytes: raw.byteLength };
}

/**
 * The batch a spool file holds, checked whole; throws DamagedSpoolFile when it is not.
 * `rows` is the count from the file name (only files without a header need it).
 */
export function openSpoolFile(file: string, table: TableName, rows: number, bytes: Uint8Array): EncodedBatch {
  if (file.endsWith(LEGACY_SUFFIX)) return legacy(table, rows, bytes);
  if (file.endsWith(FRAMED_SUFFIX)) return unframe(table, bytes);
  throw new DamagedSpoolFile(`${file} is not a spool file name`);
}
