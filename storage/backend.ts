/** What storage needs from a ClickHouse: the chDB worker and the ClickHouse server implement it. */
import type { RecordOf } from './rows.ts';
import type { TableName } from './schema.ts';

export interface Backend {
  readonly kind: 'chdb' | 'server';
  /** Runs a statement that returns no rows (DDL, INSERT … SELECT). */
  command(sql: string): Promise<void>;
  /** Encodes records of `table` as JSONEachRow and inserts them in one statement. */
  insert<T extends TableName>(table: T, records: readonly RecordOf[T][]): Promise<void>;
  /** Runs a SELECT of `table`'s columns and decodes the rows. */
  select<T extends TableName>(table: T, sql: string): Promise<RecordOf[T][]>;
  /** Releases the connection or worker; idempotent. */
  close(): Promise<void>;
}
