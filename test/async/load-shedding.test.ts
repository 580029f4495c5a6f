/**
 * Sync load shedding on real parts: with every executor credit taken and the bounded
 * per-function wait queue full, the gateway answers 429 QUEUE_FULL with Retry-After at once;
 * the queued calls run when credit comes back.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call, json } from '../e2e/harness.ts';
import { startCluster, type Cluster } from './cluster.ts';

describe('sync load shedding', () => {
  let cluster: Cluster;

  beforeAll(async () => {
    cluster = await startCluster({
      backend: 'server',
      gatewayEnv: { SKIFF_MAX_QUEUED_PER_FUNCTION: '2' },
      executorEnv: { SKIFF_EXECUTOR_MAX_IN_FLIGHT: '2' },
    });
    await cluster.deploy('exec-log', 'exec-log');
    // Warm: the executor has granted its credit once a call came back.
    expect((await call(`${cluster.url}/function/exec-log`, { method: 'POST', body: 'warm' })).status).toBe(200);
  });

  afterAll(async () => {
    await cluster?.stop();
  });

  it('answers 429 QUEUE_FULL with Retry-After when no credit is left and the queue is full', async () => {
    const replies = await Promise.all(Array.from({ length: 16 }, (_, i) => call(`${cluster.url}/function/exec-log?ms=1500`, { method: 'POST', body: `call ${i}` })));
    const ok = replies.filter((r) => r.status === 200);
    const shed = replies.filter((r) => r.status === 429);
    // 2 run on the executor's credit and 2 wait in the queue; the rest are shed. (Credit is an
    // absolute figure the executor re-sends, so a report in flight can let one or two more through.)
    expect(ok.length + shed.length).toBe(16);
    expect(ok.length).toBeGreaterThanOrEqual(4);
    expect(shed.length).toBeGreaterThanOrEqual(8);
    for (const reply of shed) {
      expect(reply.headers['retry-after']).toBe('1');
      expect(json<{ error: { code: string } }>(reply).error.code).toBe('QUEUE_FULL');
    }
    expect(ok.map((r) => r.body.toString()).sort()).toEqual(expect.arrayContaining([expect.stringMatching(/^call \d$/)]));
  });
});
