/** Helpers the storage tests share: the ClickHouse test server, and what an encoded batch holds. */
import { gunzipSync } from 'node:zlib';
import type { EncodedBatch } from '../../storage/backend.ts';

export const SERVER_URL = 'http://127.0.0.1:8123';

/** Runs a statement on the test server; throws with ClickHouse's message when it fails. */
export async function serverQuery(sql: string): Promise<void> {
  const res = await fetch(SERVER_URL, { method: 'POST', body: sql });
  if (!res.ok) throw new Error(await res.text());
}

/** The ids of an encoded invocations batch, in order (TabSeparated, or JSONEachRow of older spool files). */
export function idsOf(batch: EncodedBatch): string[] {
  const text = (batch.gzip ? gunzipSync(batch.body) : Buffer.from(batch.body)).toString('utf8');
  const lines = text.split('\n').filter((line) => line !== '');
  if (batch.format === 'JSONEachRow') return lines.map((line) => (JSON.parse(line) as { id: string }).id);
  const at = batch.columns.indexOf('id');
  return lines.map((line) => line.split('\t')[at]);
}
