/**
 * What the keep-alive policy and the eviction priority learn from a node's calls, per function
 * name: when a function goes from idle to busy and back (its idle times), what its starts cost,
 * and the pre-warm timers the policy asks for. The pool reports calls here and acts on the
 * decisions (unload, pre-warm, evict).
 */
import type { EvictionPriority, KeepAliveDecision, KeepAlivePolicy } from './keepalive.ts';
import type { DeployedFunction } from './registry.ts';

/** setTimeout's ceiling. */
const MAX_TIMER_MS = 2_147_483_647;

export class FunctionActivity {
  readonly #policy: KeepAlivePolicy;
  readonly #eviction: EvictionPriority;
  /** Calls running (or waiting for a start) per function name. */
  readonly #calls = new Map<string, number>();
  /** The latest deployed version seen per function name, for pre-warms. */
  readonly #lastDeployed = new Map<string, DeployedFunction>();
  readonly #preWarmTimers = new Map<string, NodeJS.Timeout>();
  /** What the last start of each function took, ms: GDSF's cost. */
  readonly #startCostMs = new Map<string, number>();

  constructor(policy: KeepAlivePolicy, eviction: EvictionPriority) {
    this.#policy = policy;
    this.#eviction = eviction;
  }

  get policyName(): string {
    return this.#policy.name;
  }

  /** A call of `deployed` got a container slot (any pending pre-warm of it is moot). */
  callStarted(deployed: DeployedFunction): void {
    const name = deployed.spec.name;
    this.#lastDeployed.set(name, deployed);
    this.#cancelPreWarm(name);
    const calls = this.#calls.get(name) ?? 0;
    if (calls === 0) this.#policy.onCallStart(name, Date.now());
    this.#calls.set(name, calls + 1);
  }

  /** The call's container is in use: `startUs` is what starting it took (0 when warm). */
  used(deployed: DeployedFunction, startUs: number): void {
    const name = deployed.spec.name;
    if (startUs > 0) this.#startCostMs.set(name, startUs / 1000);
    this.#eviction.onUse(name, this.#startCostMs.get(name) ?? 0, deployed.spec.limits.memoryMB);
  }

  /** A call of `name` ended; when it was the last one running, the policy's decision for it. */
  callEnded(name: string): KeepAliveDecision | undefined {
    const calls = (this.#calls.get(name) ?? 1) - 1;
    if (calls > 0) {
      this.#calls.set(name, calls);
      return undefined;
    }
    this.#calls.delete(name);
    this.#policy.onCallsDone(name, Date.now());
    return this.#policy.decide(name);
  }

  /** The keep-alive window of `name` now. */
  decide(name: string): KeepAliveDecision {
    return this.#policy.decide(name);
  }

  /** The eviction priority of one idle container of `name`. */
  priority(name: string, memoryMb: number, lastUsedMs: number): number {
    return this.#eviction.priority({ fn: name, memoryMb, lastUsedMs });
  }

  evicted(priority: number): void {
    this.#eviction.onEvict(priority);
  }

  /** Runs `preWarm(deployed)` in `delayMs` unless a call of `name` comes first. */
  schedulePreWarm(name: string, delayMs: number, preWarm: (deployed: DeployedFunction) => void): void {
    this.#cancelPreWarm(name);
    const timer = setTimeout(() => {
      this.#preWarmTimers.delete(name);
      const deployed = this.#lastDeployed.get(name);
      if (deployed) preWarm(deployed);
    }, Math.min(delayMs, MAX_TIMER_MS));
    timer.unref();
    this.#preWarmTimers.set(name, timer);
  }

  #cancelPreWarm(name: string): void {
    const timer = this.#preWarmTimers.get(name);
    if (!timer) return;
    clearTimeout(timer);
    this.#preWarmTimers.delete(name);
  }

  /** Stops every pending pre-warm. */
  close(): void {
    for (const timer of this.#preWarmTimers.values()) clearTimeout(timer);
    this.#preWarmTimers.clear();
  }
}
