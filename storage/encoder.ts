/**
 * The encoder pool: piscina threads that encode, compress and split batches and frame and check
 * spool files (encode-worker.ts), shared by every table writer of a storage and closed with it.
 */
import os from 'node:os';
import { serialize } from 'node:v8';
import { Piscina } from 'piscina';
import type { EncodedBatch } from './backend.ts';
import type { EncodeReply, EncodeTask, RefusedRow } from './encode-worker.ts';
import { TUPLE_FIELDS, type RecordOf } from './rows.ts';
import { columnNames, type TableName } from './schema.ts';

/**
 * Rows per hand-off chunk: a big batch crosses (and is encoded) a chunk at a time, so neither
 * thread holds more than this many rows as JS values at once; young-generation GC then stays
 * cheap whatever storage.maxBatchRows is.
 */
const HAND_OFF_CHUNK_ROWS = 8192;
/**
 * Rows per slice the batchers stage as rows arrive (storage.ts), so no row waits for a flush as a
 * JS object. Small, because a row held as an object until its slice is staged must not live
 * through two young-generation collections (V8 then moves it to the old generation, whose
 * collections pause the event loop): at ~4,000 calls/s a 1,024-row slice held records ~250 ms,
 * past a scavenge interval, and the gateway promoted ~1 KB per call; 128 rows (~30 ms) cut that
 * by four fifths. A slice serializes in ~0.14 ms (1,024 rows: ~1.2 ms, a stall of its own).
 */
export const HAND_OFF_STAGE_ROWS = 128;

/** Rows that reached storage already TabSeparated in the table's columns (LOGS bodies): inserted as they are. */
export interface EncodedRows {
  body: Uint8Array;
  rows: number;
}

/**
 * A sealed batch on its way to the encoder worker: `rows` rows in all, as serialized record
 * chunks (handOffRecords) and rows already encoded.
 */
export interface HandOff {
  rows: number;
  chunks: Uint8Array[];
  encoded: EncodedRows[];
}

/**
 * Records → the hand-off to the encoder worker: per chunk, one flat array of every row's fields
 * in TUPLE_FIELDS order, serialized at once in the structured-clone format. That costs the event
 * loop less than anything else measured (JSON of per-row tuples: ~2×, cloning the record objects:
 * ~3×), and a batch waiting in the writer's queue is off-heap buffers: no JS objects that outlive
 * young-generation GC and make the old generation's collections grow.
 */
export function handOffRecords(table: TableName, records: readonly RecordOf[TableName][]): HandOff {
  const names = TUPLE_FIELDS[table];
  const width = names.length;
  const chunks: Uint8Array[] = [];
  for (let start = 0; start < records.length; start += HAND_OFF_CHUNK_ROWS) {
    const end = Math.min(records.length, start + HAND_OFF_CHUNK_ROWS);
    const fields = new Array<unknown>((end - start) * width);
    let at = 0;
    for (let i = start; i < end; i++) {
      const record = records[i] as unknown as Record<string, unknown>;
      for (let f = 0; f < width; f++) fields[at++] = record[names[f]];
    }
    chunks.push(serialize(fields));
  }
  return { rows: records.length, chunks, encoded: [] };
}

/** The chunks' memory, when each owns its whole ArrayBuffer (v8.serialize's do): moved to the worker, not copied. */
function movable(chunks: readonly Uint8Array[]): ArrayBuffer[] {
  const buffers: ArrayBuffer[] = [];
  for (const chunk of chunks) {
    const { buffer } = chunk;
    if (!(buffer instanceof ArrayBuffer) || chunk.byteOffset !== 0 || chunk.byteLength !== buffer.byteLength) return [];
    buffers.push(buffer);
  }
  return buffers;
}

/**
 * A hand-off of rows already encoded, nothing to compress: the batch is their bytes as they are,
 * with no trip to an encoder thread. Why not go there anyway: the batch would come back as a
 * message, and what the event loop's thread receives from another thread stays in its heap
 * until a full collection (even moved, not copied; measured), so every batch of log lines would
 * bring the next mark-compact, and its pause, closer.
 */
function asEncoded(table: TableName, handOff: HandOff): EncodedBatch {
  const rows = handOff.encoded.reduce((sum, encoded) => sum + encoded.rows, 0);
  if (rows !== handOff.rows) throw new TypeError(`a hand-off of ${handOff.rows} ${table} rows held ${rows}`);
  const bodies = handOff.encoded.map((encoded) => encoded.body);
  const body = bodies.length === 1 ? bodies[0] : Buffer.concat(bodies);
  return { format: 'TabSeparated', columns: columnNames(table), body, gzip: false, rows, rawBytes: body.byteLength };
}

/** Encoder threads: one leaves a core for the event loop on small machines; two at most. */
const ENCODER_THREADS = Math.max(1, Math.min(2, os.availableParallelism() - 1));

/** What a spool file turned out to hold: its batch, or why it cannot be replayed. */
export type OpenedSpoolFile = { batch: EncodedBatch } | { damaged: string };

/** Given to each encoder thread at start. */
export interface EncoderWorkerData {
  /** The thread's nice value (thread-priority.ts). */
  threadNice: number;
}

export class Encoder {
  readonly #pool: Piscina<EncodeTask, EncodeReply>;
  #closed: Promise<void> | undefined;

  /** `threadNice`: the encoder threads' nice value (storage.threadNice). */
  constructor(threadNice: number) {
    const workerData: EncoderWorkerData = { threadNice };
    this.#pool = new Piscina<EncodeTask, EncodeReply>({
      filename: new URL('./encode-worker.mjs', import.meta.url).href,
      workerData,
      minThreads: 1,
      maxThreads: ENCODER_THREADS,
      idleTimeout: 30_000,
    });
  }

  async #run<K extends EncodeReply['op']>(task: EncodeTask & { op: K }, transferList: ArrayBuffer[] = []): Promise<Extract<EncodeReply, { op: K }>> {
    const reply = await this.#pool.run(task, { transferList });
    if (reply.op !== task.op) throw new Error(`encoder answered ${reply.op} to ${task.op}`);
    return reply as Extract<EncodeReply, { op: K }>;
  }

  /**
   * A batch's hand-off (handOffRecords) → TabSeparated rows (gzip'd when `gzip`), off the event
   * loop, and the rows it refused. The hand-off's buffers are moved to the worker, not copied:
   * they are unusable afterwards.
   */
  async encode(table: TableName, handOff: HandOff, gzip: boolean): Promise<{ batch: EncodedBatch; refused: RefusedRow[] }> {
    if (handOff.chunks.length === 0 && !gzip) return { batch: asEncoded(table, handOff), refused: [] };
    const { batch, refused } = await this.#run({ op: 'encode', table, handOff, gzip }, movable(handOff.chunks));
    return { batch, refused };
  }

  /** A batch cut in two halves (compressed as it was), or its one row's text. */
  async split(batch: EncodedBatch): Promise<{ halves: EncodedBatch[]; line: string }> {
    const { halves, line } = await this.#run({ op: 'split', batch });
    return { halves, line };
  }

  /** The spool file bytes of a batch: gzip'd, with a checksummed header (spool-file.ts). */
  async spoolFile(table: TableName, batch: EncodedBatch): Promise<Uint8Array> {
    return (await this.#run({ op: 'spoolFile', table, batch })).bytes;
  }

  /** Checks a spool file whole and gives back its batch, or says why it is damaged. */
  async openSpoolFile(table: TableName, file: string, rows: number, bytes: Uint8Array): Promise<OpenedSpoolFile> {
    const reply = await this.#run({ op: 'openSpoolFile', table, file, rows, bytes });
    return 'damaged' in reply ? { damaged: reply.damaged } : { batch: reply.batch };
  }

  /** Waits for running tasks and stops the threads; idempotent. */
  close(): Promise<void> {
    this.#closed ??= this.#pool.close();
    return this.#closed;
  }
}
