/**
 * Warm containers per function version (name@version). A call takes the least busy ready
 * container with a free slot (limits.concurrency); else joins a container still starting if it
 * has a free slot; else starts one. So concurrent calls to a cold function start no more
 * containers than their concurrency needs. States are one enum with a counter per state.
 */
import { performance } from 'node:perf_hooks';
import { SkiffError } from '../errors.ts';
import { raceAbort } from './abortable.ts';
import { ContainerState, FunctionContainer, type InvocationRef, type Lease, type RemovalReason } from './container.ts';
import type { DeployedFunction } from './registry.ts';

/** Starts and tears down containers (container-lifecycle.ts; a fake in unit tests). */
export interface ContainerLauncher {
  /** Creates and starts `container` until its listener is open; cleans up after itself on failure. */
  launch(container: FunctionContainer): Promise<void>;
  /** Kills and removes `container` (safe to call while it is still starting). */
  destroy(container: FunctionContainer, reason: RemovalReason): Promise<void>;
}

export type StateCounts = Record<ContainerState, number>;

function usSince(startMs: number): number {
  return Math.round((performance.now() - startMs) * 1000);
}

export class WarmPool {
  readonly #launcher: ContainerLauncher;
  readonly #byKey = new Map<string, Set<FunctionContainer>>();
  readonly #counts: StateCounts = { starting: 0, idle: 0, busy: 0, removing: 0 };
  readonly #removals = new Set<Promise<void>>();

  constructor(launcher: ContainerLauncher) {
    this.#launcher = launcher;
  }

  /** Containers per state, right now. */
  counts(): Readonly<StateCounts> {
    return { ...this.#counts };
  }

  /** Every container the pool holds (not the ones being removed). */
  all(): FunctionContainer[] {
    return [...this.#byKey.values()].flatMap((set) => [...set]);
  }

  #setState(container: FunctionContainer, state: ContainerState): void {
    this.#counts[container.state]--;
    this.#counts[state]++;
    container.state = state;
  }

  #add(container: FunctionContainer): void {
    let set = this.#byKey.get(container.key);
    if (!set) {
      set = new Set();
      this.#byKey.set(container.key, set);
    }
    set.add(container);
    this.#counts[container.state]++;
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

  #start(deployed: DeployedFunction, invocation: InvocationRef): FunctionContainer {
    const container = new FunctionContainer(deployed);
    container.invocation = invocation;
    this.#add(container);
    container.ready = this.#launcher.launch(container).then(
      () => {
        if (container.state !== ContainerState.STARTING) return;
        container.lastUsedMs = Date.now();
        this.#setState(container, container.active > 0 ? ContainerState.BUSY : ContainerState.IDLE);
      },
      (err: unknown) => {
        // The launcher cleaned up; the pool only forgets it (unless remove() owns it already).
        if (!container.removal) {
          this.#counts[container.state]--;
          container.state = ContainerState.REMOVING;
          this.#forget(container);
        }
        throw err;
      },
    );
    // Callers that gave up waiting (deadline) must not leave an unhandled rejection behind.
    container.ready.catch(() => {});
    return container;
  }

  /**
   * A container slot for one call to `deployed`, waiting for a start at most until `signal`
   * aborts (its reason is thrown). The caller must `release` the container after the call.
   */
  async acquire(deployed: DeployedFunction, invocation: InvocationRef, signal: AbortSignal): Promise<Lease> {
    if (signal.aborted) throw signal.reason;
    const warm = this.#pickReady(deployed.key);
    if (warm) {
      warm.active++;
      warm.invocation = invocation;
      if (warm.state === ContainerState.IDLE) this.#setState(warm, ContainerState.BUSY);
      return { container: warm, start: 'warm', initUs: 0 };
    }
    const waitFrom = performance.now();
    const joined = this.#pickStarting(deployed.key);
    const container = joined ?? this.#start(deployed, invocation);
    container.active++;
    try {
      await raceAbort(container.ready, signal);
    } catch (err) {
      this.release(container);
      throw err;
    }
    if (container.state === ContainerState.REMOVING) {
      this.release(container);
      throw container.signal.reason instanceof SkiffError ? container.signal.reason : new SkiffError('FUNCTION_CRASHED', 'the container went away before the call started');
    }
    container.invocation = invocation;
    return { container, start: 'cold', initUs: usSince(waitFrom) };
  }

  /** Gives a call's slot back. A retired container that becomes idle is removed. */
  release(container: FunctionContainer): void {
    container.active = Math.max(0, container.active - 1);
    container.lastUsedMs = Date.now();
    if (container.state !== ContainerState.BUSY || container.active > 0) return;
    this.#setState(container, ContainerState.IDLE);
    if (container.retired) {
      void this.remove(container, { kind: 'removed', detail: 'function version retired', error: new SkiffError('FUNCTION_NOT_FOUND', 'the function version was retired') });
    }
  }

  /**
   * Takes a container out of service at once (it is never handed out again) and removes it; its
   * calls in flight fail with `reason.error`. Idempotent.
   */
  remove(container: FunctionContainer, reason: RemovalReason): Promise<void> {
    if (container.removal) return container.removal;
    if (container.state !== ContainerState.REMOVING) this.#setState(container, ContainerState.REMOVING);
    container.abort(reason.error);
    const removal = this.#launcher.destroy(container, reason).finally(() => {
      this.#forget(container);
      this.#counts.removing--;
      this.#removals.delete(removal);
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
  }

  /** Removes containers idle for at least `idleTimeoutMs`; returns how many. */
  reapIdle(idleTimeoutMs: number, nowMs = Date.now()): number {
    let reaped = 0;
    for (const c of this.all()) {
      const idleMs = nowMs - c.lastUsedMs;
      if (c.state !== ContainerState.IDLE || idleMs < idleTimeoutMs) continue;
      reaped++;
      void this.remove(c, { kind: 'evicted', detail: `idle for ${idleMs} ms (executor.idleTimeoutMs ${idleTimeoutMs})`, error: new SkiffError('FUNCTION_CRASHED', 'the container was evicted') });
    }
    return reaped;
  }

  /** Removes every container (closing); resolves when all removals are over. */
  async removeAll(reason: RemovalReason): Promise<void> {
    for (const c of this.all()) void this.remove(c, reason);
    await Promise.allSettled([...this.#removals]);
  }
}
