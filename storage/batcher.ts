/**
 * Hot path: one batcher per table. push() only appends to an array and adds up an estimate of
 * the rows' encoded size; a batch is sealed when it reaches maxBatchRows or maxBatchBytes, or
 * when its oldest row is flushIntervalMs old, and handed to the table's writer (which encodes,
 * inserts, retries and spools it). Nothing here waits on ClickHouse.
 */

/**
 * Turns rows into a compact form as they come, `rows` at a time, instead of holding every row of
 * a batch as a JS object until it is sealed: rows held for a whole flush interval outlive the
 * young generation, and the old-generation collections they cause pause the event loop.
 */
export interface BatcherStage<T, S> {
  rows: number;
  run(rows: T[]): S;
}

export interface BatcherOptions<T, S = never> {
  /** Table name, for logs. */
  name: string;
  maxBatchRows: number;
  /** Estimated encoded bytes at which a batch is sealed. */
  maxBatchBytes: number;
  flushIntervalMs: number;
  /** Estimated encoded size of one row (cheap: no encoding on the event loop). */
  sizeOf(row: T): number;
  /** Optional: stages full slices of pending rows as they arrive (see BatcherStage). */
  stage?: BatcherStage<T, S>;
  /**
   * Takes a sealed batch: the slices staged so far (in order, `stagedRows` rows in all), then the
   * rows not staged. Resolves when it is durable (written or spooled); never rejects.
   */
  submit(rows: T[], staged: S[], stagedRows: number): Promise<void>;
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
export class Batcher<T, S = never> {
  readonly #o: BatcherOptions<T, S>;
  #pending: T[] = [];
  #staged: S[] = [];
  #stagedRows = 0;
  #pendingBytes = 0;
  #timer: NodeJS.Timeout | undefined;
  /** Sealed batches not yet durable. */
  readonly #outstanding = new Set<Promise<void>>();
  #state: BatcherState = 'open';
  #closed: Promise<void> | undefined;
  #droppedRows = 0;

  constructor(options: BatcherOptions<T, S>) {
    this.#o = options;
  }

  /** Queues rows; never throws, never waits. */
  push(rows: readonly T[]): void {
    if (rows.length === 0 || this.#droppedClosed(rows.length)) return;
    const { sizeOf, stage } = this.#o;
    for (const row of rows) {
      this.#pending.push(row);
      this.#pendingBytes += sizeOf(row);
      if (this.#full()) this.#seal();
      else if (stage && this.#pending.length >= stage.rows) {
        this.#staged.push(stage.run(this.#pending));
        this.#stagedRows += this.#pending.length;
        this.#pending = [];
      }
    }
    if (this.#pending.length > 0 || this.#stagedRows > 0) this.#armTimer();
  }

  /**
   * Queues a slice staged elsewhere (rows already in the stage's form, e.g. encoded by their
   * sender): `rows` rows of about `bytes` encoded bytes. A batch it fills is sealed with it whole,
   * so a batch may exceed maxBatchRows by one slice. Never throws, never waits.
   */
  pushStaged(slice: S, rows: number, bytes: number): void {
    if (rows === 0 || this.#droppedClosed(rows)) return;
    this.#staged.push(slice);
    this.#stagedRows += rows;
    this.#pendingBytes += bytes;
    if (this.#full()) this.#seal();
    else this.#armTimer();
  }

  /** Counts and reports `rows` pushed after close; true when they were dropped so. */
  #droppedClosed(rows: number): boolean {
    if (this.#state === 'open') return false;
    this.#droppedRows += rows;
    this.#o.onDrop({ table: this.#o.name, rows, reason: 'closed' });
    return true;
  }

  /** The open batch reached maxBatchRows or maxBatchBytes. */
  #full(): boolean {
    return this.#stagedRows + this.#pending.length >= this.#o.maxBatchRows || this.#pendingBytes >= this.#o.maxBatchBytes;
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
    return { pendingRows: this.#stagedRows + this.#pending.length, droppedRows: this.#droppedRows };
  }

  #seal(): void {
    this.#clearTimer();
    if (this.#pending.length === 0 && this.#stagedRows === 0) return;
    const batch = this.#pending;
    const staged = this.#staged;
    const stagedRows = this.#stagedRows;
    this.#pending = [];
    this.#staged = [];
    this.#stagedRows = 0;
    this.#pendingBytes = 0;
    const durable = this.#o.submit(batch, staged, stagedRows).finally(() => this.#outstanding.delete(durable));
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
