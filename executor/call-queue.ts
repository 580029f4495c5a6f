/**
 * Per-function bounded queues of calls waiting for a container (all of the function's
 * containers busy, its container cap reached, or no memory left to start one). A full queue
 * refuses the call with FUNCTION_QUEUE_FULL (429); a waiting call leaves when its deadline
 * passes. First in, first out. Also the node-wide bound on calls at once (CallAdmission).
 */
import { SkiffError } from '../errors.ts';
import type { AbortHook } from './abortable.ts';

/** A queued call: `grant` hands it what it waited for, `fail` ends its wait. */
interface Waiter<T> {
  grant(value: T): void;
  fail(err: unknown): void;
}

export class CallQueues<T> {
  readonly #maxPerKey: number;
  readonly #queues = new Map<string, Array<Waiter<T>>>();

  constructor(maxPerKey: number) {
    this.#maxPerKey = maxPerKey;
  }

  /** Calls waiting for `key`. */
  length(key: string): number {
    return this.#queues.get(key)?.length ?? 0;
  }

  /** Keys with calls waiting. */
  keys(): string[] {
    return [...this.#queues.keys()];
  }

  /**
   * Waits until `grant` is given through `serve`, or `signal` aborts (its reason is thrown).
   * Throws FUNCTION_QUEUE_FULL at once when `key` already has the maximum waiting.
   */
  wait(key: string, signal: AbortHook): Promise<T> {
    if (signal.aborted) return Promise.reject(signal.reason);
    const queue = this.#queues.get(key) ?? [];
    if (queue.length >= this.#maxPerKey) {
      return Promise.reject(new SkiffError('FUNCTION_QUEUE_FULL', `${key} has ${queue.length} calls waiting for a container (executor.maxQueuedPerFunction ${this.#maxPerKey})`));
    }
    this.#queues.set(key, queue);
    return new Promise<T>((resolve, reject) => {
      const onAbort = () => {
        this.#drop(key, waiter);
        reject(signal.reason);
      };
      const waiter: Waiter<T> = {
        grant: (value) => {
          signal.removeEventListener('abort', onAbort);
          resolve(value);
        },
        fail: (err) => {
          signal.removeEventListener('abort', onAbort);
          reject(err);
        },
      };
      signal.addEventListener('abort', onAbort, { once: true });
      queue.push(waiter);
    });
  }

  #drop(key: string, waiter: Waiter<T>): void {
    const queue = this.#queues.get(key);
    if (!queue) return;
    const i = queue.indexOf(waiter);
    if (i !== -1) queue.splice(i, 1);
    if (queue.length === 0) this.#queues.delete(key);
  }

  /**
   * Serves waiters of `key` in order while `take()` gives something (undefined: nothing to give
   * now); returns how many were served.
   */
  serve(key: string, take: () => T | undefined): number {
    let served = 0;
    for (let queue = this.#queues.get(key); queue && queue.length > 0; queue = this.#queues.get(key)) {
      const value = take();
      if (value === undefined) break;
      const waiter = queue.shift()!;
      if (queue.length === 0) this.#queues.delete(key);
      waiter.grant(value);
      served++;
    }
    return served;
  }

  /** Fails every waiter of `key` (or of every key) with `err`. */
  failAll(err: unknown, key?: string): void {
    for (const k of key === undefined ? this.keys() : [key]) {
      const queue = this.#queues.get(k) ?? [];
      this.#queues.delete(k);
      for (const waiter of queue) waiter.fail(err);
    }
  }
}

/**
 * A node-wide bound on calls at once (executor.maxInFlight): past it, calls wait first in first
 * out for one to end. A gateway's credit can be stale by the INVOKEs still on the wire, so a burst
 * can bring more than the credit; admitted at once, each would justify a container start.
 * Waiting calls are bounded by what gateways send and leave at their deadline.
 */
export class CallAdmission {
  readonly #max: number;
  readonly #waiting = new CallQueues<true>(Number.POSITIVE_INFINITY);
  #inFlight = 0;

  constructor(max: number) {
    this.#max = max;
  }

  /** Takes a place at once if one is free and nobody waits; false if the call must `wait`. */
  tryEnter(): boolean {
    if (this.#inFlight >= this.#max || this.#waiting.length('') > 0) return false;
    this.#inFlight++;
    return true;
  }

  /** Resolves once the call has a place; rejects with `signal`'s reason if it aborts first. */
  async wait(signal: AbortHook): Promise<void> {
    await this.#waiting.wait('', signal);
  }

  /** A call that had a place is over: the first one waiting gets it. */
  leave(): void {
    this.#inFlight = Math.max(0, this.#inFlight - 1);
    this.#waiting.serve('', () => {
      if (this.#inFlight >= this.#max) return undefined;
      this.#inFlight++;
      return true;
    });
  }

  /** Fails every waiting call with `err`. */
  failAll(err: unknown): void {
    this.#waiting.failAll(err);
  }
}
