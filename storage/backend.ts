/** What storage needs from a ClickHouse: the chDB worker and the ClickHouse server implement it. */
import type { RecordOf, Row } from './rows.ts';
import type { TableName } from './schema.ts';

/**
 * Formats a batch body may be in. TabSeparated is what the encoder writes: ClickHouse 18.16 and
 * chDB both parse it with little CPU, and chDB takes it as raw bytes (it takes no binary format).
 * JSONEachRow is what spool files of earlier versions hold.
 */
export type InsertFormat = 'TabSeparated' | 'JSONEachRow';

/** A batch ready to insert, as the encoder worker made it or the spool kept it. */
export interface EncodedBatch {
  format: InsertFormat;
  /** The columns each row holds, in order: a spooled batch keeps the columns it was encoded with. */
  columns: readonly string[];
  /** The rows in `format`, gzip-compressed when `gzip`. */
  body: Uint8Array;
  gzip: boolean;
  rows: number;
  /** Uncompressed size. */
  rawBytes: number;
}

export interface Backend {
  readonly kind: 'chdb' | 'server';
  /** Runs a statement that returns no rows (DDL, INSERT … SELECT). */
  command(sql: string): Promise<void>;
  /** Encodes records of `table` as JSONEachRow and inserts them in one statement (registry, migrations). */
  insert<T extends TableName>(table: T, records: readonly RecordOf[T][]): Promise<void>;
  /** Inserts a batch already encoded by the encoder worker (or read back from the spool) in one statement. */
  insertEncoded(table: TableName, batch: EncodedBatch): Promise<void>;
  /** Runs a SELECT of `table`'s columns and decodes the rows. */
  select<T extends TableName>(table: T, sql: string): Promise<RecordOf[T][]>;
  /** Runs any SELECT and returns its rows as ClickHouse sent them (64-bit integers may be quoted). */
  rows(sql: string): Promise<Row[]>;
  /** Releases the connection or worker; idempotent. */
  close(): Promise<void>;
}
