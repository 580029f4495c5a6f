/**
 * Per-function bounded queues of calls waiting for a container (all of the function's
 * containers busy, its container cap reached, or no memory left to start one). A full queue
 * refuses the call with FUNCTION_QUEUE_FULL (429); a waiting call leaves when its deadline
 * passes. First in, first out.
 */
import { SkiffError } from '../errors.ts';

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
  wait(key: string, signal: AbortSignal): Promise<T> {
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
