/**
 * Hot path: one batcher per table. push() only appends to an array and adds up an estimate of
 * the rows' encoded size; pushBytes() copies rows already encoded into the batch's staging
 * buffer. A batch is sealed when it reaches maxBatchRows or maxBatchBytes, or when its oldest row
 * is flushIntervalMs old, and handed to the table's writer (which encodes, inserts, retries and
 * spools it). Nothing here waits on ClickHouse.
 */

/** The least room a staging buffer is made with. */
const MIN_STAGING_BYTES = 64 * 1024;
/** A returned buffer this many times larger than the batches lately staged is let go (after a burst). */
const STAGING_SHRINK_FACTOR = 4;
/** Buffers kept for reuse: one being filled while sealed batches are written needs few. */
const MAX_SPARE_STAGING_BUFFERS = 2;

/** A sealed batch's staged bytes: a view into a staging buffer, lent until release(). */
export interface StagedBytes {
  bytes: Buffer;
  /** Gives the buffer back for later batches; the bytes must not be read afterwards. */
  release(): void;
}

/**
 * Bytes staged for the open batch, copied in as they come, in buffers that are reused batch
 * after batch: a sealed batch borrows the one it filled until it is durable, then gives it back.
 * Why not keep the buffers the bytes came in, or copy them out at seal into a new one: either
 * buffer lives through the flush interval or the insert; V8 frees an old buffer's memory only
 * at a full collection and counts it against the heap's growth until then, so a steady flow of
 * such buffers (a LOGS body per executor every 100 ms) brings mark-compacts, and their pauses,
 * sooner. Reused buffers are allocated once.
 */
export class StagingBytes {
  #bytes: Buffer = Buffer.allocUnsafeSlow(MIN_STAGING_BYTES);
  #length = 0;
  readonly #spare: Buffer[] = [];
  /** Room the last batches needed (twice the last one's bytes, at least MIN_STAGING_BYTES). */
  #wanted = MIN_STAGING_BYTES;

  get length(): number {
    return this.#length;
  }

  /** Room the buffer being filled has (tests). */
  get capacity(): number {
    return this.#bytes.length;
  }

  /** Buffers waiting for reuse (tests). */
  get spare(): number {
    return this.#spare.length;
  }

  append(src: Uint8Array): void {
    const needed = this.#length + src.length;
    if (needed > this.#bytes.length) {
      let capacity = this.#bytes.length;
      while (capacity < needed) capacity *= 2;
      const bytes = Buffer.allocUnsafeSlow(capacity);
      this.#bytes.copy(bytes, 0, 0, this.#length);
      this.#bytes = bytes;
    }
    this.#bytes.set(src, this.#length);
    this.#length = needed;
  }

  /** The staged bytes, lent with their buffer until release(); the stage goes on in another buffer. */
  take(): StagedBytes {
    const buffer = this.#bytes;
    const bytes = buffer.subarray(0, this.#length);
    this.#wanted = Math.max(MIN_STAGING_BYTES, 2 * this.#length);
    this.#length = 0;
    this.#bytes = this.#spare.pop() ?? Buffer.allocUnsafeSlow(this.#wanted);
    let released = false;
    return {
      bytes,
      release: () => {
        if (released) return;
        released = true;
        const oversized = buffer.length > STAGING_SHRINK_FACTOR * this.#wanted;
        if (!oversized && this.#spare.length < MAX_SPARE_STAGING_BUFFERS) this.#spare.push(buffer);
      },
    };
  }
}

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
   * Needed for pushBytes(): the slice of a sealed batch's staged bytes (`rows` rows). The bytes
   * are lent: valid until the batch's submit() has resolved, then reused.
   */
  bytesSlice?(bytes: Buffer, rows: number): S;
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
  /** Rows staged in all: in #staged's slices and in #stagedBytes. */
  #stagedRows = 0;
  readonly #stagedBytes = new StagingBytes();
  #stagedBytesRows = 0;
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
   * Queues rows already in their encoded form (e.g. encoded by their sender): `rows` rows in
   * `bytes`, copied into the staging buffer (see StagingBytes), so the caller's buffer is free at
   * once. A batch they fill is sealed with them whole, so a batch may exceed maxBatchRows by one
   * call's rows. Never waits; throws only for a batcher made without bytesSlice (a bug).
   */
  pushBytes(bytes: Uint8Array, rows: number): void {
    if (rows === 0 || this.#droppedClosed(rows)) return;
    if (!this.#o.bytesSlice) throw new TypeError(`the ${this.#o.name} batcher takes no encoded rows (no bytesSlice)`);
    this.#stagedBytes.append(bytes);
    this.#stagedBytesRows += rows;
    this.#stagedRows += rows;
    this.#pendingBytes += bytes.length;
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
    let lent: StagedBytes | undefined;
    if (this.#stagedBytesRows > 0 && this.#o.bytesSlice) {
      lent = this.#stagedBytes.take();
      staged.push(this.#o.bytesSlice(lent.bytes, this.#stagedBytesRows));
      this.#stagedBytesRows = 0;
    }
    this.#pending = [];
    this.#staged = [];
    this.#stagedRows = 0;
    this.#pendingBytes = 0;
    const durable = this.#o.submit(batch, staged, stagedRows).finally(() => {
      this.#outstanding.delete(durable);
      lent?.release(); // durable: written or spooled, its bytes are read no more
    });
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
