/**
 * Load shedding on real parts. Sync: with every executor credit taken and the bounded
 * per-function wait queue full, the gateway answers 429 QUEUE_FULL with Retry-After at once;
 * the queued calls run when credit comes back. Async: a full per-function queue (429), a full
 * journal (507), an unknown function (404) and an oversized body (413) are refused, and each
 * refusal is stored as a 'rejected' async invocation.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call, eventually, json, type Reply } from '../e2e/harness.ts';
import { startCluster, type Cluster } from './cluster.ts';

/** Unfinished async calls of one function before 429 QUEUE_FULL. */
const ASYNC_QUEUE_LIMIT = 3;
/** Journal entries before 507 JOURNAL_FULL: one more than a function may queue. */
const JOURNAL_LIMIT = ASYNC_QUEUE_LIMIT + 1;
const MAX_BODY_BYTES = 4096;

interface StoredRecord {
  id: string;
  function: string;
  trigger: string;
  status: string;
  errorCode: string;
  httpStatus: number;
  requestBytes: number;
  receivedAtMs: number;
}

describe('load shedding', () => {
  let cluster: Cluster;

  beforeAll(async () => {
    cluster = await startCluster({
      backend: 'server',
      gatewayEnv: {
        SKIFF_MAX_QUEUED_PER_FUNCTION: '2',
        SKIFF_ASYNC_MAX_QUEUED_PER_FUNCTION: String(ASYNC_QUEUE_LIMIT),
        SKIFF_ASYNC_MAX_JOURNAL_ENTRIES: String(JOURNAL_LIMIT),
        SKIFF_MAX_BODY_BYTES: String(MAX_BODY_BYTES),
      },
      executorEnv: { SKIFF_EXECUTOR_MAX_IN_FLIGHT: '2' },
    });
    await cluster.deploy('exec-log', 'exec-log');
    await cluster.deploy('exec-log-b', 'exec-log');
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

  it('stores every refused async submit as a rejected async invocation', async () => {
    // Without an executor nothing accepted can run or finish (finished entries could be evicted
    // to make room): the journal fills up deterministically.
    await cluster.killExecutor();
    const startedAtMs = Date.now();
    const submit = (name: string, body: string | Buffer, headers: Record<string, string> = {}): Promise<Reply> => call(`${cluster.url}/async-function/${name}`, { method: 'POST', body, headers });
    const expectedRejections: Array<{ id: string; function: string; errorCode: string; httpStatus: number; requestBytes: number }> = [];
    const refused = (reply: Reply, name: string, body: string | Buffer, errorCode: string, httpStatus: number, requestBytes = Buffer.byteLength(body)) => {
      expect(reply.status).toBe(httpStatus);
      expect(json<{ error: { code: string } }>(reply).error.code).toBe(errorCode);
      expect(reply.headers['x-call-id']).toBeTruthy();
      expectedRejections.push({ id: reply.headers['x-call-id'], function: name, errorCode, httpStatus, requestBytes });
    };

    // exec-log: ASYNC_QUEUE_LIMIT accepted, then 429 QUEUE_FULL.
    const acceptedIds: string[] = [];
    for (let i = 0; i < ASYNC_QUEUE_LIMIT + 2; i++) {
      const body = `async ${i}`;
      const reply = await submit('exec-log', body);
      if (i < ASYNC_QUEUE_LIMIT) {
        expect(reply.status).toBe(202);
        acceptedIds.push(reply.headers['x-call-id']);
      }
      else {
        refused(reply, 'exec-log', body, 'QUEUE_FULL', 429);
        expect(reply.headers['retry-after']).toBe('1');
      }
    }
    // exec-log-b: one more fills the journal, then 507 JOURNAL_FULL.
    expect((await submit('exec-log-b', 'fills the journal')).status).toBe(202);
    for (let i = 0; i < 2; i++) {
      const body = `over the journal ${i}`;
      refused(await submit('exec-log-b', body), 'exec-log-b', body, 'JOURNAL_FULL', 507);
    }
    // A refused resubmit under the id of an accepted call: refused, but not stored over that call.
    const resubmit = await submit('exec-log', Buffer.alloc(MAX_BODY_BYTES + 1), { 'x-call-id': acceptedIds[0] });
    expect(resubmit.status).toBe(413);
    expect(resubmit.headers['x-call-id']).toBe(acceptedIds[0]);
    refused(await submit('no-such-function', 'who?'), 'no-such-function', 'who?', 'FUNCTION_NOT_FOUND', 404);
    // The body is refused while it streams in: none of it is counted.
    refused(await submit('exec-log', Buffer.alloc(MAX_BODY_BYTES + 1)), 'exec-log', '', 'PAYLOAD_TOO_LARGE', 413, 0);

    const stored = await eventually(async () => {
      const reply = await call(`${cluster.url}/system/invocations?status=rejected&since=${startedAtMs}&limit=100`);
      expect(reply.status).toBe(200);
      const byId = new Map(json<StoredRecord[]>(reply).map((r) => [r.id, r]));
      return expectedRejections.every((r) => byId.has(r.id)) ? byId : undefined;
    }, 30_000, 'the rejected async submits in storage');
    for (const expected of expectedRejections) {
      const record = stored.get(expected.id);
      expect(record).toMatchObject({ ...expected, trigger: 'async', status: 'rejected' });
      expect(record?.receivedAtMs).toBeGreaterThanOrEqual(startedAtMs);
    }
    // Accepted calls are not among them (the refused resubmit went before the last two refusals,
    // so its record, had there been one, would be stored by now).
    expect([...stored.values()].filter((r) => r.trigger === 'async')).toHaveLength(expectedRejections.length);
    for (const id of acceptedIds) expect(stored.has(id)).toBe(false);
  });
});
