/**
 * A send queue in front of a ZeroMQ socket: zeromq.js allows one pending send at a time, so
 * messages wait here, in order, while a send is blocked. Bounded: past `maxQueued` the oldest
 * is not dropped silently; `push` reports false and the caller decides.
 *
 * A send that fails (e.g. EHOSTUNREACH from a ROUTER with `mandatory` set, whose peer's
 * connection is gone) is handed to `onError` with the frames it tried, so the owner can tell
 * which peer it was; the queue moves on to the next message.
 */
import type { Writable, Socket } from 'zeromq';

type SendingSocket = Socket & Writable<Buffer[]>;

/** Called with the error of a failed send and the frames that were not sent. */
export type SendErrorHandler = (err: unknown, frames: Buffer[]) => void;

export class Outbox {
  readonly #socket: SendingSocket;
  readonly #maxQueued: number;
  readonly #onError: SendErrorHandler;
  #queue: Buffer[][] = [];
  #pumping = false;

  constructor(socket: SendingSocket, maxQueued: number, onError: SendErrorHandler) {
    this.#socket = socket;
    this.#maxQueued = maxQueued;
    this.#onError = onError;
  }

  get queued(): number {
    return this.#queue.length;
  }

  /** Queues a multipart message; false when the queue is full. */
  push(frames: Buffer[]): boolean {
    if (this.#queue.length >= this.#maxQueued) return false;
    this.#queue.push(frames);
    if (!this.#pumping) void this.#pump();
    return true;
  }

  async #pump(): Promise<void> {
    this.#pumping = true;
    try {
      while (this.#queue.length > 0 && !this.#socket.closed) {
        const frames = this.#queue.shift() as Buffer[];
        try {
          await this.#socket.send(frames);
        } catch (err) {
          if (this.#socket.closed) return;
          this.#onError(err, frames);
        }
      }
    } finally {
      this.#pumping = false;
    }
  }

  clear(): void {
    this.#queue = [];
  }
}
