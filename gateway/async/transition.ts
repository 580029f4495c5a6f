/**
 * What one finished attempt does to its journal entry: the retry policy's decision, the attempt
 * in the history, the result kept (cut to async.maxResultBytes) and, for a final outcome with a
 * callback, the full response body kept until the callback is delivered.
 */
import type { SkiffConfig } from '../../config.ts';
import type { InvocationOutcome, InvocationRequest } from '../initiator.ts';
import { MAX_HISTORY, type JournalEntry, type JournalUpdate } from './journal.ts';
import { decide, policyFor, type OutcomeClass } from './retry-policy.ts';

/** An attempt that ran, waiting to be recorded and acknowledged. */
export interface Completion {
  readonly request: InvocationRequest;
  readonly outcome: InvocationOutcome;
  readonly outcomeClass: OutcomeClass;
  readonly startedAtMs: number;
  readonly finishedAtMs: number;
  /** The invocation record was handed to storage. */
  recorded: boolean;
}

/** The update to commit, and for a retry how long to wait. */
export interface Transition extends JournalUpdate {
  delayMs: number;
}

/** The entry after `completion`, by the function's retry policy. */
export function transition(entry: JournalEntry, completion: Completion, config: SkiffConfig, nowMs: number): Transition {
  const { request, outcome, outcomeClass } = completion;
  const attempt = request.attempt ?? entry.attempts + 1;
  const decision = decide(outcomeClass, { failures: entry.failures, redeliveries: entry.redeliveries }, policyFor(config, entry.functionName));
  const { maxResultBytes } = config.async;
  const truncated = outcome.body.length > maxResultBytes;
  const finished = decision.kind !== 'retry';
  const next: JournalEntry = {
    ...entry,
    state: decision.kind === 'retry' ? 'queued' : decision.kind === 'dead-letter' ? 'dead-lettered' : decision.kind,
    attempts: attempt,
    failures: decision.counters.failures,
    redeliveries: decision.counters.redeliveries,
    nextAttemptAtMs: decision.kind === 'retry' ? nowMs + decision.delayMs : 0,
    finishedAtMs: finished ? nowMs : 0,
    history: [
      ...entry.history,
      {
        attempt,
        startedAtMs: completion.startedAtMs,
        finishedAtMs: completion.finishedAtMs,
        executor: outcome.executorNodeId,
        outcome: outcomeClass,
        httpStatus: outcome.status,
        errorCode: outcome.errorCode,
      },
    ].slice(-MAX_HISTORY),
    result: {
      status: outcome.status,
      headers: outcome.headers,
      // A copy, so the entry does not pin a large response buffer.
      body: Buffer.from(outcome.body.subarray(0, maxResultBytes)),
      bodyBytes: outcome.body.length,
      truncated,
      errorCode: outcome.errorCode,
      errorMessage: outcome.errorMessage,
    },
  };
  const fullResult = finished && truncated && entry.callback ? outcome.body : undefined;
  return { entry: next, fullResult, delayMs: decision.kind === 'retry' ? decision.delayMs : 0 };
}
