/**
 * The async journal: every accepted async invocation, on the gateway's disk, until it is finished
 * and recorded (then kept a while for status and Idempotency-Key, and dead letters until replayed).
 *
 * Why LMDB (lmdb-js): a copy-on-write B+tree has no log to replay and cannot be torn by a crash —
 * after SIGKILL (or power loss) the file holds exactly the last committed transaction. lmdb-js
 * batches every write queued in one event-loop turn into one transaction (group commit), and with
 * `overlappingSync: false` a write's promise resolves only after that commit is fsync'd, which is
 * what a 202 promises. Reads are synchronous memory-mapped lookups, so status queries and dispatch
 * cost no I/O. A hand-rolled segment file would need its own checksums, compaction and index.
 *
 * Layout: `entries` (id → JournalEntry, msgpack), `bodies` (id → request body), `results` (id →
 * full result body, kept only until its callback is delivered), `idempotency` (function + key → id).
 */
import { mkdirSync } from 'node:fs';
import { open, type Database, type RootDatabase } from 'lmdb';
import { SkiffError } from '../../errors.ts';
import type { InvocationRequest } from '../initiator.ts';
import type { OutcomeClass } from './retry-policy.ts';

/** States kept on disk; 'running' exists only in the dispatcher's memory. */
export type JournalState = 'queued' | 'succeeded' | 'failed' | 'dead-lettered';

/** One attempt as the status view shows it. */
export interface AttemptSummary {
  attempt: number;
  startedAtMs: number;
  finishedAtMs: number;
  executor: string;
  outcome: OutcomeClass;
  httpStatus: number;
  errorCode: string;
}

/** The last attempt's answer; `body` is cut to async.maxResultBytes. */
export interface StoredResult {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
  bodyBytes: number;
  truncated: boolean;
  errorCode: string;
  errorMessage: string;
}

export type CallbackState = 'pending' | 'delivered' | 'gave-up';

/** Delivery of X-Callback-Url: the callback's own outcome. */
export interface CallbackStatus {
  url: string;
  state: CallbackState;
  attempts: number;
  /** HTTP status of the last delivery attempt (0: no answer). */
  lastStatus: number;
  lastError: string;
  nextAttemptAtMs: number;
  deliveredAtMs: number;
}

/** The request as the initiator runs it, less its body (kept apart in the journal). */
export type RequestFields = Pick<InvocationRequest, 'id' | 'functionName' | 'method' | 'path' | 'query' | 'headers' | 'traceparent' | 'receivedAtMs'>;

/** One accepted async invocation. */
export interface JournalEntry extends RequestFields {
  requestBytes: number;
  idempotencyKey: string;
  state: JournalState;
  /** Deliveries acknowledged so far; the next one is attempt `attempts + 1`. */
  attempts: number;
  failures: number;
  redeliveries: number;
  replays: number;
  nextAttemptAtMs: number;
  finishedAtMs: number;
  /** The most recent attempts (at most MAX_HISTORY). */
  history: AttemptSummary[];
  result: StoredResult | null;
  callback: CallbackStatus | null;
}

export interface JournalOptions {
  dir: string;
  maxEntries: number;
  maxBytes: number;
}

/** A change to commit: the entry as it now is, and what to do with its full result body. */
export interface JournalUpdate {
  entry: JournalEntry;
  /** A Buffer stores the full result (for a pending callback); null drops it; undefined leaves it. */
  fullResult?: Buffer | null;
}

export const MAX_HISTORY = 20;
/** Bookkeeping bytes per entry beyond its bodies and headers. */
const ENTRY_OVERHEAD_BYTES = 512;

function headerBytes(headers: Record<string, string>): number {
  let total = 0;
  for (const name in headers) total += name.length + headers[name].length;
  return total;
}

function idempotencyKeyOf(functionName: string, key: string): string {
  return `${functionName}\n${key}`;
}

export class Journal {
  readonly #root: RootDatabase;
  readonly #entries: Database<JournalEntry, string>;
  readonly #bodies: Database<Buffer, string>;
  readonly #results: Database<Buffer, string>;
  readonly #idempotency: Database<string, string>;
  readonly #options: JournalOptions;
  /** Accounted size of each entry (including ones being accepted). */
  readonly #sizes = new Map<string, number>();
  #bytes = 0;
  #closed: Promise<void> | undefined;

  private constructor(options: JournalOptions) {
    this.#options = options;
    mkdirSync(options.dir, { recursive: true });
    this.#root = open({ path: options.dir, overlappingSync: false, compression: false });
    this.#entries = this.#root.openDB<JournalEntry, string>({ name: 'entries' });
    this.#bodies = this.#root.openDB<Buffer, string>({ name: 'bodies', encoding: 'binary' });
    this.#results = this.#root.openDB<Buffer, string>({ name: 'results', encoding: 'binary' });
    this.#idempotency = this.#root.openDB<string, string>({ name: 'idempotency' });
    for (const { key, value } of this.#entries.getRange()) this.#account(key, value, this.#results.getBinary(key)?.length ?? 0);
  }

  /** Opens (or creates) the journal in `options.dir` and sizes what is already there. */
  static open(options: JournalOptions): Journal {
    return new Journal(options);
  }

  get size(): { entries: number; bytes: number } {
    return { entries: this.#sizes.size, bytes: this.#bytes };
  }

  /** Every entry, in id order (for recovery at start). */
  *entries(): Generator<JournalEntry> {
    for (const { value } of this.#entries.getRange()) yield value;
  }

  get(id: string): JournalEntry | undefined {
    return this.#entries.get(id);
  }

  body(id: string): Buffer {
    return this.#bodies.getBinary(id) ?? Buffer.alloc(0);
  }

  fullResult(id: string): Buffer | undefined {
    return this.#results.getBinary(id);
  }

  /** The id a function's Idempotency-Key was first accepted under. */
  idempotent(functionName: string, key: string): string | undefined {
    return this.#idempotency.get(idempotencyKeyOf(functionName, key));
  }

  /** True when an entry of `bytes` more would still fit. */
  hasRoom(bytes: number): boolean {
    return this.#sizes.size < this.#options.maxEntries && this.#bytes + bytes <= this.#options.maxBytes;
  }

  /**
   * Stores a new entry with its body; resolves once it is on disk (fsync'd). Throws JOURNAL_FULL
   * (synchronously checked, so concurrent submits cannot overshoot) when it does not fit.
   */
  async accept(entry: JournalEntry, body: Buffer): Promise<void> {
    const size = ENTRY_OVERHEAD_BYTES + body.length + headerBytes(entry.headers);
    if (!this.hasRoom(size)) {
      throw new SkiffError('JOURNAL_FULL', `the async journal is full (${this.#sizes.size} entries, ${this.#bytes} bytes; limits ${this.#options.maxEntries} entries, ${this.#options.maxBytes} bytes)`);
    }
    this.#sizes.set(entry.id, size);
    this.#bytes += size;
    try {
      await this.#root.transaction(() => {
        this.#entries.put(entry.id, entry);
        this.#bodies.put(entry.id, body);
        if (entry.idempotencyKey !== '') this.#idempotency.put(idempotencyKeyOf(entry.functionName, entry.idempotencyKey), entry.id);
      });
    } catch (err) {
      this.#unaccount(entry.id);
      throw err;
    }
  }

  /** Commits updates in one transaction; resolves once on disk. */
  async commit(updates: readonly JournalUpdate[]): Promise<void> {
    if (updates.length === 0) return;
    await this.#root.transaction(() => {
      for (const { entry, fullResult } of updates) {
        this.#entries.put(entry.id, entry);
        if (fullResult === null) this.#results.remove(entry.id);
        else if (fullResult !== undefined) this.#results.put(entry.id, fullResult);
      }
    });
    for (const { entry, fullResult } of updates) {
      const resultBytes = fullResult === undefined ? (this.#results.getBinary(entry.id)?.length ?? 0) : (fullResult?.length ?? 0);
      this.#unaccount(entry.id);
      this.#account(entry.id, entry, resultBytes);
    }
  }

  /** Removes entries with their bodies, results and idempotency keys. */
  async remove(ids: readonly string[]): Promise<void> {
    if (ids.length === 0) return;
    const entries = ids.map((id) => this.#entries.get(id)).filter((e): e is JournalEntry => e !== undefined);
    await this.#root.transaction(() => {
      for (const entry of entries) {
        this.#entries.remove(entry.id);
        this.#bodies.remove(entry.id);
        this.#results.remove(entry.id);
        if (entry.idempotencyKey !== '') this.#idempotency.remove(idempotencyKeyOf(entry.functionName, entry.idempotencyKey));
      }
    });
    for (const entry of entries) this.#unaccount(entry.id);
  }

  #account(id: string, entry: JournalEntry, fullResultBytes: number): void {
    const size = ENTRY_OVERHEAD_BYTES + entry.requestBytes + headerBytes(entry.headers) + (entry.result?.body.length ?? 0) + fullResultBytes;
    this.#sizes.set(id, size);
    this.#bytes += size;
  }

  #unaccount(id: string): void {
    const size = this.#sizes.get(id);
    if (size === undefined) return;
    this.#sizes.delete(id);
    this.#bytes -= size;
  }

  /** Waits for pending writes and closes the files. Idempotent. */
  close(): Promise<void> {
    this.#closed ??= this.#root.close();
    return this.#closed;
  }
}
