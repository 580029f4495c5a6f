/**
 * Which async outcomes are retried, and when: each attempt's outcome is classified, then the
 * policy (per function, from `async.functions`, else `async.*`) says retry later, finish, or
 * dead-letter. Backoff is exponential with "equal jitter": half fixed, half random, so retries
 * of calls that failed together spread out instead of hitting a recovering function at once.
 */
import type { SkiffConfig } from '../../config.ts';
import type { ErrorCode } from '../../errors.ts';

/** What one attempt came to, as far as retrying is concerned. */
export type OutcomeClass =
  /** The function answered 1xx–3xx. */
  | 'success'
  /** The function answered 4xx: the request is at fault; retried only when the policy says '4xx'. */
  | '4xx'
  /** The function answered 5xx, threw (FUNCTION_ERROR) or answered too much. */
  | '5xx'
  | 'timeout'
  /** The container died, never started or spoke garbage. */
  | 'crash'
  /** The executor was lost mid-call: redelivered, not counted against maxAttempts. */
  | 'lost'
  /** Nothing ran (no executor, no capacity): dispatched again later, no attempt used. */
  | 'not-started'
  /** Skiff refused the call (function gone, bad request): final. */
  | 'rejected';

export type RetryOutcome = '5xx' | '4xx' | 'timeout' | 'crash';

export interface RetryPolicy {
  maxAttempts: number;
  retryOn: ReadonlySet<RetryOutcome>;
  backoffBaseMs: number;
  backoffMaxMs: number;
  maxRedeliveries: number;
}

const CRASH_CODES: ReadonlySet<string> = new Set<ErrorCode>(['FUNCTION_CRASHED', 'FUNCTION_BAD_RESPONSE', 'FUNCTION_START_FAILED']);
const NOT_STARTED_CODES: ReadonlySet<string> = new Set<ErrorCode>(['NO_EXECUTOR', 'QUEUE_FULL', 'CONTAINER_RUNTIME_ERROR']);
const FUNCTION_5XX_CODES: ReadonlySet<string> = new Set<ErrorCode>(['FUNCTION_ERROR', 'RESPONSE_TOO_LARGE']);

/** Classifies an attempt by its Skiff error code ('' when the function answered) and HTTP status. */
export function classifyOutcome(errorCode: ErrorCode | '', httpStatus: number): OutcomeClass {
  if (errorCode === '') {
    if (httpStatus >= 500) return '5xx';
    if (httpStatus >= 400) return '4xx';
    return 'success';
  }
  if (errorCode === 'FUNCTION_TIMEOUT') return 'timeout';
  if (CRASH_CODES.has(errorCode)) return 'crash';
  if (errorCode === 'EXECUTOR_LOST') return 'lost';
  if (NOT_STARTED_CODES.has(errorCode)) return 'not-started';
  if (FUNCTION_5XX_CODES.has(errorCode)) return '5xx';
  return 'rejected';
}

/** The policy for one function: its override in `async.functions`, else the defaults. */
export function policyFor(config: SkiffConfig, functionName: string): RetryPolicy {
  const base = config.async;
  const override = base.functions[functionName];
  return {
    maxAttempts: override?.maxAttempts ?? base.maxAttempts,
    retryOn: new Set(override?.retryOn ?? base.retryOn),
    backoffBaseMs: base.backoffBaseMs,
    backoffMaxMs: base.backoffMaxMs,
    maxRedeliveries: base.maxRedeliveries,
  };
}

/** Delay before retry number `retry` (1 = the first retry): base·2^(retry−1) capped, half of it random. */
export function backoffMs(retry: number, baseMs: number, maxMs: number, random: () => number = Math.random): number {
  const ceiling = Math.min(maxMs, baseMs * 2 ** Math.min(Math.max(retry - 1, 0), 30));
  return Math.round(ceiling / 2 + random() * (ceiling / 2));
}

/** Counters of one call that the decision reads and updates. */
export interface AttemptCounters {
  /** Attempts that ended in a function failure (count against maxAttempts). */
  failures: number;
  /** Deliveries lost with their executor (count against maxRedeliveries). */
  redeliveries: number;
}

export type RetryDecision =
  | { kind: 'retry'; delayMs: number; counters: AttemptCounters }
  | { kind: 'succeeded'; counters: AttemptCounters }
  | { kind: 'failed'; counters: AttemptCounters }
  | { kind: 'dead-letter'; counters: AttemptCounters };

/** What to do after an attempt that ran (not for 'not-started', which never counts). */
export function decide(outcome: OutcomeClass, counters: AttemptCounters, policy: RetryPolicy, random: () => number = Math.random): RetryDecision {
  if (outcome === 'success') return { kind: 'succeeded', counters };
  if (outcome === 'rejected') return { kind: 'failed', counters };
  if (outcome === 'lost' || outcome === 'not-started') {
    const next = { ...counters, redeliveries: counters.redeliveries + 1 };
    if (next.redeliveries > policy.maxRedeliveries) return { kind: 'dead-letter', counters: next };
    return { kind: 'retry', delayMs: backoffMs(next.redeliveries, policy.backoffBaseMs, policy.backoffMaxMs, random), counters: next };
  }
  const next = { ...counters, failures: counters.failures + 1 };
  if (!policy.retryOn.has(outcome)) return { kind: 'failed', counters: next };
  if (next.failures >= policy.maxAttempts) return { kind: 'dead-letter', counters: next };
  return { kind: 'retry', delayMs: backoffMs(next.failures, policy.backoffBaseMs, policy.backoffMaxMs, random), counters: next };
}
