/**
 * The dispatcher's run queues: ids ready to run per function (served in turn, so one busy
 * function cannot starve the rest) and ids waiting for their retry time. Only ids live here;
 * everything else stays in the journal.
 */
export class ReadyQueues {
  readonly #ready = new Map<string, string[]>();
  readonly #delayed = new Map<string, NodeJS.Timeout>();
  readonly #onReady: () => void;

  /** `onReady` runs whenever a delayed id becomes ready. */
  constructor(onReady: () => void) {
    this.#onReady = onReady;
  }

  /**
   * Queues `id` to run at `atMs` (at once when that is past): behind its function's ready ids, or
   * ahead of them with `ahead` (a call whose turn was lost through no fault of its own).
   */
  enqueue(id: string, functionName: string, atMs: number, ahead = false): void {
    const delayMs = atMs - Date.now();
    if (delayMs > 0) {
      const timer = setTimeout(() => {
        this.#delayed.delete(id);
        this.enqueue(id, functionName, 0, ahead);
        this.#onReady();
      }, delayMs);
      timer.unref();
      this.#delayed.set(id, timer);
      return;
    }
    const queue = this.#ready.get(functionName);
    if (!queue) this.#ready.set(functionName, [id]);
    else if (ahead) queue.unshift(id);
    else queue.push(id);
  }

  get hasReady(): boolean {
    return this.#ready.size > 0;
  }

  /** The next ready id, taking functions in turn. */
  next(): string | undefined {
    for (const [name, queue] of this.#ready) {
      const id = queue.shift();
      this.#ready.delete(name);
      if (queue.length > 0) this.#ready.set(name, queue);
      if (id !== undefined) return id;
    }
    return undefined;
  }

  /** Cancels every retry timer (the ids stay queued in the journal). */
  clear(): void {
    for (const timer of this.#delayed.values()) clearTimeout(timer);
    this.#delayed.clear();
    this.#ready.clear();
  }
}
