/**
 * The way of one table's sealed batches into ClickHouse. A batch is encoded (and compressed) in
 * the encoder worker, inserted with retries, and on an outage written to the disk spool, from
 * which a replay loop inserts it later, oldest first. The batch queue is bounded: when it is
 * full, or while older batches of the table still wait in the spool (so replay order stays
 * oldest first), new batches go straight to the spool. A batch ClickHouse refuses as bad data is
 * cut in halves until the poison rows are alone; they go to the dead-letter file with their
 * error and the rest lands. submit() never rejects and never blocks the caller's event-loop turn.
 */
import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import type { Backend } from './backend.ts';
import type { EncodedBody, RefusedRow } from './encode-worker.ts';
import type { Encoder } from './encoder.ts';
import { isPoisonError } from './errors.ts';
import { toTupleJson, type RecordOf } from './rows.ts';
import type { TableName } from './schema.ts';
import type { TableStats } from './types.ts';
import type { Spool, SpoolEntry } from './spool.ts';

export interface WriterOptions {
  table: TableName;
  backend: Backend;
  encoder: Encoder;
  spool: Spool;
  logger: Logger;
  /** Waits between insert attempts of a live batch; after the last one the batch is spooled. */
  retryDelaysMs: readonly number[];
  /** Replay backs off from retryDelaysMs[0] doubling up to this while ClickHouse stays down. */
  replayMaxDelayMs: number;
  /** Sealed batches waiting for an insert slot before new ones go to the spool. */
  maxQueuedBatches: number;
  /** Inserts of this table in flight at once. */
  concurrency: number;
  /** gzip live inserts (a server across a network); spooled batches are always gzip'd. */
  compressInserts: boolean;
}

/** A table's counters as the writer keeps them (the storage adds pending rows, the spool's contents and settings). */
export type WriterStats = Omit<TableStats, 'pendingRows' | 'compressInserts' | 'spooledBatches' | 'spooledRows'>;

interface Queued {
  /** The batch as its tuple JSON: a string holds far less memory than the records. */
  tuples: string;
  rows: number;
  batchId: string;
  done: () => void;
}

type WriterState = 'open' | 'closing' | 'closed';

/** A stable id per batch: it names the spool file and dead letters, so a batch is traceable through retries and replays. */
function newBatchId(prefix: string, seq: number): string {
  return `${prefix}${seq.toString(36)}`;
}

export class TableWriter {
  readonly #o: WriterOptions;
  readonly #queue: Queued[] = [];
  readonly #idPrefix = randomBytes(4).toString('hex');
  #seq = 0;
  #active = 0;
  #replaying: Promise<void> | undefined;
  #state: WriterState = 'open';
  /** Batches going straight to the spool are encoded and written one after another, so they keep their order. */
  #spoolChain: Promise<void> = Promise.resolve();
  /** Back-off waits in progress; close() cuts them short. */
  readonly #wakers = new Set<() => void>();
  readonly #idleWaiters = new Set<() => void>();
  readonly #stats = { recordsWritten: 0, batchesWritten: 0, retries: 0, batchesSpooled: 0, batchesReplayed: 0, deadLetteredRows: 0, droppedRows: 0 };

  constructor(options: WriterOptions) {
    this.#o = options;
  }

  /** Takes a sealed batch; resolves once it is durable: in ClickHouse, in the spool or dead-lettered. */
  submit(records: readonly RecordOf[TableName][]): Promise<void> {
    if (records.length === 0) return Promise.resolve();
    const batchId = newBatchId(this.#idPrefix, ++this.#seq);
    if (this.#state === 'closed') {
      this.#stats.droppedRows += records.length;
      this.#o.logger.error({ table: this.#o.table, rows: records.length }, 'storage dropped rows submitted after close');
      return Promise.resolve();
    }
    const tuples = toTupleJson(this.#o.table, records);
    if (this.#o.spool.count(this.#o.table) > 0 || this.#queue.length >= this.#o.maxQueuedBatches) {
      return this.#spoolBatch(tuples, records.length, batchId);
    }
    return new Promise((resolve) => {
      this.#queue.push({ tuples, rows: records.length, batchId, done: resolve });
      this.#pump();
    });
  }

  /** Starts replaying the table's spooled batches if any wait and no replay runs. */
  replay(): void {
    if (this.#replaying || this.#state === 'closed' || this.#o.spool.count(this.#o.table) === 0) return;
    this.#replaying = this.#replayLoop().finally(() => {
      this.#replaying = undefined;
      // A batch spooled while the loop was finding the spool empty would otherwise wait for the next one.
      if (this.#state === 'open' && this.#o.spool.count(this.#o.table) > 0) this.replay();
      this.#notifyIdle();
    });
  }

  /** Resolves when nothing of this table waits: no queued or in-flight batch, an empty spool. */
  whenIdle(): Promise<void> {
    if (this.#idle()) return Promise.resolve();
    this.replay();
    return new Promise((resolve) => {
      const check = (): void => {
        if (this.#idle()) resolve();
        else this.#idleWaiters.add(check);
      };
      this.#idleWaiters.add(check);
    });
  }

  stats(): WriterStats {
    return { ...this.#stats, queuedBatches: this.#queue.length + this.#active };
  }

  /** Waits for queued and in-flight batches (they land or spool), stops replay; the spool stays for the next open. */
  async close(): Promise<void> {
    if (this.#state !== 'open') return;
    this.#state = 'closing';
    for (const wake of [...this.#wakers]) wake();
    await new Promise<void>((resolve) => {
      const check = (): void => {
        if (this.#queue.length === 0 && this.#active === 0) resolve();
        else this.#idleWaiters.add(check);
      };
      check();
    });
    await this.#replaying;
    this.#state = 'closed';
  }

  #idle(): boolean {
    return this.#queue.length === 0 && this.#active === 0 && !this.#replaying && this.#o.spool.count(this.#o.table) === 0;
  }

  #notifyIdle(): void {
    for (const waiter of [...this.#idleWaiters]) {
      this.#idleWaiters.delete(waiter);
      waiter();
    }
  }

  #pump(): void {
    while (this.#active < this.#o.concurrency && this.#queue.length > 0) {
      const item = this.#queue.shift()!;
      this.#active += 1;
      void this.#writeLive(item)
        .catch((err: unknown) => {
          // Only a bug gets here (every expected failure is handled inside); count the rows, never hide them.
          this.#o.logger.error({ err, table: this.#o.table, batchId: item.batchId, rows: item.rows }, 'storage lost a batch to an unexpected error');
          this.#stats.droppedRows += item.rows;
        })
        .finally(() => {
          this.#active -= 1;
          item.done();
          this.#pump();
          if (this.#queue.length === 0 && this.#active === 0) this.#notifyIdle();
        });
    }
  }

  /** A live batch: encode, insert with retries; then dead-letter what is poison and spool what is not in. */
  async #writeLive(item: Queued): Promise<void> {
    const encoded = await this.#encode(item.tuples, item.rows, item.batchId);
    if (!encoded) return;
    const { retryDelaysMs } = this.#o;
    for (let attempt = 1; ; attempt++) {
      try {
        await this.#o.backend.insertEncoded(this.#o.table, encoded.body, encoded.gzip);
        this.#written(encoded.rows);
        return;
      } catch (err) {
        if (isPoisonError(err)) {
          await this.#isolatePoison(encoded, item.batchId, err);
          return;
        }
        const final = attempt > retryDelaysMs.length || this.#state !== 'open';
        this.#o.logger.warn({ err, table: this.#o.table, batchId: item.batchId, rows: encoded.rows, attempt }, final ? 'storage batch spooled after failed inserts' : 'storage batch insert failed; retrying');
        if (final) {
          await this.#spoolEncoded(encoded, item.batchId);
          return;
        }
        this.#stats.retries += 1;
        await this.#sleep(retryDelaysMs[attempt - 1]);
      }
    }
  }

  /** Encodes in the worker; dead-letters refused rows; undefined when nothing is left to insert. */
  async #encode(tuples: string, rows: number, batchId: string): Promise<EncodedBody | undefined> {
    let encoded: EncodedBody & { refused: RefusedRow[] };
    try {
      encoded = await this.#o.encoder.encode(this.#o.table, tuples, this.#o.compressInserts);
    } catch (err) {
      // The tuples were made by toTupleJson in this process: a failure here is a bug, still counted and logged.
      this.#o.logger.error({ err, table: this.#o.table, batchId, rows }, 'storage could not encode a batch; rows dropped');
      this.#stats.droppedRows += rows;
      return undefined;
    }
    for (const refused of encoded.refused) await this.#deadLetter(batchId, refused.error, refused.row);
    return encoded.rows > 0 ? encoded : undefined;
  }

  #spoolBatch(tuples: string, rows: number, batchId: string): Promise<void> {
    const run = this.#spoolChain.then(async () => {
      const encoded = await this.#encode(tuples, rows, batchId);
      if (encoded) await this.#spoolEncoded(encoded, batchId);
    });
    this.#spoolChain = run.catch(() => undefined);
    return run;
  }

  async #deadLetter(batchId: string, error: string, row: string): Promise<void> {
    this.#o.logger.error({ table: this.#o.table, batchId, error }, 'storage dead-lettered a row');
    try {
      await this.#o.spool.deadLetter({ timeMs: Date.now(), table: this.#o.table, batchId, error, row });
      this.#stats.deadLetteredRows += 1;
    } catch (err) {
      this.#o.logger.error({ err, table: this.#o.table, batchId, row }, 'storage could not write the dead-letter file; row dropped');
      this.#stats.droppedRows += 1;
    }
  }

  async #spoolEncoded(encoded: EncodedBody, batchId: string): Promise<void> {
    try {
      const gzipped = await this.#o.encoder.compress(encoded);
      await this.#o.spool.put(this.#o.table, batchId, gzipped.rows, gzipped.body);
      this.#stats.batchesSpooled += 1;
    } catch (err) {
      this.#o.logger.error({ err, table: this.#o.table, rows: encoded.rows }, 'storage could not write a batch to the spool; rows dropped');
      this.#stats.droppedRows += encoded.rows;
      return;
    }
    this.replay();
  }

  /** Replays spooled batches oldest first; backs off while ClickHouse fails; stops when the spool is empty or on close. */
  async #replayLoop(): Promise<void> {
    const { spool, table, backend, logger } = this.#o;
    let delayMs = this.#o.retryDelaysMs[0] ?? 100;
    for (;;) {
      if (this.#state !== 'open') return;
      const entry = spool.oldest(table);
      if (!entry) return;
      try {
        const body = await spool.read(entry);
        try {
          await backend.insertEncoded(table, body, true);
          this.#written(entry.rows);
        } catch (err) {
          if (!isPoisonError(err)) throw err;
          try {
            await this.#isolatePoison({ body, gzip: true, rows: entry.rows, rawBytes: 0 }, entry.batchId, err);
          } catch (splitErr) {
            // Not even readable as a batch (a damaged file): keep its bytes in the dead-letter file rather than retry forever.
            const detail = splitErr instanceof Error ? splitErr.message : String(splitErr);
            await this.#deadLetter(entry.batchId, `unreadable spool file ${entry.file}: ${detail}`, Buffer.from(body).toString('base64'));
          }
        }
        await spool.remove(entry);
        this.#stats.batchesReplayed += 1;
        delayMs = this.#o.retryDelaysMs[0] ?? 100;
      } catch (err) {
        if (isMissingFile(err)) {
          await spool.remove(entry);
          continue;
        }
        logger.warn({ err, table, batchId: entry.batchId, spooledBatches: spool.count(table), retryInMs: delayMs }, 'storage spool replay failed; backing off');
        await this.#sleep(delayMs);
        delayMs = Math.min(delayMs * 2, this.#o.replayMaxDelayMs);
      }
    }
  }

  /**
   * Bisects a batch ClickHouse refused as bad data: halves that land are counted, a single row
   * that is refused goes to dead-letter with the error. A half that fails for another reason
   * (ClickHouse went away meanwhile) is spooled.
   */
  async #isolatePoison(encoded: EncodedBody, batchId: string, err: unknown): Promise<void> {
    const split = await this.#o.encoder.split(encoded);
    if (split.halves.length === 0) {
      await this.#deadLetter(batchId, err instanceof Error ? err.message : String(err), split.line);
      return;
    }
    for (const [i, half] of split.halves.entries()) {
      const halfId = `${batchId}_${i}`;
      try {
        await this.#o.backend.insertEncoded(this.#o.table, half.body, half.gzip);
        this.#written(half.rows);
      } catch (halfErr) {
        if (isPoisonError(halfErr)) await this.#isolatePoison(half, halfId, halfErr);
        else await this.#spoolEncoded(half, halfId);
      }
    }
  }

  #written(rows: number): void {
    this.#stats.recordsWritten += rows;
    this.#stats.batchesWritten += 1;
  }

  /** A back-off wait that close() cuts short. */
  #sleep(ms: number): Promise<void> {
    if (this.#state !== 'open') return Promise.resolve();
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.#wakers.delete(done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      timer.unref();
      this.#wakers.add(done);
    });
  }
}

function isMissingFile(err: unknown): boolean {
  return typeof err === 'object' && err !== null && (err as { code?: unknown }).code === 'ENOENT';
}

export type { SpoolEntry };
