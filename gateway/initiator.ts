/**
 * The initiator: turns an HTTP request into an invocation envelope, picks an executor, sends
 * INVOKE over the bus and matches the RESULT. It owns the gateway's ROUTER and keeps executors in
 * step with the registry (DEPLOY on HELLO and on every deploy, specs only; an executor fetches
 * a code bundle by hash when a call needs it: FETCH_BUNDLE, answered by bundle-server.ts). Hot path: the request body goes
 * into the INVOKE frame as is; the response body comes back as the RESULT frame's buffer.
 */
import { BusRouter, LOG_ROW_COLUMNS, MessageType, type BusMessage, type ExecutorPeer, type FetchBundleHeader, type InvokeHeader, type ResultHeader } from '../bus/index.ts';
import type { SkiffConfig } from '../config.ts';
import { isErrorCode, SkiffError, type ErrorCode } from '../errors.ts';
import type { Logger } from '../logger.ts';
import type { InvocationRecord, Storage } from '../storage/index.ts';
import { BundleServer } from './bundle-server.ts';
import type { FunctionDefinition } from './definition.ts';
import type { FunctionRegistry } from './registry.ts';
import { choosePlacement, leastLoaded, PlacementState, random, type PlacementCandidate, type PlacementOptions, type PlacementPolicy } from './placement.ts';

/** gateway.placement → policy. */
const PLACEMENT_POLICIES: Readonly<Record<SkiffConfig['gateway']['placement'], PlacementPolicy>> = {
  affinity: choosePlacement,
  random,
  'least-loaded': leastLoaded,
};

/** A bus peer as placement sees it. */
interface PeerCandidate extends PlacementCandidate {
  readonly peer: ExecutorPeer;
}

/** What the HTTP layer hands over for one call. */
export interface InvocationRequest {
  id: string;
  functionName: string;
  method: string;
  path: string;
  query: string;
  headers: Record<string, string>;
  body: Buffer;
  traceparent: string;
  receivedAtMs: number;
  /** 'async' for calls the async dispatcher runs; 'sync' when absent. */
  trigger?: 'sync' | 'async';
  /** Which delivery of the call this is (async retries); 1 when absent. */
  attempt?: number;
  /** When this attempt started (async); its deadline and totalUs run from here, not from receivedAtMs. */
  startedAtMs?: number;
  /** Set by the initiator when it sends INVOKE (epoch ms): the record's queuedAtMs. */
  dispatchedAtMs?: number;
}

/** What comes back: the function's answer, or a Skiff error with its code. */
export interface InvocationOutcome {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
  /** '' when the function answered. */
  errorCode: ErrorCode | '';
  errorMessage: string;
  result: ResultHeader | undefined;
  executorNodeId: string;
}

interface PendingCall {
  readonly request: InvocationRequest;
  readonly peerId: string;
  readonly nodeId: string;
  readonly timer: NodeJS.Timeout;
  readonly resolve: (outcome: InvocationOutcome) => void;
}

/** A call waiting for executor credit in its function's bounded queue. */
interface WaitingCall {
  readonly request: InvocationRequest;
  readonly timer: NodeJS.Timeout;
  readonly resolve: (outcome: InvocationOutcome) => void;
}

/** Extra time past a call's own timeout before the gateway stops waiting for the executor's verdict. */
const DEADLINE_GRACE_MS = 2_000;

export class Initiator {
  readonly #config: SkiffConfig;
  readonly #registry: FunctionRegistry;
  readonly #storage: Storage;
  readonly #logger: Logger;
  readonly #router: BusRouter;
  readonly #bundleServer: BundleServer;
  readonly #pending = new Map<string, PendingCall>();
  /** Last executor that ran each function: it likely still holds a warm container for it. */
  readonly #warmAffinity = new Map<string, string>();
  readonly #placement = new PlacementState();
  readonly #placementPolicy: PlacementPolicy;
  readonly #placementOptions: PlacementOptions;
  /** Calls this gateway has in flight on each executor: its load, for placement. */
  readonly #inFlightByPeer = new Map<string, number>();
  readonly #peerWaiters = new Set<() => void>();
  /** Calls waiting for credit, per function, in arrival order (bounded by gateway.maxQueuedPerFunction). */
  readonly #waiting = new Map<string, WaitingCall[]>();

  constructor(config: SkiffConfig, registry: FunctionRegistry, storage: Storage, logger: Logger) {
    this.#config = config;
    this.#registry = registry;
    this.#storage = storage;
    this.#logger = logger;
    this.#bundleServer = new BundleServer(registry, storage, { database: config.storage.database, maxBundleBytes: config.gateway.maxDeployBytes });
    this.#placementPolicy = PLACEMENT_POLICIES[config.gateway.placement];
    this.#placementOptions = { loadEpsilon: config.gateway.placementLoadEpsilon, callerZone: config.gateway.zone || undefined };
    this.#router = new BusRouter(
      {
        bindEndpoint: config.bus.bindEndpoint,
        heartbeatIntervalMs: config.bus.heartbeatIntervalMs,
        heartbeatMissLimit: config.bus.heartbeatMissLimit,
        curve: config.bus.curve.secretKey ? config.bus.curve : undefined,
      },
      {
        onPeerUp: (peer) => this.#onPeerUp(peer),
        onPeerDown: (peer, reason) => this.#onPeerDown(peer, reason),
        onMessage: (peer, message) => this.#onMessage(peer, message),
        onCredit: () => this.#drainWaiting(),
      },
    );
  }

  /** Binds the bus endpoint; returns the endpoint bound. */
  start(): Promise<string> {
    return this.#router.bind();
  }

  get busEndpoint(): string {
    return this.#router.endpoint;
  }

  executors(): ExecutorPeer[] {
    return this.#router.peers();
  }

  get inFlight(): number {
    return this.#pending.size;
  }

  /** Calls waiting for executor credit. */
  get waiting(): number {
    let total = 0;
    for (const queue of this.#waiting.values()) total += queue.length;
    return total;
  }

  /** Tells every executor about a new or updated definition: the spec only, code is fetched on demand. */
  announceDeploy(def: FunctionDefinition): void {
    for (const peer of this.#router.peers()) this.#router.send(peer.peerId, MessageType.DEPLOY, { spec: def.spec });
  }

  announceUndeploy(name: string): void {
    this.#warmAffinity.delete(name);
    for (const peer of this.#router.peers()) this.#router.send(peer.peerId, MessageType.UNDEPLOY, { name });
  }

  /** Runs one synchronous invocation; never rejects: failures come back as outcomes with a code. */
  invoke(request: InvocationRequest): Promise<InvocationOutcome> {
    let def: FunctionDefinition;
    try {
      def = this.#registry.require(request.functionName);
    } catch (err) {
      return Promise.resolve(this.#fail(request, err as SkiffError, ''));
    }
    if (this.#router.peers().length === 0) {
      return Promise.resolve(this.#fail(request, new SkiffError('NO_EXECUTOR', 'no executor is connected to this gateway'), ''));
    }
    const peer = this.#pickExecutor(def.spec.name);
    if (!peer) return this.#wait(request);
    return this.#send(request, def, peer);
  }

  /** Queues a call until an executor grants credit; 429 QUEUE_FULL when its function's queue is full or the wait is too long. */
  #wait(request: InvocationRequest): Promise<InvocationOutcome> {
    const { maxQueuedPerFunction, maxQueueWaitMs } = this.#config.gateway;
    const queue = this.#waiting.get(request.functionName) ?? [];
    if (queue.length >= maxQueuedPerFunction) {
      return Promise.resolve(this.#fail(request, new SkiffError('QUEUE_FULL', `no executor capacity and ${queue.length} calls of "${request.functionName}" are already waiting`), ''));
    }
    this.#waiting.set(request.functionName, queue);
    return new Promise((resolve) => {
      const call: WaitingCall = {
        request,
        resolve,
        timer: setTimeout(() => {
          const at = queue.indexOf(call);
          if (at >= 0) queue.splice(at, 1);
          resolve(this.#fail(request, new SkiffError('QUEUE_FULL', `no executor capacity within ${maxQueueWaitMs} ms`), ''));
        }, maxQueueWaitMs),
      };
      queue.push(call);
    });
  }

  /** Hands waiting calls to executors with credit, one function at a time in turn. */
  #drainWaiting(): void {
    let progressed = true;
    while (progressed && this.#waiting.size > 0) {
      progressed = false;
      for (const [name, queue] of this.#waiting) {
        const call = queue.shift();
        if (queue.length === 0) this.#waiting.delete(name);
        if (!call) continue;
        const peer = this.#pickExecutor(name);
        if (!peer) {
          queue.unshift(call);
          this.#waiting.set(name, queue);
          return;
        }
        clearTimeout(call.timer);
        let def: FunctionDefinition;
        try {
          def = this.#registry.require(name);
        } catch (err) {
          call.resolve(this.#fail(call.request, err as SkiffError, ''));
          progressed = true;
          continue;
        }
        void this.#send(call.request, def, peer).then(call.resolve);
        progressed = true;
      }
    }
  }

  /** Sends INVOKE to `peer` (which has credit) and resolves with its RESULT or a failure. */
  #send(request: InvocationRequest, def: FunctionDefinition, peer: ExecutorPeer): Promise<InvocationOutcome> {
    const timeoutMs = def.spec.limits.timeoutMs;
    const header: InvokeHeader = {
      id: request.id,
      fn: { name: def.spec.name, version: def.spec.version },
      method: request.method,
      path: request.path,
      query: request.query,
      headers: request.headers,
      deadlineMs: (request.startedAtMs ?? request.receivedAtMs) + timeoutMs,
      traceparent: request.traceparent,
      receivedAtMs: request.receivedAtMs,
    };
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#settle(request.id, this.#fail(request, new SkiffError('FUNCTION_TIMEOUT', `no result within ${timeoutMs} ms`), peer.hello.nodeId));
      }, timeoutMs + DEADLINE_GRACE_MS);
      this.#pending.set(request.id, { request, peerId: peer.peerId, nodeId: peer.hello.nodeId, timer, resolve });
      this.#inFlightByPeer.set(peer.peerId, (this.#inFlightByPeer.get(peer.peerId) ?? 0) + 1);
      peer.credits = Math.max(0, peer.credits - 1);
      request.dispatchedAtMs = Date.now();
      if (!this.#router.send(peer.peerId, MessageType.INVOKE, header, request.body)) {
        this.#settle(request.id, this.#fail(request, new SkiffError('NO_EXECUTOR', 'the bus to the executor is full'), peer.hello.nodeId));
      }
    });
  }

  /** Affinity first (warm container likely), then the executor with the most credit; none without credit. */
  /**
   * Placement (gateway/placement.ts, policy from gateway.placement): an executor with an idle
   * warm container for the function (as it reported, or the one that ran it last from here),
   * else its home by consistent hashing with bounded load, else the least loaded.
   */
  #pickExecutor(functionName: string): ExecutorPeer | undefined {
    const affine = this.#warmAffinity.get(functionName);
    const candidates: PeerCandidate[] = [];
    for (const peer of this.#router.peers()) {
      candidates.push({
        peer,
        peerId: peer.peerId,
        nodeId: peer.hello.nodeId,
        zone: peer.hello.zone || undefined,
        credits: peer.credits,
        inFlight: this.#inFlightByPeer.get(peer.peerId) ?? 0,
        warmFunctions: { has: (fn: string) => (peer.warm[fn] ?? 0) > 0 || (fn === functionName && peer.peerId === affine) },
      });
    }
    return this.#placementPolicy(functionName, candidates, this.#placement, this.#placementOptions)?.candidate.peer;
  }

  #settle(id: string, outcome: InvocationOutcome): void {
    const call = this.#pending.get(id);
    if (!call) return;
    this.#pending.delete(id);
    const left = (this.#inFlightByPeer.get(call.peerId) ?? 1) - 1;
    if (left > 0) this.#inFlightByPeer.set(call.peerId, left);
    else this.#inFlightByPeer.delete(call.peerId);
    clearTimeout(call.timer);
    call.resolve(outcome);
  }

  /** An outcome for a call that failed before or outside the function. */
  #fail(request: InvocationRequest, err: SkiffError, nodeId: string): InvocationOutcome {
    const headers: Record<string, string> = { 'content-type': 'application/json' };
    if (err.code === 'QUEUE_FULL') headers['retry-after'] = String(this.#config.gateway.retryAfterSeconds);
    const outcome: InvocationOutcome = {
      status: err.statusCode,
      headers,
      body: Buffer.from(JSON.stringify(err.toJSON())),
      errorCode: err.code,
      errorMessage: err.message,
      result: undefined,
      executorNodeId: nodeId,
    };
    return outcome;
  }

  #onMessage(peer: ExecutorPeer, message: BusMessage): void {
    switch (message.type) {
      case MessageType.RESULT:
        // The call's lines (and its neighbours') first: stored as if they had come in a LOGS.
        if (message.logRows) this.#storage.recordLogRows(LOG_ROW_COLUMNS, message.logRows);
        this.#onResult(peer, message.header, message.body);
        return;
      case MessageType.LOGS:
        this.#storage.recordLogRows(message.header.columns, message.body);
        return;
      case MessageType.EVENTS:
        this.#storage.recordContainerEvents(message.header.events);
        return;
      case MessageType.FETCH_BUNDLE:
        this.#serveBundle(peer, message.header);
        return;
      default:
        this.#logger.warn({ type: message.type, executor: peer.hello.nodeId }, 'unexpected bus message from executor');
    }
  }

  /** Answers an executor's FETCH_BUNDLE with the bundle, or with why it is not there. */
  #serveBundle(peer: ExecutorPeer, request: FetchBundleHeader): void {
    void this.#bundleServer.serve(request.codeHash).then(({ header, body }) => {
      const context = { executor: peer.hello.nodeId, codeHash: header.codeHash, bytes: body.length };
      if (header.found) this.#logger.info(context, 'code bundle served');
      else this.#logger.warn({ ...context, reason: header.message }, 'code bundle not served');
      if (!this.#router.send(peer.peerId, MessageType.BUNDLE, header, body)) this.#logger.warn(context, 'BUNDLE dropped: the bus queue is full or the executor left');
    });
  }

  #onResult(peer: ExecutorPeer, result: ResultHeader, body: Buffer): void {
    const call = this.#pending.get(result.id);
    if (!call) return; // Already settled (gateway-side timeout or executor loss).
    peer.credits++;
    if (this.#waiting.size > 0) setImmediate(() => this.#drainWaiting());
    if (result.errorCode === '') {
      this.#warmAffinity.set(call.request.functionName, peer.peerId);
      this.#settle(result.id, { status: result.status, headers: result.headers, body, errorCode: '', errorMessage: '', result, executorNodeId: peer.hello.nodeId });
      return;
    }
    const code: ErrorCode = isErrorCode(result.errorCode) ? result.errorCode : 'INTERNAL_ERROR';
    const err = new SkiffError(code, result.errorMessage || code);
    const failed = this.#fail(call.request, err, peer.hello.nodeId);
    // The executor says when to come back (a full function queue): pass it on.
    const retryAfter = result.headers['retry-after'];
    if (retryAfter !== undefined) failed.headers['retry-after'] = retryAfter;
    this.#settle(result.id, { ...failed, result });
  }

  /** Resolves once `count` executors are connected; rejects with NO_EXECUTOR after `timeoutMs`. */
  waitForExecutors(count: number, timeoutMs: number): Promise<void> {
    if (this.#router.peers().length >= count) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const waiter = () => {
        if (this.#router.peers().length < count) return;
        clearTimeout(timer);
        this.#peerWaiters.delete(waiter);
        resolve();
      };
      const timer = setTimeout(() => {
        this.#peerWaiters.delete(waiter);
        reject(new SkiffError('NO_EXECUTOR', `fewer than ${count} executors connected within ${timeoutMs} ms`));
      }, timeoutMs);
      this.#peerWaiters.add(waiter);
    });
  }

  #onPeerUp(peer: ExecutorPeer): void {
    for (const waiter of [...this.#peerWaiters]) waiter();
    this.#logger.info({ executor: peer.hello.nodeId, peer: peer.peerId }, 'executor connected');
    for (const def of this.#registry.list()) this.#router.send(peer.peerId, MessageType.DEPLOY, { spec: def.spec });
  }

  #onPeerDown(peer: ExecutorPeer, reason: string): void {
    this.#logger.warn({ executor: peer.hello.nodeId, reason }, 'executor lost');
    for (const [name, peerId] of this.#warmAffinity) if (peerId === peer.peerId) this.#warmAffinity.delete(name);
    for (const [id, call] of this.#pending) {
      if (call.peerId !== peer.peerId) continue;
      const err = new SkiffError('EXECUTOR_LOST', `executor ${peer.hello.nodeId} was lost mid-call: ${reason}`);
      this.#settle(id, this.#fail(call.request, err, call.nodeId));
    }
    if (this.#router.peers().length === 0) this.#failWaiting(new SkiffError('NO_EXECUTOR', 'no executor is connected to this gateway'));
  }

  #failWaiting(err: SkiffError): void {
    const queues = [...this.#waiting.values()];
    this.#waiting.clear();
    for (const queue of queues) {
      for (const call of queue) {
        clearTimeout(call.timer);
        call.resolve(this.#fail(call.request, err, ''));
      }
    }
  }

  /**
   * Writes the invocation record (batched by storage); called after the response went out.
   * `status` defaults to what the error code implies; a refused async submit passes 'rejected'.
   */
  record(request: InvocationRequest, outcome: InvocationOutcome, status: InvocationRecord['status'] = statusOf(outcome.errorCode)): void {
    const finishedAtMs = Date.now();
    const def = this.#registry.get(request.functionName);
    const result = outcome.result;
    // The executor reports durations, not times (its clock may differ): anchor them at the send.
    const queuedAtMs = request.dispatchedAtMs ?? finishedAtMs;
    const reachedContainer = result !== undefined && result.start !== '';
    const startedAtMs = reachedContainer ? Math.min(finishedAtMs, queuedAtMs + Math.round((result.queueUs + result.initUs) / 1000)) : finishedAtMs;
    const record: InvocationRecord = {
      id: request.id,
      namespace: def?.spec.namespace ?? 'default',
      function: request.functionName,
      version: def?.spec.version ?? 0,
      executor: outcome.executorNodeId,
      containerId: result?.containerId ?? '',
      trigger: request.trigger ?? 'sync',
      attempt: request.attempt ?? 1,
      status,
      errorCode: outcome.errorCode,
      httpStatus: outcome.status,
      start: result?.start ?? '',
      receivedAtMs: request.receivedAtMs,
      queuedAtMs,
      startedAtMs,
      finishedAtMs,
      queueUs: result?.queueUs ?? 0,
      initUs: result?.initUs ?? 0,
      createUs: result?.createUs ?? 0,
      runUs: result?.runUs ?? 0,
      totalUs: Math.max(0, Math.round((finishedAtMs - (request.startedAtMs ?? request.receivedAtMs)) * 1000)),
      requestBytes: request.body.length,
      responseBytes: outcome.body.length,
      traceId: traceIdOf(request.traceparent),
    };
    this.#storage.recordInvocation(record);
  }

  /** Fails every pending call and closes the bus socket. */
  close(): void {
    this.#failWaiting(new SkiffError('NO_EXECUTOR', 'the gateway is shutting down'));
    for (const [id, call] of this.#pending) {
      this.#settle(id, this.#fail(call.request, new SkiffError('NO_EXECUTOR', 'the gateway is shutting down'), call.nodeId));
    }
    this.#router.close();
  }
}

/** Load shedding: the call was refused before it ran, so it is `rejected`, though the platform is the reason. */
const SHED_CODES: ReadonlySet<ErrorCode> = new Set<ErrorCode>(['QUEUE_FULL', 'FUNCTION_QUEUE_FULL', 'JOURNAL_FULL']);

function statusOf(code: ErrorCode | ''): InvocationRecord['status'] {
  if (code === '') return 'ok';
  if (code === 'FUNCTION_TIMEOUT') return 'timeout';
  if (SHED_CODES.has(code)) return 'rejected';
  return new SkiffError(code, '').blame === 'caller' ? 'rejected' : 'error';
}

/** The trace id of a W3C traceparent (`00-<trace id>-<span id>-<flags>`), or ''. */
export function traceIdOf(traceparent: string): string {
  const match = /^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$/.exec(traceparent);
  return match ? match[1] : '';
}
