/**
 * The per-function queue on real Docker: calls beyond a function's container cap wait for a
 * slot; beyond its queue they are refused with 429 FUNCTION_QUEUE_FULL and a Retry-After header.
 */
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { FIXTURES } from './fake-gateway.ts';
import { ExecutorHarness } from './harness.ts';

const harness = new ExecutorHarness();
afterAll(() => harness.close());

describe('per-function queue', () => {
  it('queues a call beyond the container cap and refuses one beyond the queue with 429 and Retry-After', async () => {
    const { gateway, executor } = await harness.start({ stemCells: 0, maxStemCells: 0, maxContainersPerFunction: 1, maxQueuedPerFunction: 1 });
    await gateway.deploy(path.join(FIXTURES, 'slow'), 'slow', { limits: { memoryMB: 128, timeoutMs: 20_000, concurrency: 1 } });
    const running = gateway.invoke('slow', { query: 'ms=1500', timeoutMs: 20_000 });
    await gateway.waitFor(() => (executor.stats().containers.busy === 1 ? true : undefined), 'the first call to run');
    const queued = gateway.invoke('slow', { query: 'ms=0', timeoutMs: 20_000 });
    await gateway.waitFor(() => (executor.stats().inFlight === 2 ? true : undefined), 'the second call to arrive');
    const refused = await gateway.invoke('slow', { query: 'ms=0', timeoutMs: 20_000 });
    expect(refused.header).toMatchObject({ status: 429, errorCode: 'FUNCTION_QUEUE_FULL', containerId: '' });
    expect(refused.header.headers['retry-after']).toBe('1');
    const [first, second] = await Promise.all([running, queued]);
    expect(first.header).toMatchObject({ status: 200, start: 'cold' });
    expect(second.header).toMatchObject({ status: 200, start: 'warm', containerId: first.header.containerId });
    expect(second.header.queueUs).toBeGreaterThan(0);
  });
});
