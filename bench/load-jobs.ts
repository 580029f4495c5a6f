/**
 * What the load generator process is asked to do and what it answers: typed messages that cross
 * the IPC channel between a benchmark and bench/load-worker.ts.
 */
import type { Distribution } from './stats.ts';

/** One HTTP target. */
export interface LoadTarget {
  url: string;
  /** For a unix socket target: the load generator connects here and `url` only supplies the path. */
  socketPath?: string;
  method: 'GET' | 'POST' | 'PUT';
  headers: Record<string, string>;
  body: Buffer;
}

/** Latency percentiles in microseconds, from a µs-resolution HDR histogram. */
export interface LatencyUs {
  p50: number;
  p90: number;
  p99: number;
  p999: number;
  max: number;
  mean: number;
}

/** What the load generator itself cost: CPU time over wall time, so a report can say so. */
export interface GeneratorCost {
  /** CPU time (user + system) of the load generator process during the job, in ms. */
  cpuMs: number;
  wallMs: number;
  /** cpuMs / wallMs × 100: 100 means one core fully busy generating load. */
  cpuPercent: number;
}

/** Closed-loop load for a fixed time (autocannon). */
export interface DurationJob {
  kind: 'duration';
  target: LoadTarget;
  connections: number;
  durationS: number;
  /** When set, each request goes to the next of these paths in turn (shared across connections). */
  roundRobinPaths?: string[];
  /** Also answer with the latency distribution (to pool runs: bench/stats.ts pooledPercentile). */
  keepDistribution?: boolean;
}

/** `count` requests sent at once on `count` connections. */
export interface BurstJob {
  kind: 'burst';
  target: LoadTarget;
  count: number;
  timeoutMs: number;
}

/** Open-loop: each call is sent at its time, whatever the earlier ones are doing. */
export interface ScheduleJob {
  kind: 'schedule';
  /** Base URL of the gateway; each call's `path` is appended. */
  baseUrl: string;
  method: 'POST';
  headers: Record<string, string>;
  body: Buffer;
  calls: Array<{ atMs: number; path: string }>;
  timeoutMs: number;
  /** Also answer with the latency distribution (to pool runs: bench/stats.ts pooledPercentile). */
  keepDistribution?: boolean;
}

export type LoadJob = DurationJob | BurstJob | ScheduleJob;

export interface DurationResult {
  kind: 'duration';
  requestsPerSec: number;
  latencyUs: LatencyUs;
  requests: number;
  errors: number;
  non2xx: number;
  /** The first few distinct error messages (connection errors, timeouts), to say what failed. */
  errorMessages: string[];
  durationS: number;
  generator: GeneratorCost;
  /** Latencies of the 2xx responses in µs, when the job asked (keepDistribution). */
  latencyDistribution?: Distribution;
}

export interface BurstResult {
  kind: 'burst';
  /** From the moment the first request is written. */
  firstResponseMs: number;
  lastResponseMs: number;
  latencyUs: LatencyUs;
  /** HTTP status → count; network errors are under `errors`. */
  statuses: Record<string, number>;
  errors: number;
  errorMessages: string[];
  generator: GeneratorCost;
}

export interface ScheduleResult {
  kind: 'schedule';
  latencyUs: LatencyUs;
  statuses: Record<string, number>;
  errors: number;
  /** How late, at worst, a call left compared with its scheduled time (ms). */
  maxSendLagMs: number;
  wallMs: number;
  generator: GeneratorCost;
  /** Latencies of the 2xx responses in µs, when the job asked (keepDistribution). */
  latencyDistribution?: Distribution;
}

export type LoadResult = DurationResult | BurstResult | ScheduleResult;

/** The worker's one answer per job. */
export type WorkerReply = { ok: true; result: LoadResult } | { ok: false; error: string };
