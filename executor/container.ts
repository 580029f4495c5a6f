/**
 * One container as the executor tracks it: a function container, or a stem cell (a prewarmed
 * runtime container with no function yet, which becomes a function container when it
 * specializes). Its state (one enum, counted by the pool), the calls holding a slot in it, its
 * http-stream client, and the invocation its output is attributed to.
 */
import type { FunctionSpec, StartType } from '../bus/index.ts';
import type { SkiffError } from '../errors.ts';
import type { ContainerClient } from './container-client.ts';
import type { StemCellShape } from './container-spec.ts';
import type { ContainerExit } from './driver.ts';
import type { DeployedFunction } from './registry.ts';
import type { TelemetryRoute } from './telemetry.ts';

export const ContainerState = {
  /** Being created/started; has not opened its listener yet. */
  STARTING: 'starting',
  IDLE: 'idle',
  /** Serving at least one call. */
  BUSY: 'busy',
  /** Being killed/removed; never handed out again. */
  REMOVING: 'removing',
} as const;
export type ContainerState = (typeof ContainerState)[keyof typeof ContainerState];

/** An invocation as far as its container's output is concerned. */
export interface InvocationRef {
  id: string;
  route: TelemetryRoute;
}

/** Why a container goes away: the event recorded, and the error its in-flight calls get. */
export interface RemovalReason {
  kind: 'killed' | 'crashed' | 'evicted' | 'removed';
  detail: string;
  error: SkiffError;
}

/** A container handed to one invocation. */
export interface Lease {
  container: FunctionContainer;
  start: StartType;
  /** Microseconds this call waited for the container to start or specialize (0 when warm). */
  initUs: number;
  /** Of initUs, microseconds of container create + start (cold starts only). */
  createUs: number;
}

/** The pool key of the stem cells of a runtime. */
export function stemCellKey(runtime: string): string {
  return `stemcell:${runtime}`;
}

/** What a stem cell is filed under until it specializes: no function, its shape's limits. */
export function stemCellPlaceholder(shape: StemCellShape): DeployedFunction {
  const spec: FunctionSpec = {
    name: '',
    namespace: '',
    version: 0,
    runtime: shape.runtime,
    image: '',
    codeHash: '',
    handler: '',
    env: {},
    limits: { memoryMB: shape.memoryMb, timeoutMs: 1, concurrency: 1, cpus: shape.cpus },
  };
  return { key: stemCellKey(shape.runtime), spec, codeDir: '' };
}

export class FunctionContainer {
  /** The function it runs; a stem cell's placeholder until it specializes. */
  deployed: DeployedFunction;
  /** A stem cell that has not specialized yet. */
  stemCell: boolean;
  /** How the current start attempt began: a cold start or a stem cell specializing. */
  startKind: 'cold' | 'stemcell' = 'cold';
  /** Microseconds Docker took to create and start it (cold starts). */
  createUs = 0;
  /** Memory reserved for it in the node budget. */
  readonly memoryMb: number;
  /** Settles with how it ended once the started container exits (set by the lifecycle). */
  exit: Promise<ContainerExit> | undefined;
  readonly createdAtMs = Date.now();
  /** Docker id, '' until created. */
  id = '';
  state: ContainerState = ContainerState.STARTING;
  /** Calls holding a slot (including ones waiting for it to start). */
  active = 0;
  lastUsedMs = Date.now();
  /** Retired (undeployed or superseded): removed as soon as it is idle. */
  retired = false;
  client: ContainerClient | undefined;
  /**
   * Waits, at most `maxWaitMs`, until the log socket has delivered the lines call `callId`
   * printed (its call-end frame); undefined when they are already in. Set by the lifecycle.
   */
  linesRead: ((callId: string, maxWaitMs: number) => Promise<void> | undefined) | undefined;
  /** Host directory bind-mounted at /tmp/iofs. */
  iofsDir = '';
  /**
   * The invocation output is attributed to: the one running now, or the most recent. Exact with
   * concurrency 1; with more, lines go to the call that started last.
   */
  invocation: InvocationRef | undefined;
  /** Settles when the start attempt is over (ready or failed). */
  ready: Promise<void> = Promise.resolve();
  /** Settles when the removal is over; set once. */
  removal: Promise<void> | undefined;
  readonly #life = new AbortController();

  constructor(deployed: DeployedFunction, options: { stemCell?: boolean } = {}) {
    this.deployed = deployed;
    this.stemCell = options.stemCell ?? false;
    this.memoryMb = deployed.spec.limits.memoryMB;
  }

  get key(): string {
    return this.deployed.key;
  }

  get concurrency(): number {
    return this.deployed.spec.limits.concurrency;
  }

  /** Aborted (reason: a SkiffError) when the container goes away; in-flight calls listen to it. */
  get signal(): AbortSignal {
    return this.#life.signal;
  }

  /** Fails every call in progress with `error`. */
  abort(error: SkiffError): void {
    if (!this.#life.signal.aborted) this.#life.abort(error);
  }

  /** Short id for logs and events. */
  get shortId(): string {
    return this.id.slice(0, 12);
  }
}
