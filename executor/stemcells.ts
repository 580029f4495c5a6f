/**
 * Stem cells (prewarmed runtime containers, OpenWhisk's "prewarm" containers) of a node's one
 * stem-cell shape: how many to keep (at least executor.stemCells, reactively more, up to
 * executor.maxStemCells, when the recent rate of starts that could use one — stem cell
 * specializations plus eligible cold starts — is higher), when to start more, and which ready one
 * a fitting function takes. The memory budget has the last word: stem cells are only started in
 * free memory, never by evicting warm containers, and never while calls wait for memory.
 * The warm pool (pool.ts) owns the containers; this file decides about the stem cells among them.
 */
import type { FunctionSpec } from '../bus/index.ts';
import type { StemCellShape } from './container-spec.ts';
import { ContainerState, FunctionContainer, stemCellKey, stemCellPlaceholder } from './container.ts';
import { cpusOf, type HardeningSettings } from './hardening.ts';
import type { MemoryBudget } from './memory-budget.ts';

/** The window the start rate is measured over. */
export const STEM_RATE_WINDOW_MS = 60_000;
/** A stem cell launch that failed waits this long before the next try. */
export const STEM_RETRY_MS = 5_000;

/** True when a function can run in a stem cell of `shape`: same runtime, memory, CPU, no network. */
export function fitsStemCell(fn: FunctionSpec, shape: StemCellShape, hardening: HardeningSettings): boolean {
  return fn.runtime === shape.runtime && fn.network !== true && fn.limits.memoryMB === shape.memoryMb && cpusOf(fn, hardening) === shape.cpus;
}

export class StemCellSizer {
  readonly #min: number;
  readonly #max: number;
  readonly #windowMs: number;
  /** Times of recent eligible starts, oldest first. */
  readonly #starts: number[] = [];

  constructor(min: number, max: number, windowMs = STEM_RATE_WINDOW_MS) {
    this.#min = min;
    this.#max = Math.max(min, max);
    this.#windowMs = windowMs;
  }

  /** A start that could use (or used) a stem cell happened at `nowMs`. */
  recordStart(nowMs: number): void {
    this.#starts.push(nowMs);
    this.#trim(nowMs);
  }

  #trim(nowMs: number): void {
    while (this.#starts.length > 0 && this.#starts[0] <= nowMs - this.#windowMs) this.#starts.shift();
  }

  /** Stem cells to keep now: the starts of the last window, within [min, max]. */
  target(nowMs: number): number {
    this.#trim(nowMs);
    if (this.#max === 0) return 0;
    return Math.min(this.#max, Math.max(this.#min, this.#starts.length));
  }
}

/** What the stem cells need from the pool that holds them. */
export interface StemCellHost {
  /** The containers filed under `key` (the stem cells' key), in any state. */
  containersOf(key: string): Iterable<FunctionContainer>;
  /** True while calls wait in a queue or for a container to start (they come first). */
  callsWaiting(): boolean;
  /** Files `stem` in the pool as starting and launches it. */
  launch(stem: FunctionContainer): void;
}

export interface StemCellOptions {
  /** Stem cells kept at least / at most; min 0 and max 0: none. */
  min: number;
  max: number;
  shape: StemCellShape;
  hardening: HardeningSettings;
  budget: MemoryBudget;
}

/** The stem cells of one shape: sizing, refills (batched per microtask), retries after a failed launch. */
export class StemCells {
  readonly #o: StemCellOptions;
  readonly #host: StemCellHost;
  readonly #sizer: StemCellSizer;
  readonly #key: string;
  /** Specialized stem cells whose replacement starts when their first call ends. */
  readonly #refillAfterCall = new WeakSet<FunctionContainer>();
  #retryTimer: NodeJS.Timeout | undefined;
  #refillScheduled = false;
  /** A refill was put off because calls were waiting: `resume()` runs it. */
  #deferred = false;
  #closed = false;

  constructor(options: StemCellOptions, host: StemCellHost) {
    this.#o = options;
    this.#host = host;
    this.#sizer = new StemCellSizer(options.min, options.max);
    this.#key = stemCellKey(options.shape.runtime);
  }

  /** True when `fn` can take one of these stem cells. */
  fits(fn: FunctionSpec): boolean {
    return fitsStemCell(fn, this.#o.shape, this.#o.hardening);
  }

  /** A ready stem cell `fn` can take now, if any. */
  pick(fn: FunctionSpec): FunctionContainer | undefined {
    if (!this.fits(fn)) return undefined;
    for (const c of this.#host.containersOf(this.#key)) if (c.state === ContainerState.IDLE) return c;
    return undefined;
  }

  /** A start that could use (or used) a stem cell happened now: the target follows the rate. */
  recordStart(): void {
    this.#sizer.recordStart(Date.now());
  }

  /**
   * `stem` specializes (for a call when `forCall`): it is replaced once that first call is over
   * (a start takes a core for a while, and the specialization and the call must not wait for it),
   * else once it is ready.
   */
  taken(stem: FunctionContainer, forCall: boolean): void {
    if (forCall) this.#refillAfterCall.add(stem);
    else void stem.ready.then(() => this.refill(), () => {});
  }

  /** A call on `container` ended: a stem cell it came from is replaced now. */
  callEnded(container: FunctionContainer): void {
    if (this.#refillAfterCall.delete(container)) this.refill();
  }

  /** A stem cell failed to start: the next try waits STEM_RETRY_MS. */
  launchFailed(): void {
    if (this.#closed || this.#retryTimer) return;
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = undefined;
      this.refill();
    }, STEM_RETRY_MS);
    this.#retryTimer.unref();
  }

  /** Starts stem cells (in the next microtask, once) until the target is met or free memory is used. */
  refill(): void {
    if (this.#refillScheduled || this.#closed || this.#retryTimer) return;
    this.#refillScheduled = true;
    queueMicrotask(() => {
      this.#refillScheduled = false;
      if (this.#closed || this.#retryTimer) return;
      // Calls waiting (for memory or for a start) come first: stem cells would compete with them.
      this.#deferred = this.#host.callsWaiting();
      if (this.#deferred) return;
      const { shape, budget } = this.#o;
      let have = 0;
      for (const c of this.#host.containersOf(this.#key)) if (c.state === ContainerState.STARTING || c.state === ContainerState.IDLE) have++;
      for (const target = this.#sizer.target(Date.now()); have < target && budget.tryReserve(shape.memoryMb); have++) {
        this.#host.launch(new FunctionContainer(stemCellPlaceholder(shape), { stemCell: true }));
      }
    });
  }

  /** Calls stopped waiting (a start finished): a refill put off for them runs now. */
  resume(): void {
    if (this.#deferred) this.refill();
  }

  /** Idle stem cells above the current target (to be removed), and that target. */
  surplus(nowMs: number): { target: number; extra: FunctionContainer[] } {
    const target = this.#sizer.target(nowMs);
    const idle = [...this.#host.containersOf(this.#key)].filter((c) => c.state === ContainerState.IDLE);
    return { target, extra: idle.slice(target) };
  }

  /** No more refills or retries. */
  close(): void {
    this.#closed = true;
    clearTimeout(this.#retryTimer);
    this.#retryTimer = undefined;
  }
}
