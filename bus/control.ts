/**
 * The control channel between gateways: each gateway PUBlishes the definitions deployed through
 * it and SUBscribes to its peers', so a deploy on one gateway is invocable through all of them
 * without a storage round trip. Frames are the bus's own (DEPLOY, UNDEPLOY), tagged with the
 * publishing gateway so a gateway ignores its own echo.
 *
 * A peer entry may name a host (`tcp://tasks.gateway:7200`, a headless Service) that stands for
 * every gateway replica: it is expanded to all its addresses (bus/discovery.ts) and resolved again
 * periodically, so replicas that join later are subscribed to and removed ones dropped. This
 * gateway's own address is left out, so every replica can be given the same peer list.
 */
import { randomBytes } from 'node:crypto';
import { Publisher, Subscriber } from 'zeromq';
import { hasNamedEndpoints, ownEndpoints, resolveEndpoints, type LookupAll } from './discovery.ts';
import { decodeFrames, encodeFrames, FrameError } from './frames.ts';
import { MessageType, type DeployHeader, type UndeployHeader } from './messages.ts';
import { Outbox } from './outbox.ts';

export interface ControlChannelOptions {
  /** Where this gateway publishes ('' for nowhere: a single gateway). */
  bindEndpoint: string;
  /** The other gateways' control endpoints; a host name stands for every address it resolves to. */
  peerEndpoints: readonly string[];
  /** How often peer names are resolved again, to follow gateways scaling in and out (absent: at start only). */
  resolveIntervalMs?: number;
  /** Name lookup (default: the system resolver); tests inject one. */
  lookup?: LookupAll;
}

/** Peer endpoints subscribed to and unsubscribed from by one resolution. */
export interface PeerChange {
  added: readonly string[];
  removed: readonly string[];
  /** Every peer endpoint subscribed to now. */
  peers: readonly string[];
}

export interface ControlChannelHandlers {
  onDeploy(header: DeployHeader, code: Buffer): void;
  onUndeploy(header: UndeployHeader): void;
  /** The set of peers changed (a name resolved to other addresses, or addPeer). */
  onPeersChanged?(change: PeerChange): void;
}

/** Messages queued for subscribers while the socket is busy. */
const MAX_QUEUED = 10_000;

export class ControlChannel {
  readonly #options: ControlChannelOptions;
  readonly #handlers: ControlChannelHandlers;
  readonly #publisher = new Publisher({ linger: 0 });
  readonly #subscriber = new Subscriber({ linger: 0 });
  readonly #outbox = new Outbox(this.#publisher, MAX_QUEUED, () => {});
  /** Frames from this process carry this origin, so its own echo is ignored. */
  readonly #origin = randomBytes(8);
  #endpoint = '';
  /** Endpoints of this process's own publisher, left out of the peers. */
  #own = new Set<string>();
  /** Peers subscribed to now (names expanded). */
  readonly #peers = new Set<string>();
  /** Peers given to addPeer, kept across resolutions. */
  readonly #addedPeers = new Set<string>();
  #resolving: Promise<void> | undefined;
  #resolveTimer: NodeJS.Timeout | undefined;
  #closed = false;

  constructor(options: ControlChannelOptions, handlers: ControlChannelHandlers) {
    this.#options = options;
    this.#handlers = handlers;
  }

  get endpoint(): string {
    return this.#endpoint;
  }

  /** The peer endpoints subscribed to now (names expanded to addresses, this gateway left out). */
  get peers(): string[] {
    return [...this.#peers];
  }

  /** Binds the publisher (if configured), resolves the peers and connects to every one. */
  async start(): Promise<string> {
    if (this.#options.bindEndpoint !== '') {
      await this.#publisher.bind(this.#options.bindEndpoint);
      this.#endpoint = this.#publisher.lastEndpoint ?? this.#options.bindEndpoint;
      this.#own = ownEndpoints(this.#endpoint);
    }
    this.#subscriber.subscribe();
    await this.resolvePeers();
    const { peerEndpoints, resolveIntervalMs } = this.#options;
    if (resolveIntervalMs !== undefined && hasNamedEndpoints(peerEndpoints) && !this.#closed) {
      this.#resolveTimer = setInterval(() => void this.resolvePeers(), resolveIntervalMs);
      this.#resolveTimer.unref();
    }
    void this.#receive();
    return this.#endpoint;
  }

  /** Connects to one more peer gateway (e.g. learned later). */
  addPeer(endpoint: string): void {
    this.#addedPeers.add(endpoint);
    this.#apply(new Set([...this.#peers, endpoint]));
  }

  /**
   * Resolves the peer names now: subscribes to new addresses, drops vanished ones. Runs on its own
   * every resolveIntervalMs; a resolution still running is joined, not repeated.
   */
  resolvePeers(): Promise<void> {
    this.#resolving ??= (async () => {
      try {
        const resolved = await resolveEndpoints(this.#options.peerEndpoints, this.#options.lookup);
        if (!this.#closed) this.#apply(new Set([...resolved, ...this.#addedPeers]));
      } finally {
        this.#resolving = undefined;
      }
    })();
    return this.#resolving;
  }

  /** Makes the subscriptions match `wanted` (without this gateway's own endpoints). */
  #apply(wanted: Set<string>): void {
    for (const own of this.#own) wanted.delete(own);
    const removed: string[] = [];
    const added: string[] = [];
    for (const peer of this.#peers) {
      if (wanted.has(peer)) continue;
      this.#peers.delete(peer);
      removed.push(peer);
      try {
        this.#subscriber.disconnect(peer);
      } catch {
        // Already gone with its connection.
      }
    }
    for (const peer of wanted) {
      if (this.#peers.has(peer)) continue;
      try {
        this.#subscriber.connect(peer);
      } catch {
        // Not connectable now (a name ZeroMQ cannot use yet): tried again at the next resolution.
        continue;
      }
      this.#peers.add(peer);
      added.push(peer);
    }
    if (added.length > 0 || removed.length > 0) this.#handlers.onPeersChanged?.({ added, removed, peers: [...this.#peers] });
  }

  publishDeploy(header: DeployHeader, code: Buffer): void {
    if (this.#endpoint === '') return;
    this.#outbox.push([this.#origin, ...encodeFrames(MessageType.DEPLOY, header, code)]);
  }

  publishUndeploy(header: UndeployHeader): void {
    if (this.#endpoint === '') return;
    this.#outbox.push([this.#origin, ...encodeFrames(MessageType.UNDEPLOY, header)]);
  }

  async #receive(): Promise<void> {
    try {
      for await (const [origin, ...frames] of this.#subscriber) {
        if (origin.equals(this.#origin)) continue;
        let message;
        try {
          message = decodeFrames(frames);
        } catch (err) {
          if (err instanceof FrameError) continue;
          throw err;
        }
        if (message.type === MessageType.DEPLOY) this.#handlers.onDeploy(message.header, message.body);
        else if (message.type === MessageType.UNDEPLOY) this.#handlers.onUndeploy(message.header);
      }
    } catch (err) {
      if (!this.#closed) throw err;
    }
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#resolveTimer);
    this.#outbox.clear();
    this.#publisher.close();
    this.#subscriber.close();
  }
}
