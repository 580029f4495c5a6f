import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../config.ts';
import { backoffMs, classifyOutcome, decide, policyFor, type OutcomeClass, type RetryPolicy } from '../../gateway/async/retry-policy.ts';

const policy: RetryPolicy = { maxAttempts: 3, retryOn: new Set(['5xx', 'timeout', 'crash']), backoffBaseMs: 100, backoffMaxMs: 1000, maxRedeliveries: 2 };

describe('classifyOutcome', () => {
  it.each<[string, number, OutcomeClass]>([
    ['', 200, 'success'],
    ['', 302, 'success'],
    ['', 404, '4xx'],
    ['', 503, '5xx'],
    ['FUNCTION_ERROR', 500, '5xx'],
    ['RESPONSE_TOO_LARGE', 502, '5xx'],
    ['FUNCTION_TIMEOUT', 504, 'timeout'],
    ['FUNCTION_CRASHED', 502, 'crash'],
    ['FUNCTION_BAD_RESPONSE', 502, 'crash'],
    ['FUNCTION_START_FAILED', 502, 'crash'],
    ['EXECUTOR_LOST', 502, 'lost'],
    ['NO_EXECUTOR', 503, 'not-started'],
    ['QUEUE_FULL', 429, 'not-started'],
    ['FUNCTION_NOT_FOUND', 404, 'rejected'],
  ])('classifies %s / %i as %s', (code, status, expected) => {
    expect(classifyOutcome(code as Parameters<typeof classifyOutcome>[0], status)).toBe(expected);
  });
});

describe('decide', () => {
  const none = { failures: 0, redeliveries: 0 };
  it('finishes a success and fails a 4xx without retrying by default', () => {
    expect(decide('success', none, policy).kind).toBe('succeeded');
    expect(decide('4xx', none, policy)).toMatchObject({ kind: 'failed', counters: { failures: 1 } });
  });

  it('retries 5xx, timeout and crash until maxAttempts, then dead-letters', () => {
    expect(decide('5xx', none, policy)).toMatchObject({ kind: 'retry', counters: { failures: 1 } });
    expect(decide('timeout', { failures: 1, redeliveries: 0 }, policy)).toMatchObject({ kind: 'retry', counters: { failures: 2 } });
    expect(decide('crash', { failures: 2, redeliveries: 0 }, policy)).toMatchObject({ kind: 'dead-letter', counters: { failures: 3 } });
  });

  it('retries 4xx when the policy names it', () => {
    expect(decide('4xx', none, { ...policy, retryOn: new Set(['4xx']) }).kind).toBe('retry');
  });

  it('redelivers a call lost with its executor without using an attempt, up to maxRedeliveries', () => {
    expect(decide('lost', none, policy)).toMatchObject({ kind: 'retry', counters: { failures: 0, redeliveries: 1 } });
    expect(decide('lost', { failures: 0, redeliveries: 2 }, policy)).toMatchObject({ kind: 'dead-letter', counters: { redeliveries: 3 } });
  });
});

describe('backoffMs', () => {
  it('doubles from the base, is capped, and keeps half of it fixed', () => {
    expect(backoffMs(1, 100, 1000, () => 0)).toBe(50);
    expect(backoffMs(1, 100, 1000, () => 1)).toBe(100);
    expect(backoffMs(3, 100, 1000, () => 1)).toBe(400);
    expect(backoffMs(10, 100, 1000, () => 1)).toBe(1000);
    expect(backoffMs(10, 100, 1000, () => 0)).toBe(500);
  });
});

describe('policyFor', () => {
  it('takes a function override from async.functions over the defaults', () => {
    const config = loadConfig({ async: { functions: { flaky: { maxAttempts: 5, retryOn: ['4xx'] } } } }, {});
    expect(policyFor(config, 'flaky')).toMatchObject({ maxAttempts: 5, retryOn: new Set(['4xx']) });
    expect(policyFor(config, 'other')).toMatchObject({ maxAttempts: 3, retryOn: new Set(['5xx', 'timeout', 'crash']) });
  });

  it('rejects an unknown retry outcome naming the option', () => {
    expect(() => loadConfig({ async: { retryOn: ['sometimes'] as never } }, {})).toThrow(/async\.retryOn\[\] must be one of 5xx, 4xx, timeout, crash/);
  });
});
