/**
 * The executor: one BusDealer per gateway, credits (with idle warm slots per function, ready stem
 * cells per runtime and free memory), DEPLOY/UNDEPLOY into the registry (specs only: a missing
 * code bundle is fetched by hash from the gateways at its first call, bundle-fetcher.ts), and
 * each INVOKE run on a warm container, else a specialized stem cell, else a cold one (pool.ts),
 * its RESULT sent back on the dealer it came from. Hot path: #invoke; the request and response bodies are passed along
 * as Buffers, never copied.
 */
import { performance } from 'node:perf_hooks';
import type { Logger } from 'pino';
import { BusDealer, MessageType, type BusMessage, type CreditHeader, type InvokeHeader, type ResultHeader } from '../bus/index.ts';
import type { SkiffConfig } from '../config.ts';
import { SkiffError, toSkiffError } from '../errors.ts';
import { RuntimeMonitor, type RuntimeStats } from '../runtime-stats.ts';
import { CallAbort, linkSignals, raceAbort } from './abortable.ts';
import type { ContainerResponse } from './container-client.ts';
import { BundleFetcher, type BundleGateway } from './bundle-fetcher.ts';
import { BundleStore } from './bundles.ts';
import { ContainerLifecycle } from './container-lifecycle.ts';
import { ContainerState, type FunctionContainer } from './container.ts';
import type { ContainerDriver } from './driver.ts';
import type { HardeningSettings } from './hardening.ts';
import { createKeepAlive } from './keepalive.ts';
import { MemoryBudget, resolveMemoryBudgetMb } from './memory-budget.ts';
import type { ExecutorPaths } from './paths.ts';
import { WarmPool, type StateCounts } from './pool.ts';
import { FunctionRegistry } from './registry.ts';
import { hasNamedGateways, resolveGatewayEndpoints } from './gateway-discovery.ts';
import { TelemetryBatcher, type TelemetryRoute } from './telemetry.ts';

/** Longest an idle-container check waits between passes. */
const MAX_REAP_INTERVAL_MS = 5_000;
/** close() waits at most this long for calls in flight before removing their containers. */
const CLOSE_DRAIN_MAX_MS = 30_000;
/** setTimeout's ceiling (about 24.8 days); a later deadline is cut to it. */
const MAX_TIMER_MS = 2_147_483_647;
/** How long a crashed call waits for its container's exit to tell an OOM kill from a crash. */
const EXIT_EXPLAIN_MAX_MS = 2_000;
/** Retry-After (seconds) on FUNCTION_QUEUE_FULL. */
const QUEUE_FULL_RETRY_AFTER_S = 1;

const EXECUTOR_STATE = { RUNNING: 'running', CLOSING: 'closing', CLOSED: 'closed' } as const;
type ExecutorState = (typeof EXECUTOR_STATE)[keyof typeof EXECUTOR_STATE];

/** A snapshot of what an executor is doing. */
export interface ExecutorStats {
  inFlight: number;
  containers: Readonly<StateCounts>;
  memory: { budgetMb: number; usedMb: number };
  /** Log lines/events a full bus queue refused. */
  droppedTelemetry: number;
  runtime: RuntimeStats;
}

export interface ExecutorDeps {
  config: SkiffConfig;
  logger: Logger;
  driver: ContainerDriver;
  paths: ExecutorPaths;
}

interface InvocationOutcome {
  header: ResultHeader;
  body: Buffer;
}

function usBetween(fromMs: number, toMs: number): number {
  return Math.max(0, Math.round((toMs - fromMs) * 1000));
}

function timeoutError(invoke: InvokeHeader): SkiffError {
  return new SkiffError('FUNCTION_TIMEOUT', `${invoke.fn.name}@${invoke.fn.version} ran past its deadline (${new Date(invoke.deadlineMs).toISOString()})`);
}

export class Executor {
  readonly nodeId: string;
  readonly #config: SkiffConfig;
  readonly #logger: Logger;
  readonly #registry: FunctionRegistry;
  readonly #bundleFetcher: BundleFetcher;
  readonly #pool: WarmPool;
  readonly #telemetry = new TelemetryBatcher();
  /** GC pauses and event-loop delay of this process, sent to the gateways in heartbeats. */
  readonly #runtime = new RuntimeMonitor();
  readonly #dealers: BusDealer[] = [];
  #discovery: NodeJS.Timeout | undefined;
  readonly #invocations = new Set<Promise<void>>();
  readonly #startedAtMs = Date.now();
  #state: ExecutorState = EXECUTOR_STATE.RUNNING;
  #inFlight = 0;
  #creditScheduled = false;
  #lastCredit = '';
  readonly #budget: MemoryBudget;
  #reaper: NodeJS.Timeout | undefined;
  #closing: Promise<void> | undefined;

  constructor(deps: ExecutorDeps) {
    const { config, logger, driver, paths } = deps;
    this.nodeId = config.executor.nodeId;
    this.#config = config;
    this.#logger = logger;
    this.#registry = new FunctionRegistry(new BundleStore(paths.bundles), config.functionDefaults);
    const ex = config.executor;
    this.#bundleFetcher = new BundleFetcher({
      gateways: () => this.#dealers.map(bundleGatewayOf),
      timeoutMs: ex.bundleFetchTimeoutMs,
      maxConcurrent: ex.maxConcurrentBundleFetches,
      maxBundleBytes: config.gateway.maxDeployBytes,
    });
    const hardening: HardeningSettings = { pidsLimit: ex.pidsLimit, tmpfsMb: ex.tmpfsMb, defaultCpus: ex.defaultCpus, functionNetwork: ex.functionNetwork };
    const stemCellShape = { runtime: 'node20' as const, memoryMb: ex.stemCellMemoryMb, cpus: ex.defaultCpus };
    const lifecycle = new ContainerLifecycle({
      driver,
      nodeId: this.nodeId,
      runtimeImage: ex.runtimeImage,
      iofsRoot: paths.iofs,
      startTimeoutMs: ex.startTimeoutMs,
      maxLogLineBytes: ex.maxLogLineBytes,
      hardening,
      stemCellShape,
      telemetry: this.#telemetry,
      logger,
      fallbackRoute: () => this.#dealers.find((d) => d.connected),
      onExit: (container, code) => this.#onContainerExit(container, code),
    });
    this.#budget = new MemoryBudget(resolveMemoryBudgetMb(ex.memoryBudgetMb));
    this.#pool = new WarmPool({
      launcher: lifecycle,
      budget: this.#budget,
      ...createKeepAlive(ex.keepAlivePolicy, ex.idleTimeoutMs),
      maxContainersPerFunction: ex.maxContainersPerFunction,
      maxQueuedPerFunction: ex.maxQueuedPerFunction,
      maxCallsInFlight: ex.maxInFlight,
      stemCells: { min: ex.stemCells, max: ex.maxStemCells, shape: stemCellShape },
      hardening,
      onChange: () => this.#scheduleCredit(),
    });
  }

  /** Connects to every gateway and starts the idle reaper. */
  async start(): Promise<void> {
    const { executor } = this.#config;
    for (const endpoint of await resolveGatewayEndpoints(executor.gatewayEndpoints)) this.#addDealer(endpoint);
    if (hasNamedGateways(executor.gatewayEndpoints)) {
      // Gateways scale in and out behind their name: follow its addresses.
      this.#discovery = setInterval(() => void this.#refreshGateways(), executor.gatewayResolveIntervalMs);
      this.#discovery.unref();
    }
    const reapEveryMs = Math.max(1, Math.min(Math.floor(executor.idleTimeoutMs / 2), MAX_REAP_INTERVAL_MS));
    this.#reaper = setInterval(() => this.#pool.reapIdle(), reapEveryMs);
    this.#reaper.unref();
    this.#pool.start();
  }

  /** Connects one more gateway. */
  #addDealer(endpoint: string): void {
    const { executor, bus } = this.#config;
    const dealer: BusDealer = new BusDealer(
      {
        endpoint,
        hello: { nodeId: this.nodeId, zone: executor.zone, pid: process.pid, maxInFlight: executor.maxInFlight, startedAtMs: this.#startedAtMs },
        heartbeatIntervalMs: bus.heartbeatIntervalMs,
        heartbeatMissLimit: bus.heartbeatMissLimit,
        inFlight: () => this.#inFlight,
        runtime: () => this.#runtime.snapshot(),
        curve: executor.curve.secretKey
          ? { publicKey: executor.curve.publicKey, secretKey: executor.curve.secretKey, serverPublicKey: executor.curve.gatewayPublicKey }
          : undefined,
      },
      {
        onMessage: (message) => this.#onMessage(dealer, message),
        onConnected: () => {
          this.#logger.info({ endpoint }, 'connected to gateway');
          dealer.send(MessageType.CREDIT, { ...this.#creditHeader(), invokesReceived: dealer.invokesReceived });
        },
        onLost: () => {
          this.#logger.warn({ endpoint }, 'gateway stopped answering');
          this.#bundleFetcher.gatewayLost(endpoint);
        },
      },
    );
    this.#dealers.push(dealer);
    dealer.start();
  }

  /** Re-resolves gateway names: connects new addresses, drops vanished ones. */
  async #refreshGateways(): Promise<void> {
    const wanted = new Set(await resolveGatewayEndpoints(this.#config.executor.gatewayEndpoints));
    if (this.#state !== EXECUTOR_STATE.RUNNING) return;
    for (const dealer of [...this.#dealers]) {
      if (wanted.has(dealer.endpoint)) continue;
      this.#dealers.splice(this.#dealers.indexOf(dealer), 1);
      this.#logger.info({ endpoint: dealer.endpoint }, 'gateway address gone');
      void dealer.close('gateway address gone');
    }
    for (const endpoint of wanted) if (!this.#dealers.some((d) => d.endpoint === endpoint)) this.#addDealer(endpoint);
  }

  stats(): ExecutorStats {
    return {
      inFlight: this.#inFlight,
      containers: this.#pool.counts(),
      memory: { budgetMb: this.#budget.totalMb, usedMb: this.#budget.usedMb },
      droppedTelemetry: this.#telemetry.dropped,
      runtime: this.#runtime.snapshot(),
    };
  }

  #credits(): number {
    return this.#state === EXECUTOR_STATE.RUNNING ? Math.max(0, this.#config.executor.maxInFlight - this.#inFlight) : 0;
  }

  #creditHeader(): CreditHeader {
    if (this.#state !== EXECUTOR_STATE.RUNNING) return { credits: 0, warm: {}, stemCells: {}, memoryFreeMb: 0 };
    return { credits: this.#credits(), ...this.#pool.capacity() };
  }

  /** Sends the current credit to every gateway, once per turn of the event loop. */
  #scheduleCredit(): void {
    if (this.#creditScheduled) return;
    this.#creditScheduled = true;
    setImmediate(() => {
      this.#creditScheduled = false;
      this.#sendCredit();
    });
  }

  #sendCredit(): void {
    const header = this.#creditHeader();
    const fingerprint = JSON.stringify(header);
    if (fingerprint === this.#lastCredit) return;
    this.#lastCredit = fingerprint;
    // Each gateway gets its own count of INVOKEs received, so it can discount calls in transit.
    for (const dealer of this.#dealers) if (dealer.connected) dealer.send(MessageType.CREDIT, { ...header, invokesReceived: dealer.invokesReceived });
  }

  #onMessage(dealer: BusDealer, message: BusMessage): void {
    switch (message.type) {
      case MessageType.INVOKE:
        this.#onInvoke(dealer, message.header, message.body);
        return;
      case MessageType.DEPLOY: {
        let deployed: { key: string; superseded: string[] };
        try {
          deployed = this.#registry.deploy(message.header.spec);
        } catch (err) {
          this.#logger.error({ err, fn: message.header.spec?.name }, 'deploy rejected');
          return;
        }
        this.#logger.info({ fn: deployed.key }, 'function deployed');
        for (const key of deployed.superseded) this.#pool.retire(key, `superseded by ${deployed.key}`);
        return;
      }
      case MessageType.BUNDLE:
        this.#bundleFetcher.onBundle(dealer.endpoint, message.header, message.body);
        return;
      case MessageType.UNDEPLOY:
        for (const key of this.#registry.undeploy(message.header.name)) this.#pool.retire(key, 'function undeployed');
        this.#logger.info({ fn: message.header.name }, 'function undeployed');
        return;
      default:
        this.#logger.debug({ type: message.type }, 'ignored bus message');
    }
  }

  #onInvoke(dealer: BusDealer, invoke: InvokeHeader, body: Buffer): void {
    const receivedAt = performance.now();
    this.#inFlight++;
    this.#scheduleCredit();
    const job = this.#invoke(dealer, invoke, body, receivedAt, dealer.endpoint)
      .then((outcome) => {
        // The lines batched so far (this call's among them) go in the same message: a RESULT never overtakes them.
        const lines = this.#telemetry.takeLines(dealer);
        if (!dealer.send(MessageType.RESULT, outcome.header, outcome.body, lines?.body)) {
          this.#logger.error({ id: invoke.id }, 'RESULT dropped: the bus queue is full');
          if (lines) this.#telemetry.refused(lines.lines);
        }
      })
      .catch((err: unknown) => this.#logger.error({ err, id: invoke.id }, 'invocation failed unexpectedly'))
      .finally(() => {
        this.#inFlight--;
        this.#scheduleCredit();
        this.#invocations.delete(job);
      });
    this.#invocations.add(job);
  }

  async #invoke(route: TelemetryRoute, invoke: InvokeHeader, body: Buffer, receivedAt: number, gatewayEndpoint: string): Promise<InvocationOutcome> {
    const header: ResultHeader = { id: invoke.id, status: 0, headers: {}, errorCode: '', errorMessage: '', start: '', containerId: '', initUs: 0, runUs: 0, queueUs: 0 };
    const deadline = new CallAbort();
    let timer: NodeJS.Timeout | undefined;
    let container: FunctionContainer | undefined;
    let runAt = 0;
    try {
      if (this.#state !== EXECUTOR_STATE.RUNNING) throw new SkiffError('EXECUTOR_LOST', 'the executor is shutting down');
      if (!Number.isFinite(invoke.deadlineMs)) throw new SkiffError('BAD_REQUEST', `INVOKE ${invoke.id} has no valid deadlineMs`);
      const remainingMs = invoke.deadlineMs - Date.now();
      if (remainingMs <= 0) throw timeoutError(invoke);
      timer = setTimeout(() => deadline.abort(timeoutError(invoke)), Math.min(remainingMs, MAX_TIMER_MS));
      // A missing bundle comes from the gateway that sent the call first: it knows the function.
      const fetchBundle = (codeHash: string) => this.#bundleFetcher.fetch(codeHash, gatewayEndpoint);
      const deployed = await raceAbort(this.#registry.resolve(invoke.fn.name, invoke.fn.version, fetchBundle), deadline);
      if (!deployed) throw new SkiffError('FUNCTION_NOT_FOUND', `${invoke.fn.name}@${invoke.fn.version} is not deployed on executor ${this.nodeId}`);
      const lease = await this.#pool.acquire(deployed, { id: invoke.id, route }, deadline);
      container = lease.container;
      runAt = performance.now();
      header.start = lease.start;
      header.containerId = container.id;
      header.initUs = lease.initUs;
      if (lease.createUs > 0) header.createUs = lease.createUs;
      header.queueUs = Math.max(0, usBetween(receivedAt, runAt) - lease.initUs);
      const client = container.client;
      if (!client) throw new SkiffError('INTERNAL_ERROR', 'a ready container has no client');
      const linked = linkSignals(deadline, container.signal);
      let response: ContainerResponse;
      try {
        response = await client.call({
          invoke,
          functionName: deployed.spec.name,
          body,
          signal: linked.signal,
          maxResponseBytes: this.#config.executor.maxResponseBytes,
        });
      } finally {
        linked.dispose();
      }
      header.runUs = usBetween(runAt, performance.now());
      // Lines carried in the response head: rows now, ahead of the RESULT's takeLines.
      if (response.logLines !== undefined) {
        const carried = { invocationId: invoke.id, function: deployed.spec.name, containerId: container.id, timeMs: Date.now(), value: response.logLines };
        this.#telemetry.carriedLines(route, carried, this.#config.executor.maxLogLineBytes);
      }
      // Lines on the log socket can be read after the response (two sockets): the RESULT waits for them.
      if (response.linesEnd) {
        const read = container.linesRead?.(invoke.id, this.#config.executor.logLinesWaitMs);
        if (read) await read;
      }
      header.status = response.status;
      header.headers = response.headers;
      return { header, body: response.body };
    } catch (err) {
      let error = toSkiffError(err);
      if (runAt > 0) header.runUs = usBetween(runAt, performance.now());
      if (container && error.code === 'FUNCTION_CRASHED') error = await this.#explainCrash(container, error);
      if (container) this.#afterFailedCall(container, invoke, error);
      header.status = error.statusCode;
      header.errorCode = error.code;
      header.errorMessage = error.message;
      header.headers = { 'content-type': 'application/json' };
      // The gateway passes it on with the 429 (RESULT headers on errors).
      if (error.code === 'FUNCTION_QUEUE_FULL') header.headers['retry-after'] = String(QUEUE_FULL_RETRY_AFTER_S);
      // The same JSON body the gateway answers errors with, for gateways that pass it through.
      return { header, body: Buffer.from(JSON.stringify(error.toJSON())) };
    } finally {
      clearTimeout(timer);
      if (container) this.#pool.release(container);
    }
  }

  /** A container that died mid-call because the kernel's OOM killer stopped it: say so. */
  async #explainCrash(container: FunctionContainer, error: SkiffError): Promise<SkiffError> {
    if (!container.exit) return error;
    let timer: NodeJS.Timeout | undefined;
    const gaveUp = new Promise<undefined>((resolve) => {
      timer = setTimeout(() => resolve(undefined), EXIT_EXPLAIN_MAX_MS);
    });
    const exit = await Promise.race([container.exit, gaveUp]);
    clearTimeout(timer);
    if (!exit?.oomKilled) return error;
    const { name, version, limits } = container.deployed.spec;
    return new SkiffError('FUNCTION_OUT_OF_MEMORY', `${name}@${version} went past its memory limit (limits.memoryMB ${limits.memoryMB}) and was killed`, { cause: error });
  }

  /** A timed-out container is killed; one that crashed, ran out of memory or spoke garbage is removed. */
  #afterFailedCall(container: FunctionContainer, invoke: InvokeHeader, error: SkiffError): void {
    if (error.code === 'FUNCTION_TIMEOUT') {
      void this.#pool.remove(container, {
        kind: 'killed',
        detail: `call ${invoke.id} ran past its deadline`,
        error: new SkiffError('FUNCTION_CRASHED', 'the container was killed: another call on it ran past its deadline'),
      });
    } else if (error.code === 'FUNCTION_CRASHED' || error.code === 'FUNCTION_BAD_RESPONSE' || error.code === 'FUNCTION_OUT_OF_MEMORY') {
      void this.#pool.remove(container, { kind: 'crashed', detail: `call ${invoke.id}: ${error.message}`, error });
    }
  }

  #onContainerExit(container: FunctionContainer, exitCode: number): void {
    if (container.state === ContainerState.STARTING) {
      // Exited between opening its listener and being marked ready: handle it once it is.
      container.ready.then(() => this.#onContainerExit(container, exitCode), () => {});
      return;
    }
    if (container.state === ContainerState.REMOVING) return;
    void this.#pool.remove(container, {
      kind: 'crashed',
      detail: `exited with code ${exitCode}`,
      error: new SkiffError('FUNCTION_CRASHED', `the function container exited with code ${exitCode} during the call`),
    });
  }

  /**
   * Graceful stop: no new calls (credit 0), calls in flight finish (bounded by their deadlines
   * and CLOSE_DRAIN_MAX_MS), every container is removed, then BYE to each gateway. Idempotent.
   */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    this.#state = EXECUTOR_STATE.CLOSING;
    clearInterval(this.#reaper);
    clearInterval(this.#discovery);
    this.#pool.close(new SkiffError('EXECUTOR_LOST', 'the executor is shutting down'));
    this.#bundleFetcher.close();
    this.#sendCredit();
    let drainTimer: NodeJS.Timeout | undefined;
    const drained = Promise.allSettled([...this.#invocations]);
    const bound = new Promise<void>((resolve) => (drainTimer = setTimeout(resolve, CLOSE_DRAIN_MAX_MS)));
    await Promise.race([drained, bound]);
    clearTimeout(drainTimer);
    await this.#pool.removeAll({
      kind: 'removed',
      detail: 'executor closing',
      error: new SkiffError('EXECUTOR_LOST', 'the executor closed during the call'),
    });
    // Calls still running failed when their containers went: let their RESULTs go out.
    await Promise.allSettled([...this.#invocations]);
    this.#telemetry.close();
    await Promise.all(this.#dealers.map((d) => d.close('executor closing')));
    this.#runtime.close();
    this.#state = EXECUTOR_STATE.CLOSED;
    this.#logger.info('executor closed');
  }

  /** Forced stop: drops the gateways at once and removes every container. */
  destroy(err?: Error): Promise<void> {
    if (err) this.#logger.error({ err }, 'executor destroyed');
    if (this.#state === EXECUTOR_STATE.CLOSED) return this.#closing ?? Promise.resolve();
    this.#state = EXECUTOR_STATE.CLOSED;
    clearInterval(this.#reaper);
    clearInterval(this.#discovery);
    this.#pool.close(new SkiffError('EXECUTOR_LOST', 'the executor was destroyed'));
    this.#bundleFetcher.close('the executor was destroyed');
    this.#telemetry.close();
    this.#runtime.close();
    const done = (async () => {
      await Promise.all(this.#dealers.map((d) => d.close(err ? `destroyed: ${err.message}` : 'destroyed')));
      await this.#pool.removeAll({
        kind: 'killed',
        detail: 'executor destroyed',
        error: new SkiffError('EXECUTOR_LOST', 'the executor was destroyed during the call'),
      });
    })();
    this.#closing ??= done;
    return done;
  }
}

/** A gateway connection as the bundle fetcher sees it. */
function bundleGatewayOf(dealer: BusDealer): BundleGateway {
  return {
    endpoint: dealer.endpoint,
    get connected() {
      return dealer.connected;
    },
    requestBundle: (codeHash) => dealer.send(MessageType.FETCH_BUNDLE, { codeHash }),
  };
}
