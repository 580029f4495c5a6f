/**
 * Gateway side of the bus: a ZeroMQ ROUTER that executors' DEALERs connect to. Tracks each
 * executor (HELLO, credits, heartbeats) and declares it lost as soon as it can tell, so the
 * initiator can fail its in-flight calls fast:
 *
 * - Connection dropped (process killed, host reset the TCP connection): the socket monitor
 *   reports a disconnect, but not whose. The ROUTER is `mandatory`, so a send to a routing id
 *   whose connection is gone fails with EHOSTUNREACH; on a disconnect every peer is probed with
 *   a HEARTBEAT (at once and a few times over the next ~340 ms) and the unreachable one is
 *   dropped (any ordinary send that hits EHOSTUNREACH drops its peer the same way), once what it
 *   sent before has been read; its LOGS/EVENTS read after the drop are still delivered.
 * - Silence (host vanished without a reset, process frozen): liveness is checked every quarter
 *   interval, so a peer is dropped at most `heartbeatIntervalMs * heartbeatMissLimit +
 *   heartbeatIntervalMs / 4` after its last message (given a responsive event loop).
 */
import { Router } from 'zeromq';
import type { RuntimeStats } from '../runtime-stats.ts';
import { decodeFrames, encodeFrames, FrameError } from './frames.ts';
import { MessageType, type BusMessage, type CreditHeader, type HeaderOf, type HelloHeader } from './messages.ts';
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
  /** Its GC pauses and event-loop delay, from its last heartbeat (absent until one carries them). */
  runtime?: RuntimeStats;
  /** INVOKEs sent to it since its last HELLO (compared with CREDIT's invokesReceived). */
  invokesSent: number;
  lastSeenMs: number;
}

export interface BusRouterHandlers {
  onPeerUp?(peer: ExecutorPeer): void;
  onPeerDown?(peer: ExecutorPeer, reason: string): void;
  /**
   * Every message from a known peer except HELLO/HEARTBEAT/BYE/CREDIT, which the router handles;
   * also LOGS and EVENTS that reach the gateway just after their peer was dropped.
   */
  onMessage(peer: ExecutorPeer, message: BusMessage): void;
  /** A peer's credit changed. */
  onCredit?(peer: ExecutorPeer): void;
}

const DEFAULT_MAX_QUEUED = 100_000;
/** Liveness checks per heartbeat interval: the silence bound overshoots by one check at most. */
const LIVENESS_CHECKS_PER_INTERVAL = 4;
/**
 * Delays of the probes that follow the first one after a disconnect, in ms: libzmq reports the
 * disconnect before the socket has unlinked the dropped connection's pipe (that takes a few
 * commands between its threads), so the first probe may still reach the dead peer's pipe.
 * Any later send to the peer (heartbeats every interval included) would find it too.
 */
const PROBE_RETRY_DELAYS_MS = [1, 4, 16, 64, 256] as const;
/** libzmq's answer to a send for a routing id with no connection (with ZMQ_ROUTER_MANDATORY). */
const UNREACHABLE = 'EHOSTUNREACH';
/**
 * Messages still delivered from a dropped peer: what it sent before its connection went may be
 * read after the drop (libzmq queues it before reporting the disconnect), and these are records
 * of work it did. Not RESULT: its call has failed with EXECUTOR_LOST and may be running elsewhere
 * under the same id.
 */
const RECORDS_AFTER_DROP: ReadonlySet<MessageType> = new Set([MessageType.LOGS, MessageType.EVENTS]);

export class BusRouter {
  readonly #options: BusRouterOptions;
  readonly #handlers: BusRouterHandlers;
  readonly #socket = new Router();
  readonly #outbox: Outbox;
  readonly #peers = new Map<string, ExecutorPeer>();
  /** Each peer's routing id as libzmq knows it, by peerId. */
  readonly #routingIds = new Map<string, Buffer>();
  /**
   * Peers dropped within the last silence deadline (`heartbeatIntervalMs * heartbeatMissLimit`),
   * by peerId, with when: their RECORDS_AFTER_DROP still reach `onMessage`.
   */
  readonly #departed = new Map<string, { peer: ExecutorPeer; atMs: number }>();
  /** Peers a send found unreachable, to be dropped once what they sent before has been read. */
  readonly #unreachable = new Set<string>();
  #livenessTimer: NodeJS.Timeout | undefined;
  /** Counts liveness checks; every LIVENESS_CHECKS_PER_INTERVAL-th one also sends heartbeats. */
  #checks = 0;
  #probeTimer: NodeJS.Timeout | undefined;
  #endpoint = '';
  #closed = false;
  #zap: ZapAuthenticator | undefined;
  /** Frames dropped as undecodable (counted, never thrown). */
  droppedFrames = 0;
  /** Messages libzmq refused for a reachable peer, e.g. at its send high-water mark (counted, never thrown). */
  droppedSends = 0;
  /** Disconnects the socket monitor reported (plaintext or CURVE, peers or not). */
  disconnects = 0;

  constructor(options: BusRouterOptions, handlers: BusRouterHandlers) {
    this.#options = options;
    this.#handlers = handlers;
    this.#outbox = new Outbox(this.#socket, options.maxQueuedMessages ?? DEFAULT_MAX_QUEUED, (err, frames) => this.#onSendError(err, frames));
  }

  /** The endpoint actually bound (resolves a `*` port). */
  get endpoint(): string {
    return this.#endpoint;
  }

  /** Binds the ROUTER and starts receiving and heartbeating. */
  async bind(): Promise<string> {
    this.#socket.linger = 0;
    // A send to a routing id with no connection fails (EHOSTUNREACH) instead of vanishing: that
    // names the peer whose connection dropped. With a zero send timeout a peer at its high-water
    // mark fails at once (EAGAIN) instead of holding up the outbox for every other peer, so
    // sends stay non-blocking as they are on a plain ROUTER (which drops such messages silently).
    this.#socket.mandatory = true;
    this.#socket.sendTimeout = 0;
    this.#socket.events.on('disconnect', () => this.#onDisconnect());
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
    const checkEveryMs = Math.max(1, Math.floor(this.#options.heartbeatIntervalMs / LIVENESS_CHECKS_PER_INTERVAL));
    this.#livenessTimer = setInterval(() => this.#checkLiveness(), checkEveryMs);
    this.#livenessTimer.unref();
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
    const routingId = this.#routingIds.get(peerId);
    if (routingId === undefined) return false;
    const sent = this.#outbox.push([routingId, ...encodeFrames(type, header, body)]);
    if (sent && type === MessageType.INVOKE) {
      const peer = this.#peers.get(peerId);
      if (peer) peer.invokesSent++;
    }
    return sent;
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
        this.#dispatch(identity, message);
      }
    } catch (err) {
      if (!this.#closed) throw err;
    }
  }

  #dispatch(routingId: Buffer, message: BusMessage): void {
    const peerId = peerIdOf(routingId);
    const now = Date.now();
    if (message.type === MessageType.HELLO) {
      const existing = this.#peers.get(peerId);
      if (existing) {
        existing.hello = message.header;
        existing.lastSeenMs = now;
        existing.invokesSent = 0;
      } else {
        const peer: ExecutorPeer = { peerId, hello: message.header, credits: 0, warm: {}, stemCells: {}, memoryFreeMb: -1, invokesSent: 0, lastSeenMs: now };
        this.#departed.delete(peerId);
        this.#peers.set(peerId, peer);
        this.#routingIds.set(peerId, routingId);
        this.#handlers.onPeerUp?.(peer);
      }
      // Acknowledge at once so the executor knows this gateway is there.
      this.send(peerId, MessageType.HEARTBEAT, { inFlight: 0 });
      return;
    }
    const peer = this.#peers.get(peerId);
    if (!peer) {
      const departed = this.#departed.get(peerId);
      if (departed && RECORDS_AFTER_DROP.has(message.type)) this.#handlers.onMessage(departed.peer, message);
      return; // Not introduced (e.g. this gateway restarted): the executor re-sends HELLO.
    }
    peer.lastSeenMs = now;
    switch (message.type) {
      case MessageType.HEARTBEAT:
        if (message.header.runtime) peer.runtime = message.header.runtime;
        return;
      case MessageType.BYE:
        this.#drop(peer, `executor said BYE: ${message.header.reason}`);
        return;
      case MessageType.CREDIT:
        peer.credits = creditsNow(peer, message.header);
        if (message.header.warm) peer.warm = message.header.warm;
        if (message.header.stemCells) peer.stemCells = message.header.stemCells;
        if (message.header.memoryFreeMb !== undefined) peer.memoryFreeMb = message.header.memoryFreeMb;
        this.#handlers.onCredit?.(peer);
        return;
      default:
        this.#handlers.onMessage(peer, message);
    }
  }

  /** Drops silent peers; heartbeats every peer once per interval. */
  #checkLiveness(): void {
    const now = Date.now();
    const deadline = now - this.#options.heartbeatIntervalMs * this.#options.heartbeatMissLimit;
    for (const peer of this.#peers.values()) {
      if (peer.lastSeenMs < deadline) this.#drop(peer, `no heartbeat for ${this.#options.heartbeatMissLimit} intervals (${now - peer.lastSeenMs} ms)`);
    }
    for (const [peerId, { atMs }] of this.#departed) if (atMs < deadline) this.#departed.delete(peerId);
    if (this.#checks++ % LIVENESS_CHECKS_PER_INTERVAL === 0) this.#sendHeartbeats();
  }

  /** A heartbeat to every peer; under ROUTER_MANDATORY it doubles as a reachability probe. */
  #sendHeartbeats(): void {
    for (const peer of this.#peers.values()) this.send(peer.peerId, MessageType.HEARTBEAT, { inFlight: 0 });
  }

  /** Some connection dropped (the monitor does not say whose): probe every peer now and a few times more. */
  #onDisconnect(): void {
    if (this.#closed) return;
    this.disconnects++;
    this.#probe(0);
  }

  #probe(retry: number): void {
    clearTimeout(this.#probeTimer);
    this.#probeTimer = undefined;
    if (this.#closed) return;
    this.#sendHeartbeats();
    if (retry >= PROBE_RETRY_DELAYS_MS.length) return;
    this.#probeTimer = setTimeout(() => this.#probe(retry + 1), PROBE_RETRY_DELAYS_MS[retry]);
    this.#probeTimer.unref();
  }

  #onSendError(err: unknown, frames: Buffer[]): void {
    const code = (err as { code?: unknown }).code;
    if (code === UNREACHABLE) {
      const peerId = peerIdOf(frames[0]);
      if (!this.#peers.has(peerId) || this.#unreachable.has(peerId)) return;
      this.#unreachable.add(peerId);
      // What the peer sent before its connection went may be readable already (its BYE, its
      // last RESULTs): let the receive loop handle that first, then drop it.
      setImmediate(() => {
        if (!this.#unreachable.delete(peerId)) return;
        const peer = this.#peers.get(peerId);
        if (peer) this.#drop(peer, 'connection dropped: the executor is unreachable on the bus');
      });
      return;
    }
    // EAGAIN (the peer's send high-water mark is reached) or anything else libzmq refuses: the
    // message is lost, as it would be on a plain ROUTER; the call it carried ends by its deadline.
    this.droppedSends++;
  }

  #drop(peer: ExecutorPeer, reason: string): void {
    if (!this.#peers.delete(peer.peerId)) return;
    this.#routingIds.delete(peer.peerId);
    this.#departed.set(peer.peerId, { peer, atMs: Date.now() });
    this.#handlers.onPeerDown?.(peer, reason);
  }

  /** Stops heartbeating and closes the socket. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#livenessTimer);
    clearTimeout(this.#probeTimer);
    this.#outbox.clear();
    this.#socket.close();
    this.#zap?.close();
    this.#peers.clear();
    this.#routingIds.clear();
    this.#departed.clear();
    this.#unreachable.clear();
  }
}

/** A routing id as a string key: its UTF-8 text when that reads back to the same bytes (every BusDealer's does), else hex. */
function peerIdOf(routingId: Buffer): string {
  const text = routingId.toString('utf8');
  return Buffer.from(text).equals(routingId) ? text : `0x${routingId.toString('hex')}`;
}

/**
 * The credit a CREDIT message leaves: its absolute figure was counted before the INVOKEs still
 * in transit reached the executor, so those are taken off (without this a burst overshoots the
 * executor's maxInFlight by whatever is on the wire).
 */
export function creditsNow(peer: Pick<ExecutorPeer, 'invokesSent'>, header: CreditHeader): number {
  const inTransit = header.invokesReceived === undefined ? 0 : Math.max(0, peer.invokesSent - header.invokesReceived);
  return Math.max(0, header.credits - inTransit);
}
