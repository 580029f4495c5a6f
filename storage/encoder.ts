/**
 * The encoder pool: piscina threads that encode and compress batches (encode-worker.ts), shared
 * by every table writer of a storage and closed with it.
 */
import os from 'node:os';
import { Piscina } from 'piscina';
import type { EncodedBody, EncodeReply, EncodeTask, RefusedRow } from './encode-worker.ts';
import type { TableName } from './schema.ts';

/** Encoder threads: one leaves a core for the event loop on small machines; two at most. */
const ENCODER_THREADS = Math.max(1, Math.min(2, os.availableParallelism() - 1));

export class Encoder {
  readonly #pool = new Piscina<EncodeTask, EncodeReply>({
    filename: new URL('./encode-worker.mjs', import.meta.url).href,
    minThreads: 1,
    maxThreads: ENCODER_THREADS,
    idleTimeout: 30_000,
  });
  #closed: Promise<void> | undefined;

  /** A batch's tuple JSON (rows.ts toTupleJson) → gzip'd JSONEachRow, off the event loop, and the rows it refused. */
  async encode(table: TableName, tuples: string, gzip: boolean): Promise<EncodedBody & { refused: RefusedRow[] }> {
    const reply = await this.#pool.run({ op: 'encode', table, tuples, gzip });
    if (reply.op !== 'encode') throw new Error('encoder answered the wrong task');
    return { body: reply.body, gzip: reply.gzip, rows: reply.rows, rawBytes: reply.rawBytes, refused: reply.refused };
  }

  /** An encoded batch cut in two halves (compressed as it was), or its one row's text. */
  async split(batch: EncodedBody): Promise<{ halves: EncodedBody[]; line: string }> {
    const reply = await this.#pool.run({ op: 'split', body: batch.body, gzip: batch.gzip });
    if (reply.op !== 'split') throw new Error('encoder answered the wrong task');
    return reply;
  }

  /** The batch gzip-compressed (as the spool keeps it). */
  async compress(batch: EncodedBody): Promise<EncodedBody> {
    if (batch.gzip) return batch;
    const reply = await this.#pool.run({ op: 'compress', body: batch.body });
    if (reply.op !== 'compress') throw new Error('encoder answered the wrong task');
    return { ...batch, body: reply.body, gzip: true };
  }

  /** Waits for running tasks and stops the threads; idempotent. */
  close(): Promise<void> {
    this.#closed ??= this.#pool.close();
    return this.#closed;
  }
}
