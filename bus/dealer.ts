/**
 * Executor side of the bus: one ZeroMQ DEALER per gateway. Introduces itself with HELLO,
 * heartbeats, and while the gateway is silent keeps re-sending HELLO instead of HEARTBEAT, so a
 * restarted gateway learns of this executor again without any other handshake. A dropped
 * connection counts as losing the gateway at once (the gateway drops this executor as soon as
 * its connection goes), and HELLO goes out again the moment libzmq has reconnected.
 */
import { randomBytes } from 'node:crypto';
import { Dealer } from 'zeromq';
import type { RuntimeStats } from '../runtime-stats.ts';
import { decodeFrames, encodeFrames, FrameError } from './frames.ts';
import { MessageType, type BusMessage, type HeaderOf, type HelloHeader } from './messages.ts';
import { Outbox } from './outbox.ts';
import type { CurveClientOptions } from './curve.ts';

export interface BusDealerOptions {
  /** The gateway's ROUTER endpoint. */
  endpoint: string;
  hello: HelloHeader;
  heartbeatIntervalMs: number;
  heartbeatMissLimit: number;
  /** Current in-flight calls, reported in heartbeats. */
  inFlight: () => number;
  /** This process's GC pauses and event-loop delay, reported in heartbeats. */
  runtime?: () => RuntimeStats;
  maxQueuedMessages?: number;
  /** Encrypt the bus with the gateway's CURVE key and authenticate with this executor's pair. */
  curve?: CurveClientOptions;
}

export interface BusDealerHandlers {
  /** INVOKE, DEPLOY, UNDEPLOY and anything else not handled by the dealer itself. */
  onMessage(message: BusMessage): void;
  /** The gateway answered (first time or after being lost): a good moment to send CREDIT. */
  onConnected?(): void;
  onLost?(): void;
}

const DEFAULT_MAX_QUEUED = 100_000;
const BYE_LINGER_MS = 200;

export class BusDealer {
  readonly #options: BusDealerOptions;
  readonly #handlers: BusDealerHandlers;
  readonly #socket: Dealer;
  readonly #outbox: Outbox;
  #heartbeatTimer: NodeJS.Timeout | undefined;
  #lastHeardMs = 0;
  #connected = false;
  /** The connection dropped since the last HELLO: say HELLO again when libzmq reconnects. */
  #reintroduce = false;
  #closed = false;
  #invokesReceived = 0;
  droppedFrames = 0;

  constructor(options: BusDealerOptions, handlers: BusDealerHandlers) {
    this.#options = options;
    this.#handlers = handlers;
    // A routing id unique per process, so a restarted executor is a new peer to the gateway.
    this.#socket = new Dealer({ routingId: `${options.hello.nodeId}/${options.hello.pid}/${randomBytes(4).toString('hex')}`, linger: 0 });
    if (options.curve) {
      this.#socket.curveServerKey = options.curve.serverPublicKey;
      this.#socket.curvePublicKey = options.curve.publicKey;
      this.#socket.curveSecretKey = options.curve.secretKey;
    }
    this.#outbox = new Outbox(this.#socket, options.maxQueuedMessages ?? DEFAULT_MAX_QUEUED, () => {});
  }

  get endpoint(): string {
    return this.#options.endpoint;
  }

  /** True while the gateway has been heard from within the heartbeat window. */
  get connected(): boolean {
    return this.#connected;
  }

  /** Connects, says HELLO and starts heartbeating. */
  start(): void {
    this.#socket.events.on('disconnect', () => this.#onDisconnect());
    this.#socket.events.on('connect', () => this.#onReconnect());
    this.#socket.connect(this.#options.endpoint);
    this.#sendRaw(MessageType.HELLO, this.#options.hello);
    void this.#receiveLoop();
    this.#heartbeatTimer = setInterval(() => this.#tick(), this.#options.heartbeatIntervalMs);
    this.#heartbeatTimer.unref();
  }

  /** Queues a message to the gateway; false when the queue is full. `logRows`: a RESULT's (BusMessage.logRows). */
  send<T extends MessageType>(type: T, header: HeaderOf[T], body?: Buffer, logRows?: Buffer): boolean {
    return this.#sendRaw(type, header, body, logRows);
  }

  /**
   * INVOKEs received since the last HELLO. Sent in CREDIT so the gateway can discount the calls
   * still in transit from the credit (an absolute figure that cannot know about them yet).
   */
  get invokesReceived(): number {
    return this.#invokesReceived;
  }

  #sendRaw<T extends MessageType>(type: T, header: HeaderOf[T], body?: Buffer, logRows?: Buffer): boolean {
    if (this.#closed) return false;
    // The gateway restarts its count of INVOKEs sent when it hears HELLO; so does this side.
    if (type === MessageType.HELLO) this.#invokesReceived = 0;
    return this.#outbox.push(encodeFrames(type, header, body, logRows));
  }

  #tick(): void {
    const silentForMs = Date.now() - this.#lastHeardMs;
    if (this.#connected && silentForMs > this.#options.heartbeatIntervalMs * this.#options.heartbeatMissLimit) {
      this.#connected = false;
      this.#handlers.onLost?.();
    }
    if (this.#connected) this.#sendRaw(MessageType.HEARTBEAT, { inFlight: this.#options.inFlight(), runtime: this.#options.runtime?.() });
    else this.#sendRaw(MessageType.HELLO, this.#options.hello);
  }

  #onDisconnect(): void {
    if (this.#closed) return;
    this.#reintroduce = true;
    if (!this.#connected) return;
    this.#connected = false;
    this.#handlers.onLost?.();
  }

  #onReconnect(): void {
    if (this.#closed || !this.#reintroduce) return;
    this.#reintroduce = false;
    // The gateway forgot this executor with the old connection; the ack of this HELLO makes
    // `onConnected` fire again (and the executor re-send its credit).
    this.#sendRaw(MessageType.HELLO, this.#options.hello);
  }

  async #receiveLoop(): Promise<void> {
    try {
      for await (const frames of this.#socket) {
        let message: BusMessage;
        try {
          message = decodeFrames(frames);
        } catch (err) {
          if (err instanceof FrameError) {
            this.droppedFrames++;
            continue;
          }
          throw err;
        }
        this.#lastHeardMs = Date.now();
        if (!this.#connected) {
          this.#connected = true;
          this.#handlers.onConnected?.();
        }
        if (message.type === MessageType.INVOKE) this.#invokesReceived++;
        if (message.type !== MessageType.HEARTBEAT) this.#handlers.onMessage(message);
      }
    } catch (err) {
      if (!this.#closed) throw err;
    }
  }

  /** Says BYE (best effort), stops heartbeating and closes. Idempotent. */
  async close(reason = 'shutdown'): Promise<void> {
    if (this.#closed) return;
    clearInterval(this.#heartbeatTimer);
    if (this.#heartbeatTimer !== undefined) {
      // Best effort: give the BYE a moment to leave; heartbeats cover a gateway that misses it.
      this.#socket.linger = BYE_LINGER_MS;
      this.#sendRaw(MessageType.BYE, { reason });
      await new Promise((resolve) => setImmediate(resolve));
    }
    this.#closed = true;
    this.#outbox.clear();
    this.#socket.close();
  }
}
