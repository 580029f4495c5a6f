/**
 * A ClickHouse server over HTTP with @clickhouse/client. Works with servers as old as 18.16: no
 * query parameters (queries.ts inlines escaped literals) and no settings 18.16 does not know.
 */
import { ClickHouseLogLevel, createClient, type ClickHouseClient } from '@clickhouse/client';
import { Pool } from 'undici';
import { SkiffError } from '../errors.ts';
import type { Backend, EncodedBatch } from './backend.ts';
import { toStorageError } from './errors.ts';
import { decodeRows, encodeRows, type RecordOf, type Row } from './rows.ts';
import { columnNames, qualified, type TableName } from './schema.ts';

/** Per-request timeout: a write that takes longer is retried by the batcher. */
const REQUEST_TIMEOUT_MS = 30_000;
/** Keep-alive connections for encoded inserts: one per table writer in flight, and a spare. */
const INSERT_CONNECTIONS = 8;

/** A ClickHouse error answered over HTTP, with its numeric code for storage/errors.ts. */
class ClickHouseHttpError extends Error {
  readonly clickhouseCode: string;
  constructor(status: number, body: string) {
    super(`HTTP ${status}: ${body.trim().slice(0, 2000)}`);
    this.clickhouseCode = /Code: (\d+)/.exec(body)?.[1] ?? '';
  }
}

class ServerBackend implements Backend {
  readonly kind = 'server';
  readonly #client: ClickHouseClient;
  readonly #database: string;
  readonly #url: URL;
  /**
   * Encoded batches go through undici rather than the client: the body is ready bytes from the
   * encoder worker (or the spool), and the client would compress (or copy) it again on the event loop.
   */
  readonly #inserts: Pool;
  #closing: Promise<void> | undefined;

  constructor(client: ClickHouseClient, url: string, database: string) {
    this.#client = client;
    this.#database = database;
    this.#url = new URL(url);
    this.#inserts = new Pool(this.#url.origin, { connections: INSERT_CONNECTIONS, headersTimeout: REQUEST_TIMEOUT_MS, bodyTimeout: REQUEST_TIMEOUT_MS });
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

  async insertEncoded(table: TableName, batch: EncodedBatch): Promise<void> {
    const columns = batch.columns.map((name) => `\`${name}\``).join(', ');
    const query = `INSERT INTO ${qualified(this.#database, table)} (${columns}) FORMAT ${batch.format}`;
    const params = new URLSearchParams({ query });
    const headers: Record<string, string> = { 'content-type': 'application/octet-stream' };
    // 18.16 decompresses a gzip request body by this header alone (no setting needed).
    if (batch.gzip) headers['content-encoding'] = 'gzip';
    const { body } = batch;
    if (this.#url.username) headers.authorization = `Basic ${Buffer.from(`${decodeURIComponent(this.#url.username)}:${decodeURIComponent(this.#url.password)}`).toString('base64')}`;
    await this.#guard(`insert into ${table}`, async () => {
      const res = await this.#inserts.request({ method: 'POST', path: `${this.#url.pathname.replace(/\/$/, '')}/?${params}`, headers, body });
      const text = await res.body.text();
      if (res.statusCode !== 200) throw new ClickHouseHttpError(res.statusCode, text);
    });
  }

  async rows(sql: string): Promise<Row[]> {
    return this.#guard('query', async () => (await this.#client.query({ query: sql, format: 'JSONEachRow' })).json<Row>());
  }

  async select<T extends TableName>(table: T, sql: string): Promise<RecordOf[T][]> {
    return this.#guard(`query of ${table}`, async () => {
      const result = await this.#client.query({ query: sql, format: 'JSONEachRow' });
      return decodeRows(table, await result.json<Row>());
    });
  }

  close(): Promise<void> {
    this.#closing ??= Promise.all([this.#client.close(), this.#inserts.close()]).then(() => undefined);
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
  return new ServerBackend(client, url, database);
}
