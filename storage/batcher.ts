/**
 * Hot path: one batcher per table. push() only appends to an array; batches leave by size
 * (maxBatchRows) or age (flushIntervalMs), one write at a time, retried with backoff. Rows carry
 * a stable deduplication key, so writing a batch twice is harmless.
 */

export interface BatcherOptions<T> {
  /** Table name, for errors and logs. */
  name: string;
  maxBatchRows: number;
  flushIntervalMs: number;
  /** Waits between attempts of a failing batch; attempts = retryDelaysMs.length + 1. */
  retryDelaysMs: readonly number[];
  /** Rows kept while writes fail; beyond it the oldest are dropped (and counted). */
  maxPendingRows: number;
  write(rows: T[]): Promise<void>;
  /** Told about every failed attempt; `final` when the batch gave up (its rows are requeued). */
  onWriteError(err: unknown, info: { table: string; rows: number; attempt: number; final: boolean }): void;
  /** Told when rows are dropped (pending buffer full, or pushed after close). */
  onDrop(info: { table: string; rows: number; reason: 'full' | 'closed' }): void;
}

export interface BatcherStats {
  recordsWritten: number;
  batchesWritten: number;
  retries: number;
  failedBatches: number;
  droppedRows: number;
  pendingRows: number;
}

type BatcherState = 'open' | 'closing' | 'closed';

const delay = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms).unref());

/** Collects rows of one table and writes them in batches; owned by storage, closed with it. */
export class Batcher<T> {
  readonly #options: BatcherOptions<T>;
  #pending: T[] = [];
  #inFlightRows = 0;
  #timer: NodeJS.Timeout | undefined;
  /** Drains run one after another on this chain. */
  #chain: Promise<void> = Promise.resolve();
  #drainQueued = false;
  #state: BatcherState = 'open';
  #closed: Promise<void> | undefined;
  readonly #stats = { recordsWritten: 0, batchesWritten: 0, retries: 0, failedBatches: 0, droppedRows: 0 };

  constructor(options: BatcherOptions<T>) {
    this.#options = options;
  }

  /** Queues rows; never throws. */
  push(rows: readonly T[]): void {
    if (rows.length === 0) return;
    if (this.#state !== 'open') {
      this.#drop(rows.length, 'closed');
      return;
    }
    for (const row of rows) this.#pending.push(row);
    this.#trim();
    if (this.#pending.length >= this.#options.maxBatchRows) this.#queueDrain();
    else this.#armTimer();
  }

  /** Writes every row pending now; rejects with the last error if a batch failed every attempt. */
  flush(): Promise<void> {
    return this.#enqueue();
  }

  /** Flushes, then refuses further rows; idempotent. */
  close(): Promise<void> {
    if (this.#closed) return this.#closed;
    this.#state = 'closing';
    this.#closed = this.#enqueue().finally(() => {
      this.#state = 'closed';
      this.#clearTimer();
    });
    return this.#closed;
  }

  stats(): BatcherStats {
    return { ...this.#stats, pendingRows: this.#pending.length + this.#inFlightRows };
  }

  #enqueue(): Promise<void> {
    const run = this.#chain.then(() => this.#drain());
    this.#chain = run.catch(() => undefined);
    return run;
  }

  /** A background drain (size or timer): errors were already reported through onWriteError. */
  #queueDrain(): void {
    this.#clearTimer();
    if (this.#drainQueued) return;
    this.#drainQueued = true;
    void this.#enqueue().catch(() => undefined);
  }

  #armTimer(): void {
    if (this.#timer !== undefined || this.#state !== 'open') return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#queueDrain();
    }, this.#options.flushIntervalMs);
    this.#timer.unref();
  }

  #clearTimer(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  /** Writes the rows pending when it starts, batch by batch; stops at the first batch that gives up. */
  async #drain(): Promise<void> {
    this.#drainQueued = false;
    this.#clearTimer();
    let budget = this.#pending.length;
    let failed = false;
    try {
      while (budget > 0 && this.#pending.length > 0) {
        const batch = this.#pending.splice(0, Math.min(this.#options.maxBatchRows, budget));
        budget -= batch.length;
        this.#inFlightRows = batch.length;
        try {
          await this.#writeWithRetry(batch);
        } catch (err) {
          failed = true;
          this.#pending = batch.concat(this.#pending);
          this.#trim();
          throw err;
        } finally {
          this.#inFlightRows = 0;
        }
      }
    } finally {
      // After a failure wait a full interval before trying again, rather than spinning.
      if (this.#state === 'open' && this.#pending.length > 0) {
        if (!failed && this.#pending.length >= this.#options.maxBatchRows) this.#queueDrain();
        else this.#armTimer();
      }
    }
  }

  async #writeWithRetry(batch: T[]): Promise<void> {
    const { retryDelaysMs, name } = this.#options;
    for (let attempt = 1; ; attempt++) {
      try {
        await this.#options.write(batch);
        this.#stats.recordsWritten += batch.length;
        this.#stats.batchesWritten += 1;
        return;
      } catch (err) {
        const final = attempt > retryDelaysMs.length;
        if (final) this.#stats.failedBatches += 1;
        this.#options.onWriteError(err, { table: name, rows: batch.length, attempt, final });
        if (final) throw err;
        this.#stats.retries += 1;
        await delay(retryDelaysMs[attempt - 1]);
      }
    }
  }

  /** Keeps the pending buffer bounded by dropping the oldest rows. */
  #trim(): void {
    const excess = this.#pending.length - this.#options.maxPendingRows;
    if (excess <= 0) return;
    this.#pending.splice(0, excess);
    this.#drop(excess, 'full');
  }

  #drop(rows: number, reason: 'full' | 'closed'): void {
    this.#stats.droppedRows += rows;
    this.#options.onDrop({ table: this.#options.name, rows, reason });
  }
}
