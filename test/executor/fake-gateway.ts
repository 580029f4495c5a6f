/**
 * A fake gateway for executor tests: a real BusRouter on tcp://127.0.0.1:* that deploys
 * functions (DEPLOY with the spec, the bundle served on FETCH_BUNDLE like a real gateway), sends
 * INVOKEs and lets tests await RESULT, LOGS and EVENTS frames.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  BusRouter,
  decodeLogRows,
  MessageType,
  type BusMessage,
  type ContainerEvent,
  type ExecutorPeer,
  type FunctionSpec,
  type InvokeHeader,
  type DecodedLogRow,
  type ResultHeader,
} from '../../bus/index.ts';
import { packFunctionDir } from '../../cli/pack.ts';
import { bundleHash } from '../../executor/bundles.ts';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const EXAMPLES = path.join(ROOT, 'examples');
export const FIXTURES = path.join(ROOT, 'test', 'fixtures', 'functions');

export interface Result {
  header: ResultHeader;
  body: Buffer;
}

type Listener = () => void;

export class FakeGateway {
  readonly router: BusRouter;
  readonly logs: DecodedLogRow[] = [];
  /** For each RESULT: how many of its invocation's log lines had arrived before it. */
  readonly linesBeforeResult = new Map<string, number>();
  readonly events: ContainerEvent[] = [];
  readonly credits: number[] = [];
  /** Why executors left (BYE or missed heartbeats). */
  readonly downReasons: string[] = [];
  /** The codeHash of every FETCH_BUNDLE received, in order. */
  readonly bundleRequests: string[] = [];
  /** Bundles served on FETCH_BUNDLE, by the codeHash they were deployed under. */
  readonly bundles = new Map<string, Buffer>();
  readonly #results = new Map<string, Result>();
  readonly #listeners = new Set<Listener>();
  readonly #peerListeners = new Set<(peer: ExecutorPeer) => void>();
  #peer: ExecutorPeer | undefined;
  #seq = 0;

  constructor() {
    this.router = new BusRouter(
      { bindEndpoint: 'tcp://127.0.0.1:*', heartbeatIntervalMs: 200, heartbeatMissLimit: 10 },
      {
        onPeerUp: (peer) => {
          this.#peer = peer;
          for (const l of this.#peerListeners) l(peer);
        },
        onPeerDown: (peer, reason) => {
          this.downReasons.push(reason);
          if (this.#peer?.peerId === peer.peerId) this.#peer = undefined;
          this.#notify();
        },
        onCredit: (peer) => {
          this.credits.push(peer.credits);
          this.#notify();
        },
        onMessage: (peer, message) => this.#onMessage(peer, message),
      },
    );
  }

  async bind(): Promise<string> {
    return this.router.bind();
  }

  #onMessage(peer: ExecutorPeer, message: BusMessage): void {
    if (message.type === MessageType.FETCH_BUNDLE) {
      const { codeHash } = message.header;
      this.bundleRequests.push(codeHash);
      const bundle = this.bundles.get(codeHash);
      this.router.send(peer.peerId, MessageType.BUNDLE, { codeHash, found: bundle !== undefined, message: bundle ? '' : 'not deployed here' }, bundle);
    }
    if (message.type === MessageType.RESULT) {
      const { id } = message.header;
      if (message.logRows) this.logs.push(...decodeLogRows(message.logRows));
      this.linesBeforeResult.set(id, this.logs.filter((l) => l.invocationId === id).length);
      this.#results.set(id, { header: message.header, body: message.body });
    }
    if (message.type === MessageType.LOGS) this.logs.push(...decodeLogRows(message.body));
    if (message.type === MessageType.EVENTS) this.events.push(...message.header.events);
    this.#notify();
  }

  #notify(): void {
    for (const l of [...this.#listeners]) l();
  }

  /** Resolves once `probe` returns a value, re-checked on every message (and at once). */
  waitFor<T>(probe: () => T | undefined, what: string, timeoutMs = 20_000): Promise<T> {
    const now = probe();
    if (now !== undefined) return Promise.resolve(now);
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#listeners.delete(listener);
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`));
      }, timeoutMs);
      const listener: Listener = () => {
        const value = probe();
        if (value === undefined) return;
        clearTimeout(timer);
        this.#listeners.delete(listener);
        resolve(value);
      };
      this.#listeners.add(listener);
    });
  }

  /** The executor peer, once it said HELLO. */
  peer(): Promise<ExecutorPeer> {
    if (this.#peer) return Promise.resolve(this.#peer);
    return new Promise((resolve) => {
      const listener = (peer: ExecutorPeer) => {
        this.#peerListeners.delete(listener);
        resolve(peer);
      };
      this.#peerListeners.add(listener);
    });
  }

  /** Packs a function folder and sends DEPLOY (its bundle kept to serve on FETCH_BUNDLE); returns the spec. */
  async deploy(dir: string, name: string, overrides: Partial<FunctionSpec> = {}): Promise<FunctionSpec> {
    const bundle = await packFunctionDir(dir);
    const spec: FunctionSpec = {
      name,
      namespace: 'default',
      version: 1,
      runtime: 'node20',
      image: '',
      codeHash: bundleHash(bundle),
      handler: 'index.mjs',
      env: {},
      limits: { memoryMB: 128, timeoutMs: 10_000, concurrency: 1 },
      ...overrides,
    };
    await this.deploySpec(spec, bundle);
    return spec;
  }

  /** Sends DEPLOY with `spec` and serves `bundle` under spec.codeHash (whatever its real hash). */
  async deploySpec(spec: FunctionSpec, bundle: Buffer): Promise<void> {
    const peer = await this.peer();
    if (spec.codeHash !== '') this.bundles.set(spec.codeHash, bundle);
    this.router.send(peer.peerId, MessageType.DEPLOY, { spec });
  }

  /** Sends one INVOKE and resolves with its RESULT. */
  async invoke(name: string, options: { version?: number; body?: Buffer; path?: string; query?: string; headers?: Record<string, string>; timeoutMs?: number } = {}): Promise<Result> {
    const peer = await this.peer();
    const id = `inv-${process.pid}-${++this.#seq}`;
    const header: InvokeHeader = {
      id,
      fn: { name, version: options.version ?? 1 },
      method: 'POST',
      path: options.path ?? '/',
      query: options.query ?? '',
      headers: options.headers ?? {},
      deadlineMs: Date.now() + (options.timeoutMs ?? 10_000),
      traceparent: '',
      receivedAtMs: Date.now(),
    };
    const result = this.waitFor(() => this.#results.get(id), `RESULT of ${id}`);
    this.router.send(peer.peerId, MessageType.INVOKE, header, options.body ?? Buffer.alloc(0));
    return result;
  }

  /** Resolves with the first event matching. */
  event(match: (e: ContainerEvent) => boolean, what: string): Promise<ContainerEvent> {
    return this.waitFor(() => this.events.find(match), what);
  }

  close(): void {
    this.router.close();
  }
}
