/**
 * The invocation trace the keep-alive simulator replays: per-minute invocation counts per
 * function, the shape of the Azure Functions 2019 public trace (Shahrad et al., ATC'20), plus
 * what each function costs (memory, run time, cold start).
 */

/** One function of a trace. */
export interface TraceFunction {
  id: string;
  /** 'timer', 'http', 'rare' for generated traces; the Azure trigger for loaded ones. */
  trigger: string;
  memoryMb: number;
  /** Mean run time of one invocation. */
  durationMs: number;
  /** What a cold start of it costs (GDSF's cost). */
  coldStartMs: number;
  /** Invocations per minute, minute 0 first. */
  counts: Uint32Array;
}

export interface Trace {
  /** Where it came from: generator parameters or the files loaded. */
  source: Record<string, unknown>;
  minutes: number;
  functions: TraceFunction[];
}

/** Total invocations of a trace. */
export function totalInvocations(trace: Trace): number {
  let n = 0;
  for (const f of trace.functions) for (const c of f.counts) n += c;
  return n;
}
