/**
 * Replays a trace through a keep-alive policy and an eviction priority, the same objects the
 * executor runs (executor/keepalive.ts), on one node with a memory budget, at the trace's minute
 * granularity (as in Shahrad et al.): a function's invocations of one minute start at the minute
 * and run back to back on one container; the first finds it warm or cold-starts it.
 *
 * Reported: cold-start % (of invocations, and the 75th-percentile function), wasted memory (GB·s
 * a container stayed loaded without running a call), evictions under memory pressure.
 */
import type { EvictionPriority, KeepAlivePolicy } from '../../executor/index.ts';
import type { Trace, TraceFunction } from './trace.ts';

const MINUTE_MS = 60_000;
/** A minute's calls never run past the next minute. */
const MAX_BUSY_MS = MINUTE_MS - 1_000;

export interface SimulationOptions {
  policy: KeepAlivePolicy;
  eviction: EvictionPriority;
  /** Node memory budget, MB; Infinity: none. */
  memoryBudgetMb: number;
}

export interface SimulationResult {
  policy: string;
  eviction: string;
  memoryBudgetMb: number | 'none';
  invocations: number;
  coldStarts: number;
  coldStartPct: number;
  /** Cold-start % of the function at the 75th percentile (functions ranked by their cold-start %). */
  p75FunctionColdStartPct: number;
  /** Cold-start % per trigger (timer, http, rare; or Azure's triggers). */
  coldStartPctByTrigger: Record<string, number>;
  wastedGbS: number;
  evictions: number;
  preWarms: number;
  /** Pre-warms skipped: no room without evicting something more valuable. */
  preWarmsSkipped: number;
  /** Cold starts that ran over the budget because nothing idle could be evicted. */
  overBudgetStarts: number;
  peakMemoryMb: number;
}

interface FnState {
  fn: TraceFunction;
  loaded: boolean;
  busyUntil: number;
  /** When it became idle (loaded and not running), else -1. */
  idleFrom: number;
  /** Bumped to cancel scheduled expiries and pre-warms. */
  epoch: number;
  lastUsedMs: number;
  cold: number;
  calls: number;
}

type EventKind = 'end' | 'expire' | 'prewarm';
interface SimEvent {
  time: number;
  state: FnState;
  kind: EventKind;
  epoch: number;
  /** For 'prewarm': when its keep-alive ends. */
  until: number;
}

/** A binary min-heap of events by time (ties: insertion order). */
class EventQueue {
  readonly #items: Array<SimEvent & { seq: number }> = [];
  #seq = 0;

  get size(): number {
    return this.#items.length;
  }

  #less(a: number, b: number): boolean {
    const x = this.#items[a];
    const y = this.#items[b];
    return x.time < y.time || (x.time === y.time && x.seq < y.seq);
  }

  #swap(a: number, b: number): void {
    [this.#items[a], this.#items[b]] = [this.#items[b], this.#items[a]];
  }

  push(event: SimEvent): void {
    this.#items.push({ ...event, seq: this.#seq++ });
    let i = this.#items.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.#less(i, parent)) break;
      this.#swap(i, parent);
      i = parent;
    }
  }

  peekTime(): number {
    return this.#items.length === 0 ? Infinity : this.#items[0].time;
  }

  pop(): SimEvent {
    const top = this.#items[0];
    const last = this.#items.pop()!;
    if (this.#items.length > 0) {
      this.#items[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < this.#items.length && this.#less(l, m)) m = l;
        if (r < this.#items.length && this.#less(r, m)) m = r;
        if (m === i) break;
        this.#swap(i, m);
        i = m;
      }
    }
    return top;
  }
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
}

/** Runs one simulation. Policies keep state: give each run fresh instances. */
export function simulate(trace: Trace, options: SimulationOptions): SimulationResult {
  const { policy, eviction, memoryBudgetMb } = options;
  const states: FnState[] = trace.functions.map((fn) => ({ fn, loaded: false, busyUntil: 0, idleFrom: -1, epoch: 0, lastUsedMs: 0, cold: 0, calls: 0 }));
  const queue = new EventQueue();
  const r = { evictions: 0, preWarms: 0, preWarmsSkipped: 0, overBudgetStarts: 0 };
  let usedMb = 0;
  let peakMb = 0;
  let wastedMbMs = 0;

  const load = (s: FnState) => {
    s.loaded = true;
    usedMb += s.fn.memoryMb;
    peakMb = Math.max(peakMb, usedMb);
  };
  const stopIdle = (s: FnState, now: number) => {
    if (s.idleFrom >= 0) wastedMbMs += s.fn.memoryMb * (now - s.idleFrom);
    s.idleFrom = -1;
  };
  const unload = (s: FnState, now: number) => {
    stopIdle(s, now);
    s.loaded = false;
    s.epoch++;
    usedMb -= s.fn.memoryMb;
  };
  /** Evicts idle containers, lowest priority first, until `needMb` fits; `floor`: never evict at or above it. */
  const makeRoom = (needMb: number, now: number, floor = Infinity): boolean => {
    while (usedMb + needMb > memoryBudgetMb) {
      let victim: FnState | undefined;
      let lowest = Infinity;
      for (const s of states) {
        if (!s.loaded || s.idleFrom < 0) continue;
        const p = eviction.priority({ fn: s.fn.id, memoryMb: s.fn.memoryMb, lastUsedMs: s.lastUsedMs });
        if (p < lowest) {
          lowest = p;
          victim = s;
        }
      }
      if (!victim || lowest >= floor) return false;
      unload(victim, now);
      eviction.onEvict(lowest);
      r.evictions++;
    }
    return true;
  };

  const handle = (e: SimEvent) => {
    const s = e.state;
    if (e.epoch !== s.epoch) return;
    if (e.kind === 'end') {
      policy.onCallsDone(s.fn.id, e.time);
      const decision = policy.decide(s.fn.id);
      if (decision.preWarmMs > 0) {
        unload(s, e.time);
        queue.push({ time: e.time + decision.preWarmMs, state: s, kind: 'prewarm', epoch: s.epoch, until: e.time + decision.preWarmMs + decision.keepAliveMs });
      } else {
        s.idleFrom = e.time;
        queue.push({ time: e.time + decision.keepAliveMs, state: s, kind: 'expire', epoch: s.epoch, until: 0 });
      }
    } else if (e.kind === 'expire') {
      if (s.loaded && s.idleFrom >= 0) unload(s, e.time);
    } else if (!s.loaded) {
      const own = eviction.priority({ fn: s.fn.id, memoryMb: s.fn.memoryMb, lastUsedMs: s.lastUsedMs });
      if (!makeRoom(s.fn.memoryMb, e.time, own)) {
        r.preWarmsSkipped++;
        return;
      }
      load(s);
      r.preWarms++;
      s.idleFrom = e.time;
      queue.push({ time: e.until, state: s, kind: 'expire', epoch: s.epoch, until: 0 });
    }
  };

  let invocations = 0;
  for (let minute = 0; minute < trace.minutes; minute++) {
    const now = minute * MINUTE_MS;
    while (queue.peekTime() <= now) handle(queue.pop());
    for (const s of states) {
      const count = s.fn.counts[minute];
      if (count === 0) continue;
      invocations += count;
      s.calls += count;
      policy.onCallStart(s.fn.id, now);
      if (!s.loaded) {
        s.cold++;
        if (!makeRoom(s.fn.memoryMb, now)) r.overBudgetStarts++;
        load(s);
      }
      stopIdle(s, now);
      s.epoch++;
      s.lastUsedMs = now;
      eviction.onUse(s.fn.id, s.fn.coldStartMs, s.fn.memoryMb);
      s.busyUntil = now + Math.min(MAX_BUSY_MS, count * s.fn.durationMs);
      queue.push({ time: s.busyUntil, state: s, kind: 'end', epoch: s.epoch, until: 0 });
    }
  }
  const endMs = trace.minutes * MINUTE_MS;
  while (queue.size > 0 && queue.peekTime() <= endMs) handle(queue.pop());
  for (const s of states) if (s.loaded) stopIdle(s, endMs);

  const coldStarts = states.reduce((n, s) => n + s.cold, 0);
  const perFunction = states.filter((s) => s.calls > 0).map((s) => (100 * s.cold) / s.calls).sort((a, b) => a - b);
  const byTrigger = new Map<string, { calls: number; cold: number }>();
  for (const s of states) {
    const t = byTrigger.get(s.fn.trigger) ?? { calls: 0, cold: 0 };
    t.calls += s.calls;
    t.cold += s.cold;
    byTrigger.set(s.fn.trigger, t);
  }
  return {
    policy: policy.name,
    eviction: eviction.name,
    memoryBudgetMb: Number.isFinite(memoryBudgetMb) ? memoryBudgetMb : 'none',
    invocations,
    coldStarts,
    coldStartPct: invocations === 0 ? 0 : Number(((100 * coldStarts) / invocations).toFixed(3)),
    p75FunctionColdStartPct: Number(percentile(perFunction, 75).toFixed(2)),
    coldStartPctByTrigger: Object.fromEntries([...byTrigger].map(([trigger, t]) => [trigger, t.calls === 0 ? 0 : Number(((100 * t.cold) / t.calls).toFixed(3))])),
    wastedGbS: Math.round(wastedMbMs / 1024 / 1000),
    ...r,
    peakMemoryMb: peakMb,
  };
}
