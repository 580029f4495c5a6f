/**
 * The way of one table's sealed batches into ClickHouse. A batch is encoded (and compressed) in
 * the encoder worker, inserted with retries, and on an outage written to the disk spool, from
 * which a replay loop inserts it later, oldest first. The batch queue is bounded: when it is
 * full, or while older batches of the table still wait in the spool (so replay order stays
 * oldest first), new batches go straight to the spool. A batch ClickHouse refuses as bad data is
 * cut in halves until the poison rows are alone; they go to the dead-letter file with their
 * error and the rest lands. Replay waits out an outage however long it lasts, but a spool file
 * that is damaged, or that ClickHouse refuses for another reason replayMaxAttempts times, is set
 * aside in the dead-letter area with the reason (counted, never deleted), so one bad file cannot
 * hold the table's replay forever. submit() never rejects and never blocks the caller's
 * event-loop turn.
 */
import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import type { Backend, EncodedBatch } from './backend.ts';
import { handOffRecords, type Encoder, type HandOff } from './encoder.ts';
import { classifyInsertError } from './errors.ts';
import type { RecordOf } from './rows.ts';
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
  /** Replays of a spooled batch ClickHouse refuses (neither bad data nor an outage) before it is set aside. */
  replayMaxAttempts: number;
  /** Sealed batches waiting for an insert slot before new ones go to the spool. */
  maxQueuedBatches: number;
  /** Inserts of this table in flight at once. */
  concurrency: number;
  /** gzip live inserts (a server across a network); spooled batches are always gzip'd. */
  compressInserts: boolean;
}

/** Why a replay did not get its batch out of the spool, when it is worth another try later. */
interface ReplayFailure {
  kind: 'outage' | 'refused';
  err: unknown;
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** A table's counters as the writer keeps them (the storage adds pending rows, the spool's contents and settings). */
export type WriterStats = Omit<TableStats, 'pendingRows' | 'compressInserts' | 'spooledBatches' | 'spooledRows'>;

interface Queued {
  /** The batch as encoder.ts handOffRecords made it: off-heap bytes, not the records. */
  handOff: HandOff;
  batchId: string;
  done: () => void;
}

type WriterState = 'open' | 'closing' | 'closed';

/** Queued batches as one: their rows in order, named after the first (`<id>-<count>`). */
function coalesce(group: readonly Queued[]): Queued {
  const chunks = group.flatMap((item) => item.handOff.chunks);
  const encoded = group.flatMap((item) => item.handOff.encoded);
  const rows = group.reduce((sum, item) => sum + item.handOff.rows, 0);
  return { handOff: { rows, chunks, encoded }, batchId: `${group[0].batchId}-${group.length}`, done: () => undefined };
}

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
  readonly #stats = { recordsWritten: 0, batchesWritten: 0, retries: 0, batchesSpooled: 0, batchesReplayed: 0, deadLetteredRows: 0, deadLetteredBatches: 0, droppedRows: 0 };

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
    return this.#enqueue(handOffRecords(this.#o.table, records), batchId);
  }

  /**
   * Takes a sealed batch whose first rows were handed off already, slice by slice as they came
   * (`staged`, `stagedRows` rows in all: the batcher's stage), followed by `records`.
   */
  submitStaged(records: readonly RecordOf[TableName][], staged: readonly HandOff[], stagedRows: number): Promise<void> {
    if (stagedRows === 0) return this.submit(records);
    const batchId = newBatchId(this.#idPrefix, ++this.#seq);
    const rows = stagedRows + records.length;
    if (this.#state === 'closed') {
      this.#stats.droppedRows += rows;
      this.#o.logger.error({ table: this.#o.table, rows }, 'storage dropped rows submitted after close');
      return Promise.resolve();
    }
    const chunks = staged.flatMap((slice) => slice.chunks);
    const encoded = staged.flatMap((slice) => slice.encoded);
    // The rows not staged are fewer than a stage's slice.
    if (records.length > 0) chunks.push(...handOffRecords(this.#o.table, records).chunks);
    return this.#enqueue({ rows, chunks, encoded }, batchId);
  }

  #enqueue(handOff: HandOff, batchId: string): Promise<void> {
    if (this.#o.spool.count(this.#o.table) > 0 || this.#queue.length >= this.#o.maxQueuedBatches) {
      return this.#spoolBatch(handOff, batchId);
    }
    return new Promise((resolve) => {
      this.#queue.push({ handOff, batchId, done: resolve });
      this.#pump();
    });
  }

  /** Dead-letters rows refused before they were batched (each with `error`); resolves once they are recorded. */
  async refuse(error: string, rows: readonly string[]): Promise<void> {
    const batchId = newBatchId(this.#idPrefix, ++this.#seq);
    for (const row of rows) await this.#deadLetter(batchId, error, row);
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
      // Batches that waited for an insert slot share one insert (spread evenly over the free
      // slots): fewer, bigger parts for ClickHouse to write and merge, and no added wait.
      const group = this.#queue.splice(0, Math.ceil(this.#queue.length / (this.#o.concurrency - this.#active)));
      const item = group.length === 1 ? group[0] : coalesce(group);
      this.#active += 1;
      void this.#writeLive(item)
        .catch((err: unknown) => {
          // Only a bug gets here (every expected failure is handled inside); count the rows, never hide them.
          this.#o.logger.error({ err, table: this.#o.table, batchId: item.batchId, rows: item.handOff.rows }, 'storage lost a batch to an unexpected error');
          this.#stats.droppedRows += item.handOff.rows;
        })
        .finally(() => {
          this.#active -= 1;
          for (const waiting of group) waiting.done();
          this.#pump();
          if (this.#queue.length === 0 && this.#active === 0) this.#notifyIdle();
        });
    }
  }

  /** A live batch: encode, insert with retries; then dead-letter what is poison and spool what is not in. */
  async #writeLive(item: Queued): Promise<void> {
    const encoded = await this.#encode(item.handOff, item.batchId);
    if (!encoded) return;
    const { retryDelaysMs } = this.#o;
    for (let attempt = 1; ; attempt++) {
      try {
        await this.#o.backend.insertEncoded(this.#o.table, encoded);
        this.#written(encoded.rows);
        return;
      } catch (err) {
        if (classifyInsertError(err) === 'poison') {
          try {
            await this.#isolatePoison(encoded, item.batchId, err);
          } catch (splitErr) {
            // The encoder could not cut the batch: spool it whole, replay sets it aside if it stays so.
            this.#o.logger.error({ err: splitErr, table: this.#o.table, batchId: item.batchId }, 'storage could not bisect a refused batch; spooling it');
            await this.#spoolEncoded(encoded, item.batchId);
          }
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
  async #encode(handOff: HandOff, batchId: string): Promise<EncodedBatch | undefined> {
    const { rows } = handOff;
    let encoded: Awaited<ReturnType<Encoder['encode']>>;
    try {
      encoded = await this.#o.encoder.encode(this.#o.table, handOff, this.#o.compressInserts);
    } catch (err) {
      // The fields were taken from typed records in this process: a failure here is a bug, still counted and logged.
      this.#o.logger.error({ err, table: this.#o.table, batchId, rows }, 'storage could not encode a batch; rows dropped');
      this.#stats.droppedRows += rows;
      return undefined;
    }
    for (const refused of encoded.refused) await this.#deadLetter(batchId, refused.error, refused.row);
    return encoded.batch.rows > 0 ? encoded.batch : undefined;
  }

  #spoolBatch(handOff: HandOff, batchId: string): Promise<void> {
    const run = this.#spoolChain.then(async () => {
      const encoded = await this.#encode(handOff, batchId);
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

  async #spoolEncoded(encoded: EncodedBatch, batchId: string): Promise<void> {
    try {
      const file = await this.#o.encoder.spoolFile(this.#o.table, encoded);
      await this.#o.spool.put(this.#o.table, batchId, encoded.rows, file);
      this.#stats.batchesSpooled += 1;
    } catch (err) {
      this.#o.logger.error({ err, table: this.#o.table, rows: encoded.rows }, 'storage could not write a batch to the spool; rows dropped');
      this.#stats.droppedRows += encoded.rows;
      return;
    }
    this.replay();
  }

  /**
   * Replays spooled batches oldest first; backs off while ClickHouse fails; stops when the spool is
   * empty or on close. Outages are waited out without limit; a batch refused for another reason is
   * set aside after replayMaxAttempts tries (counted per batch, from this process's start).
   */
  async #replayLoop(): Promise<void> {
    const { spool, table, logger, replayMaxAttempts } = this.#o;
    const firstDelayMs = this.#o.retryDelaysMs[0] ?? 100;
    let delayMs = firstDelayMs;
    let refusedFile = '';
    let refusals = 0;
    for (;;) {
      if (this.#state !== 'open') return;
      const entry = spool.oldest(table);
      if (!entry) return;
      if (entry.file !== refusedFile) {
        refusedFile = entry.file;
        refusals = 0;
      }
      const failure = await this.#replayOne(entry).catch((err: unknown): ReplayFailure => ({ kind: 'refused', err }));
      if (!failure) {
        delayMs = firstDelayMs;
        continue;
      }
      if (failure.kind === 'refused') {
        refusals += 1;
        if (refusals >= replayMaxAttempts && (await this.#setAside(entry, `refused on ${refusals} replays: ${messageOf(failure.err)}`))) {
          delayMs = firstDelayMs;
          continue;
        }
      }
      logger.warn(
        { err: failure.err, table, batchId: entry.batchId, failure: failure.kind, refusals, spooledBatches: spool.count(table), retryInMs: delayMs },
        'storage spool replay failed; backing off',
      );
      await this.#sleep(delayMs);
      delayMs = Math.min(delayMs * 2, this.#o.replayMaxDelayMs);
    }
  }

  /** One spooled batch: read, checked, inserted (or bisected, or set aside); undefined once it has left the spool. */
  async #replayOne(entry: SpoolEntry): Promise<ReplayFailure | undefined> {
    const { spool, table, backend, encoder } = this.#o;
    let bytes: Buffer;
    try {
      bytes = await spool.read(entry);
    } catch (err) {
      if (!isMissingFile(err)) return { kind: 'refused', err };
      // Deleted by hand (or by the spool's bound) meanwhile: nothing left to replay.
      await spool.remove(entry);
      return undefined;
    }
    const opened = await encoder.openSpoolFile(table, entry.file, entry.rows, bytes);
    if ('damaged' in opened) {
      const reason = `damaged spool file: ${opened.damaged}`;
      return (await this.#setAside(entry, reason)) ? undefined : { kind: 'refused', err: new Error(reason) };
    }
    try {
      await backend.insertEncoded(table, opened.batch);
      this.#written(opened.batch.rows);
    } catch (err) {
      const kind = classifyInsertError(err);
      if (kind !== 'poison') return { kind, err };
      try {
        await this.#isolatePoison(opened.batch, entry.batchId, err);
      } catch (splitErr) {
        const reason = `unreadable batch (could not bisect it after ClickHouse refused it: ${messageOf(err)}): ${messageOf(splitErr)}`;
        return (await this.#setAside(entry, reason)) ? undefined : { kind: 'refused', err: splitErr };
      }
    }
    await spool.remove(entry);
    this.#stats.batchesReplayed += 1;
    return undefined;
  }

  /** Moves a spooled batch that cannot be replayed to the dead-letter area; false if even that failed (it stays spooled). */
  async #setAside(entry: SpoolEntry, reason: string): Promise<boolean> {
    const { spool, table, logger } = this.#o;
    try {
      const file = await spool.setAside(entry, reason);
      this.#stats.deadLetteredBatches += 1;
      this.#stats.deadLetteredRows += entry.rows;
      logger.error({ table, batchId: entry.batchId, rows: entry.rows, reason, file }, 'storage set a spooled batch aside in the dead-letter area');
      return true;
    } catch (err) {
      logger.error({ err, table, batchId: entry.batchId, reason }, 'storage could not set a spooled batch aside; it stays in the spool');
      return false;
    }
  }

  /**
   * Bisects a batch ClickHouse refused as bad data: halves that land are counted, a single row
   * that is refused goes to dead-letter with the error. A half that fails for another reason
   * (ClickHouse went away meanwhile) is spooled.
   */
  async #isolatePoison(encoded: EncodedBatch, batchId: string, err: unknown): Promise<void> {
    const split = await this.#o.encoder.split(encoded);
    if (split.halves.length === 0) {
      await this.#deadLetter(batchId, messageOf(err), split.line);
      return;
    }
    for (const [i, half] of split.halves.entries()) {
      const halfId = `${batchId}_${i}`;
      try {
        await this.#o.backend.insertEncoded(this.#o.table, half);
        this.#written(half.rows);
      } catch (halfErr) {
        if (classifyInsertError(halfErr) === 'poison') await this.#isolatePoison(half, halfId, halfErr);
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
