/**
 * Async invocations end to end on real parts (gateway and executor processes, Docker, ZeroMQ,
 * chDB): 202 after the journal has the call, status from queued to succeeded, Idempotency-Key,
 * retries into the dead-letter queue and replay, callbacks, records per attempt.
 */
import { once } from 'node:events';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call, eventually, json } from '../e2e/harness.ts';
import { asyncStatus, startCluster, type AsyncView, type Cluster } from './cluster.ts';

interface Received {
  headers: IncomingHttpHeaders;
  body: Buffer;
}

describe('async invocations', () => {
  let cluster: Cluster;
  let receiver: Server;
  let receiverUrl = '';
  const received: Received[] = [];
  const arrivals: Array<() => void> = [];

  beforeAll(async () => {
    cluster = await startCluster({
      backend: 'chdb',
      gatewayEnv: { SKIFF_ASYNC_BACKOFF_BASE_MS: '50', SKIFF_ASYNC_BACKOFF_MAX_MS: '200', SKIFF_ASYNC_MAX_QUEUED_PER_FUNCTION: '20' },
    });
    await cluster.deploy('exec-log', 'exec-log');
    await cluster.deploy('always-fail', 'always-fail');
    receiver = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (chunk: Buffer) => chunks.push(chunk));
      req.on('end', () => {
        received.push({ headers: req.headers, body: Buffer.concat(chunks) });
        res.end('thanks');
        for (const wake of arrivals.splice(0)) wake();
      });
    });
    receiver.listen(0, '127.0.0.1');
    await once(receiver, 'listening');
    receiverUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/done`;
  });

  afterAll(async () => {
    receiver?.close();
    await cluster?.stop();
  });

  const finished = (id: string, timeoutMs = 30_000): Promise<AsyncView> =>
    eventually(async () => {
      const view = await asyncStatus(cluster.url, id);
      return ['succeeded', 'failed', 'dead-lettered'].includes(view.status) ? view : undefined;
    }, timeoutMs, `invocation ${id} to finish`);

  it('answers 202 with X-Call-Id and runs the call to succeeded with its result', async () => {
    const reply = await call(`${cluster.url}/async-function/exec-log/some/path?x=1`, { method: 'POST', body: 'hello async' });
    expect(reply.status).toBe(202);
    const id = reply.headers['x-call-id'];
    expect(id).toMatch(/^[0-9a-f-]{36}$/);
    expect(json(reply)).toMatchObject({ id });
    const view = await finished(id);
    expect(view, JSON.stringify(view)).toMatchObject({ id, function: 'exec-log', trigger: 'async', status: 'succeeded', attempts: 1 });
    expect(view.result).toMatchObject({ status: 200, body: 'hello async', bodyEncoding: 'utf8', truncated: false });
    const withLogs = await eventually(async () => {
      const v = await asyncStatus(cluster.url, id);
      return v.logs.some((l) => l.line === `exec ${id}`) ? v : undefined;
    }, 15_000, 'the exec log line');
    expect(withLogs.history).toEqual([expect.objectContaining({ attempt: 1, outcome: 'success', httpStatus: 200 })]);
  });

  it('writes the invocation record with trigger async and its attempt number', async () => {
    const reply = await call(`${cluster.url}/async-function/exec-log`, { method: 'POST', body: 'record me' });
    const id = reply.headers['x-call-id'];
    await finished(id);
    const records = await eventually(async () => {
      const list = json<Array<{ id: string; trigger: string; attempt: number; status: string }>>(await call(`${cluster.url}/system/invocations?function=exec-log&limit=100`));
      return list.find((r) => r.id === id);
    }, 15_000, 'the async record');
    expect(records).toMatchObject({ id, trigger: 'async', attempt: 1, status: 'ok' });
  });

  it('returns the first call id for a repeated Idempotency-Key', async () => {
    const headers = { 'idempotency-key': `key-${Date.now()}` };
    const first = await call(`${cluster.url}/async-function/exec-log`, { method: 'POST', body: 'once', headers });
    const second = await call(`${cluster.url}/async-function/exec-log`, { method: 'POST', body: 'once', headers });
    expect(first.status).toBe(202);
    expect(second.status).toBe(202);
    expect(second.headers['x-call-id']).toBe(first.headers['x-call-id']);
    expect(second.headers['x-idempotent-replay']).toBe('true');
  });

  it('retries a failing call with backoff, dead-letters it after 3 attempts and replays it', async () => {
    const reply = await call(`${cluster.url}/async-function/always-fail`, { method: 'POST', body: 'doomed' });
    const id = reply.headers['x-call-id'];
    const view = await finished(id);
    expect(view).toMatchObject({ status: 'dead-lettered', attempts: 3 });
    expect(view.history.map((h) => h.attempt)).toEqual([1, 2, 3]);
    expect(view.result).toMatchObject({ status: 500, body: 'always fails' });
    const letters = json<Array<{ id: string; attempts: number; httpStatus: number }>>(await call(`${cluster.url}/system/dead-letters?function=always-fail`));
    expect(letters).toEqual(expect.arrayContaining([expect.objectContaining({ id, attempts: 3, httpStatus: 500 })]));

    const replay = await call(`${cluster.url}/system/dead-letters/${id}/replay`, { method: 'POST' });
    expect(replay.status).toBe(202);
    expect(json(replay)).toMatchObject({ id, status: 'queued' });
    const again = await eventually(async () => {
      const v = await asyncStatus(cluster.url, id);
      return v.status === 'dead-lettered' && v.attempts === 6 ? v : undefined;
    }, 30_000, 'the replay to be dead-lettered again');
    expect(again.history.map((h) => h.attempt)).toEqual([1, 2, 3, 4, 5, 6]);

    const notDead = await call(`${cluster.url}/system/dead-letters/no-such-id/replay`, { method: 'POST' });
    expect(notDead.status).toBe(404);
  });

  it('does not retry a 4xx by default and does not replay a call that is not dead-lettered', async () => {
    const reply = await call(`${cluster.url}/async-function/exec-log`, { method: 'POST', body: 'fine' });
    const id = reply.headers['x-call-id'];
    await finished(id);
    const replay = await call(`${cluster.url}/system/dead-letters/${id}/replay`, { method: 'POST' });
    expect(replay.status).toBe(409);
    expect(json<{ error: { code: string } }>(replay).error.code).toBe('NOT_DEAD_LETTERED');
  });

  it('POSTs the result to X-Callback-Url with X-Call-Id, X-Function-Status and X-Attempts', async () => {
    const arrived = new Promise<void>((resolve) => arrivals.push(resolve));
    const reply = await call(`${cluster.url}/async-function/exec-log`, { method: 'POST', body: 'call me back', headers: { 'x-callback-url': receiverUrl } });
    const id = reply.headers['x-call-id'];
    await arrived;
    const got = received.find((r) => r.headers['x-call-id'] === id);
    expect(got).toBeDefined();
    expect(got!.body.toString()).toBe('call me back');
    expect(got!.headers['x-function-status']).toBe('200');
    expect(got!.headers['x-attempts']).toBe('1');
    const view = await eventually(async () => {
      const v = await asyncStatus(cluster.url, id);
      return v.callback?.state === 'delivered' ? v : undefined;
    }, 15_000, 'the callback outcome');
    expect(view.callback).toMatchObject({ state: 'delivered', attempts: 1, lastStatus: 200 });
  });

  it('answers 404 for an unknown function and 400 for a bad callback URL', async () => {
    const missing = await call(`${cluster.url}/async-function/nope`, { method: 'POST', body: 'x' });
    expect(missing.status).toBe(404);
    expect(json<{ error: { code: string } }>(missing).error.code).toBe('FUNCTION_NOT_FOUND');
    const bad = await call(`${cluster.url}/async-function/exec-log`, { method: 'POST', body: 'x', headers: { 'x-callback-url': 'ftp://example' } });
    expect(bad.status).toBe(400);
  });

  it('answers 429 QUEUE_FULL with Retry-After once a function has async.maxQueuedPerFunction calls unfinished', async () => {
    const replies = await Promise.all(Array.from({ length: 30 }, () => call(`${cluster.url}/async-function/exec-log?ms=500`, { method: 'POST', body: 'x' })));
    const accepted = replies.filter((r) => r.status === 202);
    const shed = replies.filter((r) => r.status === 429);
    expect(accepted.length).toBeLessThanOrEqual(20);
    expect(shed.length).toBeGreaterThanOrEqual(10);
    expect(shed[0].headers['retry-after']).toBe('1');
    expect(json<{ error: { code: string } }>(shed[0]).error.code).toBe('QUEUE_FULL');
    await Promise.all(accepted.map((r) => finished(r.headers['x-call-id'])));
  });

  it('runs calls accepted before a gateway SIGKILL after it restarts on the same chDB and journal', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 10; i++) {
      const reply = await call(`${cluster.url}/async-function/exec-log?ms=300`, { method: 'POST', body: `survivor ${i}` });
      expect(reply.status).toBe(202);
      ids.push(reply.headers['x-call-id']);
    }
    await cluster.killGateway();
    await cluster.restartGateway();
    for (const [i, id] of ids.entries()) {
      const view = await finished(id, 60_000);
      expect(view).toMatchObject({ status: 'succeeded' });
      expect(view.result?.body).toBe(`survivor ${i}`);
    }
  });
});
