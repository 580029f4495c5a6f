/**
 * What a Skiff process's own runtime costs the calls it serves: garbage-collection pauses and
 * event-loop delay. A GC pause stops the event loop, and every call in flight waits for it, so at
 * low load these pauses are most of a warm call's p99. The gateway reports its own in
 * GET /system/stats, each executor its own in its heartbeats. Counters are totals since the
 * monitor started: a reader diffs two snapshots for a window. No imports of Skiff's components,
 * so the bus can carry the type.
 */
import { constants, monitorEventLoopDelay, PerformanceObserver, type IntervalHistogram } from 'node:perf_hooks';

/** Pauses of one kind of collection. */
export interface PauseStats {
  count: number;
  /** Summed pause time. */
  totalMs: number;
  /** The longest pause. */
  maxMs: number;
}

export interface RuntimeStats {
  /** When the monitor started (epoch ms): the counters below are totals since then. */
  sinceMs: number;
  /** How late the event loop ran a timer due every resolution ms (EVENT_LOOP_RESOLUTION_MS by default), over the whole time (ms): 0 when on time. */
  eventLoopDelayMs: { p50: number; p99: number; max: number };
  /** Pauses by collection: minor (young generation), major (mark-compact), incremental marking steps, weak callbacks. */
  gc: { minor: PauseStats; major: PauseStats; incremental: PauseStats; weakCallbacks: PauseStats };
  heapUsedMb: number;
  rssMb: number;
}

type GcKind = keyof RuntimeStats['gc'];

const GC_KIND_OF: ReadonlyMap<number, GcKind> = new Map([
  [constants.NODE_PERFORMANCE_GC_MINOR, 'minor'],
  [constants.NODE_PERFORMANCE_GC_MAJOR, 'major'],
  [constants.NODE_PERFORMANCE_GC_INCREMENTAL, 'incremental'],
  [constants.NODE_PERFORMANCE_GC_WEAKCB, 'weakCallbacks'],
]);

/** The event-loop delay sampling period (ms): fine enough to see a few-ms pause, cheap (one timer). */
export const EVENT_LOOP_RESOLUTION_MS = 10;
const MB = 1024 * 1024;
const NS_PER_MS = 1e6;
/** Stats keep 3 decimals of a ms (µs). */
const round = (ms: number) => Math.round(ms * 1000) / 1000;

/** Watches this process's main thread from construction until close(). */
export class RuntimeMonitor {
  readonly #sinceMs = Date.now();
  readonly #resolutionMs: number;
  readonly #delay: IntervalHistogram;
  readonly #observer: PerformanceObserver;
  readonly #gc: RuntimeStats['gc'] = {
    minor: { count: 0, totalMs: 0, maxMs: 0 },
    major: { count: 0, totalMs: 0, maxMs: 0 },
    incremental: { count: 0, totalMs: 0, maxMs: 0 },
    weakCallbacks: { count: 0, totalMs: 0, maxMs: 0 },
  };

  constructor(resolutionMs = EVENT_LOOP_RESOLUTION_MS) {
    this.#resolutionMs = resolutionMs;
    this.#delay = monitorEventLoopDelay({ resolution: resolutionMs });
    this.#delay.enable();
    this.#observer = new PerformanceObserver((list) => {
      for (const entry of list.getEntries()) this.#recordGc((entry as { detail?: unknown }).detail, entry.duration);
    });
    this.#observer.observe({ entryTypes: ['gc'] });
  }

  #recordGc(detail: unknown, durationMs: number): void {
    const kind = GC_KIND_OF.get((detail as { kind?: number } | null)?.kind ?? -1);
    if (kind === undefined) return;
    const pauses = this.#gc[kind];
    pauses.count++;
    pauses.totalMs += durationMs;
    if (durationMs > pauses.maxMs) pauses.maxMs = durationMs;
  }

  snapshot(): RuntimeStats {
    const memory = process.memoryUsage();
    const delay = this.#delay;
    // The histogram is empty until its first sample (percentile() then reads 0, max a huge value).
    const sampled = delay.count > 0;
    const pauses = (p: PauseStats): PauseStats => ({ count: p.count, totalMs: round(p.totalMs), maxMs: round(p.maxMs) });
    // The histogram holds the time between the timer's runs: lateness is what exceeds the period.
    const late = (ns: number) => (sampled ? round(Math.max(0, ns / NS_PER_MS - this.#resolutionMs)) : 0);
    return {
      sinceMs: this.#sinceMs,
      eventLoopDelayMs: {
        p50: late(delay.percentile(50)),
        p99: late(delay.percentile(99)),
        max: late(delay.max),
      },
      gc: { minor: pauses(this.#gc.minor), major: pauses(this.#gc.major), incremental: pauses(this.#gc.incremental), weakCallbacks: pauses(this.#gc.weakCallbacks) },
      heapUsedMb: round(memory.heapUsed / MB),
      rssMb: round(memory.rss / MB),
    };
  }

  close(): void {
    this.#delay.disable();
    this.#observer.disconnect();
  }
}

/** GC pause time of a window: `after` minus `before` (two snapshots of one monitor), per kind. */
export function gcPausesBetween(before: RuntimeStats, after: RuntimeStats): Record<GcKind, { count: number; totalMs: number }> {
  const kinds: GcKind[] = ['minor', 'major', 'incremental', 'weakCallbacks'];
  return Object.fromEntries(
    kinds.map((kind) => [kind, { count: after.gc[kind].count - before.gc[kind].count, totalMs: round(after.gc[kind].totalMs - before.gc[kind].totalMs) }]),
  ) as Record<GcKind, { count: number; totalMs: number }>;
}
