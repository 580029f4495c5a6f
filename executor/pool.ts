/**
 * Warm containers per function version (name@version) and stem cells per runtime, within the
 * node's memory budget. Calls at once are bounded node-wide (maxCallsInFlight, the credit the
 * executor advertises; call-queue.ts), so a burst starts only the containers that bound needs.
 * A call takes the least busy ready container of its function with a free
 * slot (limits.concurrency), else joins one still starting, else specializes a stem cell, else
 * cold-starts one (evicting idle containers by the keep-alive policy's priority to make room);
 * beyond the function's container cap or the memory budget it waits in the function's bounded
 * queue. The keep-alive policy decides how long idle containers stay (and whether they are
 * unloaded at once and pre-warmed later). States are one enum with a counter per state. How many
 * stem cells to keep and when to refill them is stemcells.ts's call.
 */
import { performance } from 'node:perf_hooks';
import { SkiffError } from '../errors.ts';
import { raceAbort, type AbortHook } from './abortable.ts';
import { CallAdmission, CallQueues } from './call-queue.ts';
import type { StemCellShape } from './container-spec.ts';
import { ContainerState, FunctionContainer, type InvocationRef, type Lease, type RemovalReason } from './container.ts';
import type { HardeningSettings } from './hardening.ts';
import { FunctionActivity } from './function-activity.ts';
import type { EvictionPriority, KeepAlivePolicy } from './keepalive.ts';
import type { MemoryBudget } from './memory-budget.ts';
import type { DeployedFunction } from './registry.ts';
import { StemCells } from './stemcells.ts';

/** Starts and tears down containers (container-lifecycle.ts; a fake in unit tests). */
export interface ContainerLauncher {
  /** Creates and starts `container` (a function container or a stem cell) until it is ready; cleans up after itself on failure. */
  launch(container: FunctionContainer): Promise<void>;
  /** Turns a ready stem cell into a container of `deployed`; removes it on failure. */
  specialize(container: FunctionContainer, deployed: DeployedFunction): Promise<void>;
  /** Kills and removes `container` (safe to call while it is still starting). */
  destroy(container: FunctionContainer, reason: RemovalReason): Promise<void>;
}

export type StateCounts = Record<ContainerState, number>;

export interface PoolOptions {
  launcher: ContainerLauncher;
  budget: MemoryBudget;
  policy: KeepAlivePolicy;
  eviction: EvictionPriority;
  maxContainersPerFunction: number;
  maxQueuedPerFunction: number;
  /**
   * Calls holding or waiting for a container slot at once, node-wide (executor.maxInFlight, the
   * credit the executor advertises); calls past it wait, first in first out, for one to end.
   */
  maxCallsInFlight: number;
  /** Stem cells kept per runtime at least / at most; min 0 and max 0: none. */
  stemCells: { min: number; max: number; shape: StemCellShape };
  hardening: HardeningSettings;
  /** Something the gateway's view depends on changed (idle slots, stem cells, memory). */
  onChange?(): void;
}

/** A slot taken in a container for one call; `start` says how the container came to be. */
interface Claim {
  container: FunctionContainer;
  start: Lease['start'];
  claimedAt: number;
}

function usSince(fromMs: number): number {
  return Math.max(0, Math.round((performance.now() - fromMs) * 1000));
}

function evictionError(detail: string): SkiffError {
  return new SkiffError('FUNCTION_CRASHED', `the container was evicted (${detail})`);
}

export class WarmPool {
  readonly #o: PoolOptions;
  readonly #byKey = new Map<string, Set<FunctionContainer>>();
  readonly #counts: StateCounts = { starting: 0, idle: 0, busy: 0, removing: 0 };
  readonly #removals = new Set<Promise<void>>();
  readonly #queues: CallQueues<Claim>;
  readonly #admission: CallAdmission;
  readonly #stemCells: StemCells;
  readonly #activity: FunctionActivity;
  #closed = false;

  constructor(options: PoolOptions) {
    this.#o = options;
    this.#queues = new CallQueues<Claim>(options.maxQueuedPerFunction);
    this.#admission = new CallAdmission(options.maxCallsInFlight);
    this.#stemCells = new StemCells(
      { ...options.stemCells, hardening: options.hardening, budget: options.budget },
      {
        containersOf: (key) => this.#byKey.get(key) ?? [],
        callsWaiting: () => this.#queues.keys().length > 0 || this.#startsAwaited(),
        launch: (stem) => this.#launch(stem),
      },
    );
    this.#activity = new FunctionActivity(options.policy, options.eviction);
  }

  /** Containers per state, right now (stem cells included). */
  counts(): Readonly<StateCounts> {
    return { ...this.#counts };
  }

  /** Every container the pool holds (not the ones being removed). */
  all(): FunctionContainer[] {
    return [...this.#byKey.values()].flatMap((set) => [...set]);
  }

  /** Idle call slots per function name, ready stem cells per runtime, free memory. */
  capacity(): { warm: Record<string, number>; stemCells: Record<string, number>; memoryFreeMb: number } {
    const warm: Record<string, number> = {};
    const stemCells: Record<string, number> = {};
    for (const c of this.all()) {
      if (c.stemCell) {
        if (c.state === ContainerState.IDLE) stemCells[c.deployed.spec.runtime] = (stemCells[c.deployed.spec.runtime] ?? 0) + 1;
      } else if ((c.state === ContainerState.IDLE || c.state === ContainerState.BUSY) && !c.retired && c.active < c.concurrency) {
        warm[c.deployed.spec.name] = (warm[c.deployed.spec.name] ?? 0) + c.concurrency - c.active;
      }
    }
    return { warm, stemCells, memoryFreeMb: this.#o.budget.freeMb };
  }

  /** Starts the stem cells. */
  start(): void {
    this.#stemCells.refill();
  }

  #changed(): void {
    this.#o.onChange?.();
  }

  #setState(container: FunctionContainer, state: ContainerState): void {
    this.#counts[container.state]--;
    this.#counts[state]++;
    container.state = state;
    this.#changed();
  }

  #add(container: FunctionContainer): void {
    let set = this.#byKey.get(container.key);
    if (!set) {
      set = new Set();
      this.#byKey.set(container.key, set);
    }
    set.add(container);
  }

  #forget(container: FunctionContainer): void {
    const set = this.#byKey.get(container.key);
    if (!set?.delete(container)) return;
    if (set.size === 0) this.#byKey.delete(container.key);
  }

  /** The least busy ready container of `key` with a free slot (ties: most recently used). */
  #pickReady(key: string): FunctionContainer | undefined {
    let best: FunctionContainer | undefined;
    for (const c of this.#byKey.get(key) ?? []) {
      if ((c.state !== ContainerState.IDLE && c.state !== ContainerState.BUSY) || c.retired || c.active >= c.concurrency) continue;
      if (!best || c.active < best.active || (c.active === best.active && c.lastUsedMs > best.lastUsedMs)) best = c;
    }
    return best;
  }

  #pickStarting(key: string): FunctionContainer | undefined {
    for (const c of this.#byKey.get(key) ?? []) {
      if (c.state === ContainerState.STARTING && !c.retired && c.active < c.concurrency) return c;
    }
    return undefined;
  }

  /** True while some call waits for a function container to start or specialize. */
  #startsAwaited(): boolean {
    for (const set of this.#byKey.values()) {
      for (const c of set) if (c.state === ContainerState.STARTING && !c.stemCell && c.active > 0) return true;
    }
    return false;
  }

  /** Containers of `key` that count against its cap (not the ones being removed). */
  #containerCount(key: string): number {
    return this.#byKey.get(key)?.size ?? 0;
  }

  /** Tracks a container's start: ready → idle/busy; failure → forgotten (the launcher cleaned up). */
  #track(container: FunctionContainer, start: Promise<void>): void {
    container.ready = start.then(
      () => {
        if (container.state !== ContainerState.STARTING) return;
        container.lastUsedMs = Date.now();
        this.#setState(container, container.active > 0 ? ContainerState.BUSY : ContainerState.IDLE);
        if (container.stemCell) {
          this.#stemCells.refill();
        } else {
          this.#serveQueue(container.key);
          // Stem cell refills wait while calls wait for starts (they would compete for the cores).
          this.#stemCells.resume();
        }
      },
      (err: unknown) => {
        // The launcher cleaned up; the pool forgets it (unless remove() owns it already).
        if (!container.removal) {
          this.#counts[container.state]--;
          container.state = ContainerState.REMOVING;
          this.#forget(container);
          this.#o.budget.release(container.memoryMb);
          this.#changed();
          this.#afterCapacityFreed();
        }
        if (container.stemCell) this.#stemCells.launchFailed();
        throw err;
      },
    );
    // Callers that gave up waiting (deadline) must not leave an unhandled rejection behind.
    container.ready.catch(() => {});
  }

  /** Files a new container (function or stem cell) as starting and launches it. */
  #launch(container: FunctionContainer): void {
    this.#add(container);
    this.#counts.starting++;
    this.#track(container, this.#o.launcher.launch(container));
  }

  #startCold(deployed: DeployedFunction, invocation: InvocationRef | undefined): FunctionContainer {
    const container = new FunctionContainer(deployed);
    container.invocation = invocation;
    this.#launch(container);
    return container;
  }

  #specialize(stem: FunctionContainer, deployed: DeployedFunction, invocation: InvocationRef | undefined): FunctionContainer {
    this.#forget(stem);
    stem.deployed = deployed;
    stem.stemCell = false;
    stem.startKind = 'stemcell';
    stem.invocation = invocation;
    this.#add(stem);
    this.#setState(stem, ContainerState.STARTING);
    this.#track(stem, this.#o.launcher.specialize(stem, deployed));
    this.#stemCells.taken(stem, invocation !== undefined);
    return stem;
  }

  /**
   * Reserves `mb` in the budget, evicting idle function containers (lowest keep-alive priority
   * first), then idle stem cells, if that makes it fit. False (nothing evicted) if it cannot.
   */
  #reserve(mb: number): boolean {
    const { budget } = this.#o;
    if (budget.tryReserve(mb)) return true;
    const idle = this.all().filter((c) => c.state === ContainerState.IDLE && c.active === 0);
    const reclaimable = idle.reduce((sum, c) => sum + c.memoryMb, 0);
    if (budget.freeMb + reclaimable < mb) return false;
    const ranked = idle
      .map((c) => ({ c, priority: c.stemCell ? Infinity : this.#activity.priority(c.deployed.spec.name, c.memoryMb, c.lastUsedMs) }))
      .sort((a, b) => a.priority - b.priority || a.c.lastUsedMs - b.c.lastUsedMs);
    for (const { c, priority } of ranked) {
      if (budget.fits(mb)) break;
      if (Number.isFinite(priority)) this.#activity.evicted(priority);
      void this.remove(c, { kind: 'evicted', detail: `memory pressure: ${mb} MB needed, ${budget.freeMb} MB free of executor.memoryBudgetMb ${budget.totalMb}`, error: evictionError('memory pressure') });
    }
    return budget.tryReserve(mb);
  }

  /** A slot for one call right now, or undefined when it must wait. */
  #claim(deployed: DeployedFunction, invocation: InvocationRef): Claim | undefined {
    const claimedAt = performance.now();
    const warm = this.#pickReady(deployed.key);
    if (warm) {
      warm.active++;
      warm.invocation = invocation;
      if (warm.state === ContainerState.IDLE) this.#setState(warm, ContainerState.BUSY);
      return { container: warm, start: 'warm', claimedAt };
    }
    const joined = this.#pickStarting(deployed.key);
    if (joined) {
      joined.active++;
      return { container: joined, start: joined.startKind, claimedAt };
    }
    if (this.#closed || this.#containerCount(deployed.key) >= this.#o.maxContainersPerFunction) return undefined;
    const stem = this.#stemCells.pick(deployed.spec);
    if (stem) {
      this.#stemCells.recordStart();
      const container = this.#specialize(stem, deployed, invocation);
      container.active++;
      return { container, start: 'stemcell', claimedAt };
    }
    if (!this.#reserve(deployed.spec.limits.memoryMB)) return undefined;
    if (this.#stemCells.fits(deployed.spec)) {
      this.#stemCells.recordStart();
      this.#stemCells.refill();
    }
    const container = this.#startCold(deployed, invocation);
    container.active++;
    return { container, start: 'cold', claimedAt };
  }

  /** A call of `name` ended: when it was the last, the policy may unload its containers until a pre-warm. */
  #callEnded(name: string): void {
    const decision = this.#activity.callEnded(name);
    if (!decision || decision.preWarmMs <= 0 || this.#closed) return;
    const { preWarmMs, keepAliveMs } = decision;
    for (const c of this.all()) {
      if (c.stemCell || c.deployed.spec.name !== name || c.state !== ContainerState.IDLE) continue;
      void this.remove(c, { kind: 'evicted', detail: `unloaded until its pre-warm window (${preWarmMs} ms; then kept ${keepAliveMs} ms)`, error: evictionError('keep-alive') });
    }
    this.#activity.schedulePreWarm(name, preWarmMs, (deployed) => this.#preWarm(deployed));
  }

  /** Loads one idle container of `deployed` ahead of its expected next call (keep-alive pre-warm). */
  #preWarm(deployed: DeployedFunction): void {
    if (this.#closed || this.#containerCount(deployed.key) > 0) return;
    const stem = this.#stemCells.pick(deployed.spec);
    if (stem) this.#specialize(stem, deployed, undefined);
    else if (this.#o.budget.tryReserve(deployed.spec.limits.memoryMB)) this.#startCold(deployed, undefined);
  }

  /**
   * A container slot for one call to `deployed`, waiting (in the function's queue, then for the
   * start) at most until `signal` aborts (its reason is thrown). Throws FUNCTION_QUEUE_FULL when
   * the function's queue is full. The caller must `release` the container after the call.
   */
  async acquire(deployed: DeployedFunction, invocation: InvocationRef, signal: AbortHook): Promise<Lease> {
    if (signal.aborted) throw signal.reason;
    if (!this.#admission.tryEnter()) await this.#admission.wait(signal);
    let claim: Claim | undefined;
    try {
      claim = this.#claim(deployed, invocation);
      if (!claim) {
        this.#queuedDeployed.set(deployed.key, deployed);
        claim = await this.#queues.wait(deployed.key, signal);
      }
    } catch (err) {
      this.#admission.leave();
      throw err;
    }
    const { container, start } = claim;
    this.#activity.callStarted(deployed);
    if (start !== 'warm') {
      try {
        await raceAbort(container.ready, signal);
      } catch (err) {
        this.release(container);
        throw err;
      }
    }
    if (container.state === ContainerState.REMOVING) {
      this.release(container);
      throw container.signal.reason instanceof SkiffError ? container.signal.reason : new SkiffError('FUNCTION_CRASHED', 'the container went away before the call started');
    }
    container.invocation = invocation;
    const initUs = start === 'warm' ? 0 : usSince(claim.claimedAt);
    this.#activity.used(deployed, initUs);
    return { container, start, initUs, createUs: start === 'cold' ? container.createUs : 0 };
  }

  /** Gives a call's slot back. A retired container that becomes idle is removed. */
  release(container: FunctionContainer): void {
    this.#admission.leave();
    container.active = Math.max(0, container.active - 1);
    container.lastUsedMs = Date.now();
    this.#stemCells.callEnded(container);
    const becameIdle = container.state === ContainerState.BUSY && container.active === 0;
    if (becameIdle) {
      this.#setState(container, ContainerState.IDLE);
      if (container.retired) {
        void this.remove(container, { kind: 'removed', detail: 'function version retired', error: new SkiffError('FUNCTION_NOT_FOUND', 'the function version was retired') });
      }
    }
    // Waiting calls first: a free slot goes to them before the policy may unload the container.
    this.#serveQueue(container.key);
    // An idle container can also be evicted for calls of other functions waiting for memory.
    if (becameIdle) this.#afterCapacityFreed();
    this.#callEnded(container.deployed.spec.name);
  }

  /** Hands free slots (or new containers) to the calls waiting for `key`. */
  #serveQueue(key: string): void {
    if (this.#queues.length(key) === 0) return;
    this.#queues.serve(key, () => {
      // The deployed version is the one of the containers under `key`, or the last seen.
      const deployed = this.#deployedOf(key);
      return deployed ? this.#claim(deployed, { id: '', route: { send: () => false } }) : undefined;
    });
  }

  #deployedOf(key: string): DeployedFunction | undefined {
    return this.#queuedDeployed.get(key);
  }

  /** Deployed versions of calls in the queues (a queued call's function may have no container yet). */
  readonly #queuedDeployed = new Map<string, DeployedFunction>();

  /** Memory or a container slot was freed: serve every queue, then refill stem cells. */
  #afterCapacityFreed(): void {
    for (const key of this.#queues.keys()) this.#serveQueue(key);
    this.#stemCells.refill();
  }

  /**
   * Takes a container out of service at once (it is never handed out again) and removes it; its
   * calls in flight fail with `reason.error`. Its memory goes back to the budget. Idempotent.
   */
  remove(container: FunctionContainer, reason: RemovalReason): Promise<void> {
    if (container.removal) return container.removal;
    if (container.state !== ContainerState.REMOVING) this.#setState(container, ContainerState.REMOVING);
    container.abort(reason.error);
    this.#o.budget.release(container.memoryMb);
    const removal = this.#o.launcher.destroy(container, reason).finally(() => {
      this.#forget(container);
      this.#counts.removing--;
      this.#removals.delete(removal);
      this.#changed();
      this.#afterCapacityFreed();
    });
    container.removal = removal;
    this.#removals.add(removal);
    return removal;
  }

  /** Retires every container of `key`: idle ones go now, busy ones when their calls end. */
  retire(key: string, detail: string): void {
    for (const c of [...(this.#byKey.get(key) ?? [])]) {
      c.retired = true;
      if (c.state === ContainerState.IDLE) {
        void this.remove(c, { kind: 'removed', detail, error: new SkiffError('FUNCTION_NOT_FOUND', detail) });
      }
    }
    this.#queues.failAll(new SkiffError('FUNCTION_NOT_FOUND', detail), key);
    this.#queuedDeployed.delete(key);
  }

  /**
   * Removes idle function containers past their keep-alive window (the policy's, per function)
   * and stem cells above the current target; returns how many.
   */
  reapIdle(nowMs = Date.now()): number {
    const stems = this.#stemCells.surplus(nowMs);
    for (const c of stems.extra) void this.remove(c, { kind: 'evicted', detail: `stem cells above the target (${stems.target})`, error: evictionError('stem cells') });
    let reaped = stems.extra.length;
    for (const c of this.all()) {
      if (c.state !== ContainerState.IDLE || c.stemCell) continue;
      const idleMs = nowMs - c.lastUsedMs;
      const decision = this.#activity.decide(c.deployed.spec.name);
      if (idleMs < decision.keepAliveMs) continue;
      reaped++;
      void this.remove(c, { kind: 'evicted', detail: `idle for ${idleMs} ms (keep-alive ${decision.keepAliveMs} ms, ${this.#activity.policyName}: ${decision.basis})`, error: evictionError('keep-alive') });
    }
    return reaped;
  }

  /** Stops stem cells and pre-warms; calls still queued fail with `error`. */
  close(error: SkiffError): void {
    this.#closed = true;
    this.#stemCells.close();
    this.#activity.close();
    this.#queues.failAll(error);
    this.#admission.failAll(error);
  }

  /** Removes every container (closing); resolves when all removals are over. */
  async removeAll(reason: RemovalReason): Promise<void> {
    for (const c of this.all()) void this.remove(c, reason);
    await Promise.allSettled([...this.#removals]);
  }
}
