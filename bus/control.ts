/**
 * The control channel between gateways: each gateway PUBlishes the definitions deployed through
 * it and SUBscribes to its peers', so a deploy on one gateway is invocable through all of them
 * without a storage round trip. Frames are the bus's own (DEPLOY, UNDEPLOY), tagged with the
 * publishing gateway so a gateway ignores its own echo.
 */
import { randomBytes } from 'node:crypto';
import { Publisher, Subscriber } from 'zeromq';
import { decodeFrames, encodeFrames, FrameError } from './frames.ts';
import { MessageType, type DeployHeader, type UndeployHeader } from './messages.ts';
import { Outbox } from './outbox.ts';

export interface ControlChannelOptions {
  /** Where this gateway publishes ('' for nowhere: a single gateway). */
  bindEndpoint: string;
  /** The other gateways' control endpoints. */
  peerEndpoints: readonly string[];
}

export interface ControlChannelHandlers {
  onDeploy(header: DeployHeader, code: Buffer): void;
  onUndeploy(header: UndeployHeader): void;
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
  #closed = false;

  constructor(options: ControlChannelOptions, handlers: ControlChannelHandlers) {
    this.#options = options;
    this.#handlers = handlers;
  }

  get endpoint(): string {
    return this.#endpoint;
  }

  /** Binds the publisher (if configured) and connects to every peer. */
  async start(): Promise<string> {
    if (this.#options.bindEndpoint !== '') {
      await this.#publisher.bind(this.#options.bindEndpoint);
      this.#endpoint = this.#publisher.lastEndpoint ?? this.#options.bindEndpoint;
    }
    this.#subscriber.subscribe();
    for (const peer of this.#options.peerEndpoints) this.#subscriber.connect(peer);
    void this.#receive();
    return this.#endpoint;
  }

  /** Connects to one more peer gateway (e.g. learned later). */
  addPeer(endpoint: string): void {
    this.#subscriber.connect(endpoint);
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
    this.#outbox.clear();
    this.#publisher.close();
    this.#subscriber.close();
  }
}
