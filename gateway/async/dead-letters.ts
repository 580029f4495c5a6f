/**
 * The dead-letter queue: async calls whose last attempt failed with a retryable outcome. They stay
 * in the journal (body included) until replayed or past async.retainDeadLettersMs. A replay puts
 * the call back in its queue with fresh retry counters; attempt numbers go on counting, so every
 * (id, attempt) record stays unique.
 */
import { SkiffError } from '../../errors.ts';
import type { JournalEntry } from './journal.ts';

/** Dead-lettered ids in the order they died; the newest last. */
export class DeadLetterIndex {
  readonly #ids = new Set<string>();

  add(id: string): void {
    this.#ids.delete(id);
    this.#ids.add(id);
  }

  delete(id: string): boolean {
    return this.#ids.delete(id);
  }

  has(id: string): boolean {
    return this.#ids.has(id);
  }

  get size(): number {
    return this.#ids.size;
  }

  /** Newest first. */
  newestFirst(): string[] {
    return [...this.#ids].reverse();
  }

  /** Oldest first. */
  oldestFirst(): IterableIterator<string> {
    return this.#ids.values();
  }
}

/** The entry a replay commits: queued now, retry counters reset, callback pending again. */
export function replayedEntry(entry: JournalEntry | undefined, id: string, nowMs: number): JournalEntry {
  if (!entry) throw new SkiffError('INVOCATION_NOT_FOUND', `no async invocation with id "${id}"`);
  if (entry.state !== 'dead-lettered') throw new SkiffError('NOT_DEAD_LETTERED', `invocation "${id}" is ${entry.state}, not dead-lettered`);
  return {
    ...entry,
    state: 'queued',
    failures: 0,
    redeliveries: 0,
    replays: entry.replays + 1,
    nextAttemptAtMs: nowMs,
    finishedAtMs: 0,
    callback: entry.callback ? { ...entry.callback, state: 'pending', attempts: 0, lastStatus: 0, lastError: '', nextAttemptAtMs: 0, deliveredAtMs: 0 } : null,
  };
}
