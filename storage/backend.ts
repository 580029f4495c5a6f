/** What storage needs from a ClickHouse: the chDB worker and the ClickHouse server implement it. */
import type { RecordOf, Row } from './rows.ts';
import type { TableName } from './schema.ts';

export interface Backend {
  readonly kind: 'chdb' | 'server';
  /** Runs a statement that returns no rows (DDL, INSERT … SELECT). */
  command(sql: string): Promise<void>;
  /** Encodes records of `table` as JSONEachRow and inserts them in one statement (registry, migrations). */
  insert<T extends TableName>(table: T, records: readonly RecordOf[T][]): Promise<void>;
  /** Inserts a batch already encoded by the encoder worker: JSONEachRow rows in `table`'s columns, gzip'd when `gzip`. */
  insertEncoded(table: TableName, body: Uint8Array, gzip: boolean): Promise<void>;
  /** Runs a SELECT of `table`'s columns and decodes the rows. */
  select<T extends TableName>(table: T, sql: string): Promise<RecordOf[T][]>;
  /** Runs any SELECT and returns its rows as ClickHouse sent them (64-bit integers may be quoted). */
  rows(sql: string): Promise<Row[]>;
  /** Releases the connection or worker; idempotent. */
  close(): Promise<void>;
}
