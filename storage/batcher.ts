/**
 * Hot path: one batcher per table. push() only appends to an array and adds up an estimate of
 * the rows' encoded size; a batch is sealed when it reaches maxBatchRows or maxBatchBytes, or
 * when its oldest row is flushIntervalMs old, and handed to the table's writer (which encodes,
 * inserts, retries and spools it). Nothing here waits on ClickHouse.
 */

export interface BatcherOptions<T> {
  /** Table name, for logs. */
  name: string;
  maxBatchRows: number;
  /** Estimated encoded bytes at which a batch is sealed. */
  maxBatchBytes: number;
  flushIntervalMs: number;
  /** Estimated encoded size of one row (cheap: no encoding on the event loop). */
  sizeOf(row: T): number;
  /** Takes a sealed batch; resolves when it is durable (written or spooled); never rejects. */
  submit(rows: T[]): Promise<void>;
  /** Told when rows are pushed after close (they are dropped and counted). */
  onDrop(info: { table: string; rows: number; reason: 'closed' }): void;
}

export interface BatcherStats {
  /** Rows not yet sealed into a batch. */
  pendingRows: number;
  droppedRows: number;
}

type BatcherState = 'open' | 'closing' | 'closed';

/** Collects rows of one table into batches; owned by storage, closed with it. */
export class Batcher<T> {
  readonly #o: BatcherOptions<T>;
  #pending: T[] = [];
  #pendingBytes = 0;
  #timer: NodeJS.Timeout | undefined;
  /** Sealed batches not yet durable. */
  readonly #outstanding = new Set<Promise<void>>();
  #state: BatcherState = 'open';
  #closed: Promise<void> | undefined;
  #droppedRows = 0;

  constructor(options: BatcherOptions<T>) {
    this.#o = options;
  }

  /** Queues rows; never throws, never waits. */
  push(rows: readonly T[]): void {
    if (rows.length === 0) return;
    if (this.#state !== 'open') {
      this.#droppedRows += rows.length;
      this.#o.onDrop({ table: this.#o.name, rows: rows.length, reason: 'closed' });
      return;
    }
    const { maxBatchRows, maxBatchBytes, sizeOf } = this.#o;
    for (const row of rows) {
      this.#pending.push(row);
      this.#pendingBytes += sizeOf(row);
      if (this.#pending.length >= maxBatchRows || this.#pendingBytes >= maxBatchBytes) this.#seal();
    }
    if (this.#pending.length > 0) this.#armTimer();
  }

  /** Seals what is pending and resolves once every sealed batch is durable (in ClickHouse or the spool). */
  async flush(): Promise<void> {
    this.#seal();
    await Promise.all([...this.#outstanding]);
  }

  /** Flushes, then refuses further rows; idempotent. */
  close(): Promise<void> {
    if (this.#closed) return this.#closed;
    this.#state = 'closing';
    this.#closed = this.flush().finally(() => {
      this.#state = 'closed';
      this.#clearTimer();
    });
    return this.#closed;
  }

  stats(): BatcherStats {
    return { pendingRows: this.#pending.length, droppedRows: this.#droppedRows };
  }

  #seal(): void {
    this.#clearTimer();
    if (this.#pending.length === 0) return;
    const batch = this.#pending;
    this.#pending = [];
    this.#pendingBytes = 0;
    const durable = this.#o.submit(batch).finally(() => this.#outstanding.delete(durable));
    this.#outstanding.add(durable);
  }

  #armTimer(): void {
    if (this.#timer !== undefined || this.#state !== 'open') return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#seal();
    }, this.#o.flushIntervalMs);
    this.#timer.unref();
  }

  #clearTimer(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
  }
}
