/**
 * Fetches code bundles from the gateways by content hash: FETCH_BUNDLE {codeHash} to a gateway,
 * BUNDLE {codeHash, found} back with the raw .tar.gz as its body. The gateway the call came from
 * is asked first (it certainly knows the function); one that does not have the bundle, or that
 * stops answering, passes the turn to the next connected gateway. One fetch per hash at a time, at most `maxConcurrent`
 * fetches at once (the rest wait in order), each bounded by `timeoutMs` and `maxBundleBytes`.
 *
 * Why the bus and not HTTP from the gateway: the bus is already authenticated and encrypted
 * (CURVE) between exactly these parties, needs no extra port, certificate or credential, and the
 * executor already knows which gateway sent the call; the gateway's HTTP side is the public front
 * door, where code must not be served. The cost, one large message on a connection that also
 * carries calls, is bounded: a bundle is at most gateway.maxDeployBytes and crosses once per node.
 * The bytes are verified against the hash by the cache (bundles.ts), not here.
 */
import type { BundleHeader } from '../bus/index.ts';
import { SkiffError } from '../errors.ts';

/** A gateway as the fetcher sees it (an adapter over one BusDealer). */
export interface BundleGateway {
  /** Tells gateways apart: the bus endpoint. */
  readonly endpoint: string;
  /** True while the gateway answers heartbeats. */
  readonly connected: boolean;
  /** Sends FETCH_BUNDLE for `codeHash`; false when the bus queue to this gateway is full. */
  requestBundle(codeHash: string): boolean;
}

export interface BundleFetcherOptions {
  /** The gateways this executor is connected to, in order of preference after the caller's. */
  gateways: () => readonly BundleGateway[];
  /** executor.bundleFetchTimeoutMs: from the first request to the bundle, across all gateways asked. */
  timeoutMs: number;
  /** executor.maxConcurrentBundleFetches. */
  maxConcurrent: number;
  /** A BUNDLE body larger than this is refused (gateway.maxDeployBytes: no bundle is larger than its deploy body). */
  maxBundleBytes: number;
}

/** One bundle being fetched, shared by everyone who needs that hash meanwhile. */
interface Fetch {
  readonly codeHash: string;
  /** The endpoint to ask first ('' for none). */
  readonly preferred: string;
  /** Endpoints asked so far. */
  readonly tried: Set<string>;
  /** Why gateways could not give it, for the error. */
  readonly refusals: string[];
  /** The endpoint whose answer is awaited ('' while queued). */
  asked: string;
  timer: NodeJS.Timeout | undefined;
  readonly promise: Promise<Buffer>;
  resolve(bundle: Buffer): void;
  reject(err: SkiffError): void;
}

export class BundleFetcher {
  readonly #options: BundleFetcherOptions;
  /** Every fetch not yet settled, queued or active, by hash. */
  readonly #fetches = new Map<string, Fetch>();
  readonly #queue: Fetch[] = [];
  #active = 0;
  #closed: SkiffError | undefined;
  /** FETCH_BUNDLE requests sent, all gateways together. */
  requests = 0;

  constructor(options: BundleFetcherOptions) {
    this.#options = options;
  }

  /** Fetches being sent or awaited now. */
  get active(): number {
    return this.#active;
  }

  /** Fetches waiting for a turn. */
  get queued(): number {
    return this.#queue.length;
  }

  /**
   * The bytes of bundle `codeHash` from a gateway, asking `preferredEndpoint` first. A second
   * call for a hash already being fetched shares that fetch. Rejects with BUNDLE_UNAVAILABLE
   * when no connected gateway has it or none sends it within the timeout.
   */
  fetch(codeHash: string, preferredEndpoint = ''): Promise<Buffer> {
    if (this.#closed) return Promise.reject(this.#closed);
    const existing = this.#fetches.get(codeHash);
    if (existing) return existing.promise;
    let resolve!: (bundle: Buffer) => void;
    let reject!: (err: SkiffError) => void;
    const promise = new Promise<Buffer>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    const fetch: Fetch = { codeHash, preferred: preferredEndpoint, tried: new Set(), refusals: [], asked: '', timer: undefined, promise, resolve, reject };
    this.#fetches.set(codeHash, fetch);
    this.#queue.push(fetch);
    this.#pump();
    return promise;
  }

  /** A BUNDLE frame from the gateway at `endpoint`. Answers nobody is waiting for are dropped. */
  onBundle(endpoint: string, header: BundleHeader, body: Buffer): void {
    const fetch = typeof header?.codeHash === 'string' ? this.#fetches.get(header.codeHash) : undefined;
    if (!fetch || fetch.asked !== endpoint) return;
    if (header.found !== true) {
      fetch.refusals.push(`${endpoint}: ${header.message || 'not found'}`);
      this.#askNext(fetch);
    } else if (body.length > this.#options.maxBundleBytes) {
      fetch.refusals.push(`${endpoint}: sent ${body.length} bytes, over the ${this.#options.maxBundleBytes}-byte limit (gateway.maxDeployBytes)`);
      this.#askNext(fetch);
    } else {
      this.#settle(fetch);
      fetch.resolve(body);
    }
  }

  /** The gateway at `endpoint` stopped answering: fetches waiting on it ask the next one. */
  gatewayLost(endpoint: string): void {
    for (const fetch of [...this.#fetches.values()]) {
      if (fetch.asked !== endpoint) continue;
      fetch.refusals.push(`${endpoint}: the gateway stopped answering`);
      this.#askNext(fetch);
    }
  }

  /** Fails every fetch in progress or waiting; later fetches fail at once. Idempotent. */
  close(reason = 'the executor is shutting down'): void {
    this.#closed ??= new SkiffError('BUNDLE_UNAVAILABLE', `code bundles cannot be fetched: ${reason}`);
    for (const fetch of [...this.#fetches.values()]) {
      this.#settle(fetch);
      fetch.reject(this.#closed);
    }
  }

  #pump(): void {
    while (!this.#closed && this.#active < this.#options.maxConcurrent && this.#queue.length > 0) {
      const fetch = this.#queue.shift() as Fetch;
      this.#active++;
      fetch.timer = setTimeout(() => {
        this.#settle(fetch);
        fetch.reject(this.#failure(fetch, `no gateway sent it within ${this.#options.timeoutMs} ms (executor.bundleFetchTimeoutMs)`));
      }, this.#options.timeoutMs);
      this.#askNext(fetch);
    }
  }

  /** Asks the next connected gateway not asked yet, the preferred one first; fails when none is left. */
  #askNext(fetch: Fetch): void {
    const candidates = this.#options.gateways().filter((g) => g.connected && !fetch.tried.has(g.endpoint));
    const gateway = candidates.find((g) => g.endpoint === fetch.preferred) ?? candidates[0];
    if (!gateway) {
      this.#settle(fetch);
      fetch.reject(this.#failure(fetch, fetch.tried.size === 0 ? 'no gateway is connected' : 'no connected gateway has it'));
      return;
    }
    fetch.tried.add(gateway.endpoint);
    fetch.asked = gateway.endpoint;
    this.requests++;
    if (gateway.requestBundle(fetch.codeHash)) return;
    fetch.refusals.push(`${gateway.endpoint}: the bus queue is full`);
    this.#askNext(fetch);
  }

  /** Takes a fetch out of the books (once) and gives its turn to the next. */
  #settle(fetch: Fetch): void {
    if (this.#fetches.get(fetch.codeHash) !== fetch) return;
    this.#fetches.delete(fetch.codeHash);
    const queuedAt = this.#queue.indexOf(fetch);
    if (queuedAt >= 0) {
      this.#queue.splice(queuedAt, 1);
    } else {
      clearTimeout(fetch.timer);
      this.#active--;
      this.#pump();
    }
    fetch.asked = '';
  }

  #failure(fetch: Fetch, why: string): SkiffError {
    const detail = fetch.refusals.length > 0 ? ` (${fetch.refusals.join('; ')})` : '';
    return new SkiffError('BUNDLE_UNAVAILABLE', `code bundle ${fetch.codeHash} could not be fetched: ${why}${detail}`);
  }
}
