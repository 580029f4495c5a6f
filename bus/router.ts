/**
 * Gateway side of the bus: a ZeroMQ ROUTER that executors' DEALERs connect to. Tracks each
 * executor (HELLO, credits, heartbeats) and declares it lost after `heartbeatMissLimit` silent
 * intervals, so the initiator can fail its in-flight calls fast.
 */
import { Router } from 'zeromq';
import { decodeFrames, encodeFrames, FrameError } from './frames.ts';
import { MessageType, type BusMessage, type HeaderOf, type HelloHeader } from './messages.ts';
import { Outbox } from './outbox.ts';
import { ZapAuthenticator, type CurveServerOptions } from './curve.ts';

export interface BusRouterOptions {
  bindEndpoint: string;
  heartbeatIntervalMs: number;
  heartbeatMissLimit: number;
  /** Messages queued while the socket is blocked before `send` reports false. */
  maxQueuedMessages?: number;
  /** Encrypt the bus and accept only these executors' keys (CURVE). */
  curve?: CurveServerOptions;
}

/** One executor known to this gateway. */
export interface ExecutorPeer {
  readonly peerId: string;
  hello: HelloHeader;
  /** Calls the executor accepts now, as it last reported (absolute). */
  credits: number;
  /** Idle warm call slots per function, as it last reported. */
  warm: Record<string, number>;
  /** Ready stem cells per runtime, as it last reported. */
  stemCells: Record<string, number>;
  /** Memory budget it has not given to containers, MB (-1: not reported). */
  memoryFreeMb: number;
  lastSeenMs: number;
}

export interface BusRouterHandlers {
  onPeerUp?(peer: ExecutorPeer): void;
  onPeerDown?(peer: ExecutorPeer, reason: string): void;
  /** Every message from a known peer except HELLO/HEARTBEAT/BYE/CREDIT, which the router handles. */
  onMessage(peer: ExecutorPeer, message: BusMessage): void;
  /** A peer's credit changed. */
  onCredit?(peer: ExecutorPeer): void;
}

const DEFAULT_MAX_QUEUED = 100_000;

export class BusRouter {
  readonly #options: BusRouterOptions;
  readonly #handlers: BusRouterHandlers;
  readonly #socket = new Router();
  readonly #outbox: Outbox;
  readonly #peers = new Map<string, ExecutorPeer>();
  #heartbeatTimer: NodeJS.Timeout | undefined;
  #endpoint = '';
  #closed = false;
  #zap: ZapAuthenticator | undefined;
  /** Frames dropped as undecodable (counted, never thrown). */
  droppedFrames = 0;

  constructor(options: BusRouterOptions, handlers: BusRouterHandlers) {
    this.#options = options;
    this.#handlers = handlers;
    this.#outbox = new Outbox(this.#socket, options.maxQueuedMessages ?? DEFAULT_MAX_QUEUED, () => {
      // A send to a vanished peer: heartbeats will declare it lost.
    });
  }

  /** The endpoint actually bound (resolves a `*` port). */
  get endpoint(): string {
    return this.#endpoint;
  }

  /** Binds the ROUTER and starts receiving and heartbeating. */
  async bind(): Promise<string> {
    this.#socket.linger = 0;
    const curve = this.#options.curve;
    if (curve) {
      // The ZAP handler must be there before the first CURVE handshake.
      this.#zap = await ZapAuthenticator.start(curve.allowedClientKeys);
      this.#socket.zapDomain = 'skiff';
      this.#socket.curveServer = true;
      this.#socket.curvePublicKey = curve.publicKey;
      this.#socket.curveSecretKey = curve.secretKey;
    }
    await this.#socket.bind(this.#options.bindEndpoint);
    this.#endpoint = this.#socket.lastEndpoint ?? this.#options.bindEndpoint;
    void this.#receiveLoop();
    this.#heartbeatTimer = setInterval(() => this.#heartbeat(), this.#options.heartbeatIntervalMs);
    this.#heartbeatTimer.unref();
    return this.#endpoint;
  }

  /** CURVE connections refused by the ZAP handler (unknown executor keys). */
  get rejectedConnections(): number {
    return this.#zap?.rejected ?? 0;
  }

  /** Executors that said HELLO and are heartbeating. */
  peers(): ExecutorPeer[] {
    return [...this.#peers.values()];
  }

  peer(peerId: string): ExecutorPeer | undefined {
    return this.#peers.get(peerId);
  }

  /** Sends a message to one executor; false when the peer is unknown or the queue is full. */
  send<T extends MessageType>(peerId: string, type: T, header: HeaderOf[T], body?: Buffer): boolean {
    if (!this.#peers.has(peerId)) return false;
    return this.#outbox.push([Buffer.from(peerId), ...encodeFrames(type, header, body)]);
  }

  async #receiveLoop(): Promise<void> {
    try {
      for await (const [identity, ...frames] of this.#socket) {
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
        this.#dispatch(identity.toString(), message);
      }
    } catch (err) {
      if (!this.#closed) throw err;
    }
  }

  #dispatch(peerId: string, message: BusMessage): void {
    const now = Date.now();
    if (message.type === MessageType.HELLO) {
      const existing = this.#peers.get(peerId);
      if (existing) {
        existing.hello = message.header;
        existing.lastSeenMs = now;
      } else {
        const peer: ExecutorPeer = { peerId, hello: message.header, credits: 0, warm: {}, stemCells: {}, memoryFreeMb: -1, lastSeenMs: now };
        this.#peers.set(peerId, peer);
        this.#handlers.onPeerUp?.(peer);
      }
      // Acknowledge at once so the executor knows this gateway is there.
      this.send(peerId, MessageType.HEARTBEAT, { inFlight: 0 });
      return;
    }
    const peer = this.#peers.get(peerId);
    if (!peer) return; // Not introduced (e.g. this gateway restarted): the executor re-sends HELLO.
    peer.lastSeenMs = now;
    switch (message.type) {
      case MessageType.HEARTBEAT:
        return;
      case MessageType.BYE:
        this.#drop(peer, `executor said BYE: ${message.header.reason}`);
        return;
      case MessageType.CREDIT:
        peer.credits = message.header.credits;
        if (message.header.warm) peer.warm = message.header.warm;
        if (message.header.stemCells) peer.stemCells = message.header.stemCells;
        if (message.header.memoryFreeMb !== undefined) peer.memoryFreeMb = message.header.memoryFreeMb;
        this.#handlers.onCredit?.(peer);
        return;
      default:
        this.#handlers.onMessage(peer, message);
    }
  }

  #heartbeat(): void {
    const deadline = Date.now() - this.#options.heartbeatIntervalMs * this.#options.heartbeatMissLimit;
    for (const peer of this.#peers.values()) {
      if (peer.lastSeenMs < deadline) {
        this.#drop(peer, `no heartbeat for ${this.#options.heartbeatMissLimit} intervals`);
      } else {
        this.send(peer.peerId, MessageType.HEARTBEAT, { inFlight: 0 });
      }
    }
  }

  #drop(peer: ExecutorPeer, reason: string): void {
    if (!this.#peers.delete(peer.peerId)) return;
    this.#handlers.onPeerDown?.(peer, reason);
  }

  /** Stops heartbeating and closes the socket. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#heartbeatTimer);
    this.#outbox.clear();
    this.#socket.close();
    this.#zap?.close();
    this.#peers.clear();
  }
}
