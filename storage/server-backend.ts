/**
 * A ClickHouse server over HTTP with @clickhouse/client. Works with servers as old as 18.16: no
 * query parameters (queries.ts inlines escaped literals) and no settings 18.16 does not know.
 */
import { ClickHouseLogLevel, createClient, type ClickHouseClient } from '@clickhouse/client';
import { SkiffError } from '../errors.ts';
import type { Backend } from './backend.ts';
import { toStorageError } from './errors.ts';
import { decodeRows, encodeRows, type RecordOf, type Row } from './rows.ts';
import { columnNames, qualified, type TableName } from './schema.ts';

/** Per-request timeout: a write that takes longer is retried by the batcher. */
const REQUEST_TIMEOUT_MS = 30_000;

class ServerBackend implements Backend {
  readonly kind = 'server';
  readonly #client: ClickHouseClient;
  readonly #database: string;
  #closing: Promise<void> | undefined;

  constructor(client: ClickHouseClient, database: string) {
    this.#client = client;
    this.#database = database;
  }

  async #guard<R>(operation: string, call: () => Promise<R>): Promise<R> {
    if (this.#closing) throw new SkiffError('STORAGE_UNAVAILABLE', `storage ${operation} failed: ClickHouse client is closed`);
    try {
      return await call();
    } catch (err) {
      throw toStorageError(err, operation);
    }
  }

  async command(sql: string): Promise<void> {
    await this.#guard('command', () => this.#client.command({ query: sql }));
  }

  async insert<T extends TableName>(table: T, records: readonly RecordOf[T][]): Promise<void> {
    if (records.length === 0) return;
    const [first, ...rest] = columnNames(table);
    await this.#guard(`insert into ${table}`, () =>
      this.#client.insert({ table: qualified(this.#database, table), values: encodeRows(table, records), format: 'JSONEachRow', columns: [first, ...rest] }),
    );
  }

  async select<T extends TableName>(table: T, sql: string): Promise<RecordOf[T][]> {
    return this.#guard(`query of ${table}`, async () => {
      const result = await this.#client.query({ query: sql, format: 'JSONEachRow' });
      return decodeRows(table, await result.json<Row>());
    });
  }

  close(): Promise<void> {
    this.#closing ??= this.#client.close();
    return this.#closing;
  }
}

/**
 * Connects to the server at `url`. The client stays on the server's default database: the
 * database may not exist before migrate() creates it, and every statement names it anyway.
 */
export function openServerBackend(url: string, database: string): Backend {
  const client = createClient({
    url,
    application: 'skiff',
    request_timeout: REQUEST_TIMEOUT_MS,
    // Failures are translated and logged by storage; the client's own console logging is noise.
    log: { level: ClickHouseLogLevel.OFF },
  });
  return new ServerBackend(client, database);
}
