/**
 * End to end on real parts: `skiff up` (uWS gateway, ZeroMQ bus, executor process, Docker
 * containers from the offline runtime image) with chDB and with the ClickHouse server.
 */
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GatewayClient } from '../../cli/client.ts';
import { deployDir } from '../../cli/deploy.ts';
import { packFunctionDir } from '../../cli/pack.ts';
import { call, CLICKHOUSE_TEST_URL, eventually, invocationRecord, json, REPO_ROOT, startSkiff, type Backend, type SkiffUnderTest } from './harness.ts';

const FIXTURES = path.join(REPO_ROOT, 'test', 'fixtures', 'functions');
const EXAMPLES = path.join(REPO_ROOT, 'examples');

/**
 * received ≤ queued (INVOKE sent) ≤ started (container call began) ≤ finished, and the gap from
 * queued to started is the executor's queue and init time (rounded to ms on the gateway's clock).
 */
function expectStepTimes(record: Record<string, unknown>): void {
  const [received, queued, started, finished] = ['receivedAtMs', 'queuedAtMs', 'startedAtMs', 'finishedAtMs'].map((k) => Number(record[k]));
  expect(received).toBeGreaterThan(0);
  expect(queued).toBeGreaterThanOrEqual(received);
  expect(started).toBeGreaterThanOrEqual(queued);
  expect(finished).toBeGreaterThanOrEqual(started);
  expect(started).toBe(Math.min(finished, queued + Math.round((Number(record.queueUs) + Number(record.initUs)) / 1000)));
}

describe.each<Backend>(['chdb', 'server'])('skiff end to end with %s storage', (backend) => {
  let skiff: SkiffUnderTest;
  let client: GatewayClient;

  beforeAll(async () => {
    skiff = await startSkiff({ backend });
    client = new GatewayClient(skiff.url);
    for (const fixture of ['crash', 'slow', 'garbage', 'logger']) await deployDir(client, path.join(FIXTURES, fixture), fixture);
    // A short timeout for the slow fixture so the 504 test is quick.
    const slowBundle = (await import('../../cli/pack.ts')).packFunctionDir(path.join(FIXTURES, 'slow'));
    await client.json('PUT', '/system/functions/slow', { code: (await slowBundle).toString('base64'), handler: 'index.mjs', limits: { timeoutMs: 1000 } });
  });

  afterAll(async () => {
    await client?.close();
    await skiff?.stop();
  });

  it('lists the deployed examples in both function styles', async () => {
    const names = json<Array<{ name: string; version: number }>>(await call(`${skiff.url}/system/functions`)).map((f) => f.name);
    expect(names).toEqual(expect.arrayContaining(['echo', 'fdk-echo', 'hello']));
  });

  it('echoes a binary body byte for byte with method, path, query and headers through the function', async () => {
    const body = randomBytes(64 * 1024);
    const reply = await call(`${skiff.url}/function/echo/some/path?x=1&y=two`, { method: 'PUT', body, headers: { 'content-type': 'application/octet-stream', 'x-call-id': 'caller-chosen-id-1' } });
    expect(reply.status).toBe(200);
    expect(reply.body.equals(body)).toBe(true);
    expect(reply.headers['content-type']).toBe('application/octet-stream');
    expect(reply.headers['x-echo-method']).toBe('PUT');
    expect(reply.headers['x-echo-path']).toBe('/some/path');
    expect(reply.headers['x-echo-query']).toBe('x=1&y=two');
    expect(reply.headers['x-call-id']).toBe('caller-chosen-id-1');
    expect(Number(reply.headers['x-duration-ms'])).toBeGreaterThan(0);
  });

  it('carries a 5 MB body both ways intact', async () => {
    const body = randomBytes(5 * 1024 * 1024);
    const reply = await call(`${skiff.url}/function/echo`, { method: 'POST', body, headers: { 'content-type': 'application/octet-stream' } });
    expect(reply.status).toBe(200);
    expect(reply.body.length).toBe(body.length);
    expect(reply.body.equals(body)).toBe(true);
  });

  it('runs an unchanged @fnproject/fdk program', async () => {
    const body = Buffer.from([0, 1, 2, 3, 250, 251, 252]);
    const reply = await call(`${skiff.url}/function/fdk-echo`, { method: 'POST', body, headers: { 'content-type': 'application/octet-stream' } });
    expect(reply.status).toBe(200);
    expect(reply.body.equals(body)).toBe(true);
  });

  it('starts a new function cold (or from a stem cell), then reuses its warm container, and stores both records', async () => {
    const name = `cw-${randomBytes(3).toString('hex')}`;
    await deployDir(client, path.join(EXAMPLES, 'echo'), name);
    const first = await call(`${skiff.url}/function/${name}`, { method: 'POST', body: 'one' });
    const second = await call(`${skiff.url}/function/${name}`, { method: 'POST', body: 'two' });
    expect(first.status).toBe(200);
    expect(second.body.toString()).toBe('two');
    const firstRecord = await invocationRecord(skiff.url, first.headers['x-call-id']);
    const secondRecord = await invocationRecord(skiff.url, second.headers['x-call-id']);
    // A first call starts cold, or from a prewarmed stem cell when one is ready.
    expect(['cold', 'stemcell']).toContain(firstRecord.start);
    expect(firstRecord).toMatchObject({ function: name, status: 'ok', httpStatus: 200, errorCode: '', requestBytes: 3, responseBytes: 3 });
    expect(secondRecord).toMatchObject({ function: name, start: 'warm', status: 'ok' });
    expect(secondRecord.containerId).toBe(firstRecord.containerId);
    expect(secondRecord.executor).toBe(skiff.nodeId);
    // Each step's time: a stem cell was created before the call (only specialized), a warm start has no init at all.
    if (firstRecord.start === 'stemcell') expect(firstRecord).toMatchObject({ createUs: 0, initUs: expect.any(Number) });
    else expect(Number(firstRecord.createUs)).toBeGreaterThan(0);
    expect(Number(firstRecord.initUs)).toBeGreaterThan(0);
    expect(secondRecord).toMatchObject({ initUs: 0, createUs: 0 });
    for (const record of [firstRecord, secondRecord]) expectStepTimes(record);
  });

  it('stores the container create time of a cold start, within its init time, and none for the warm call after it', async () => {
    // 192 MB fits no stem cell (executor.stemCellMemoryMb is 128): the first call must start a container.
    const name = `cold-${randomBytes(3).toString('hex')}`;
    const bundle = await (await import('../../cli/pack.ts')).packFunctionDir(path.join(EXAMPLES, 'echo'));
    await client.json('PUT', `/system/functions/${name}`, { code: bundle.toString('base64'), limits: { memoryMB: 192 } });
    const cold = await invocationRecord(skiff.url, (await call(`${skiff.url}/function/${name}`, { method: 'POST', body: 'one' })).headers['x-call-id']);
    const warm = await invocationRecord(skiff.url, (await call(`${skiff.url}/function/${name}`, { method: 'POST', body: 'two' })).headers['x-call-id']);
    expect(cold).toMatchObject({ start: 'cold', status: 'ok' });
    expect(Number(cold.createUs)).toBeGreaterThan(0);
    expect(Number(cold.createUs)).toBeLessThanOrEqual(Number(cold.initUs));
    expect(warm).toMatchObject({ start: 'warm', status: 'ok', initUs: 0, createUs: 0 });
    for (const record of [cold, warm]) expectStepTimes(record);
  });

  it('stores the function log lines with the invocation they belong to', async () => {
    const reply = await call(`${skiff.url}/function/echo`, { method: 'POST', body: 'twelve bytes' });
    const id = reply.headers['x-call-id'];
    const record = await eventually(async () => {
      const found = await invocationRecord(skiff.url, id);
      return found.logs.some((l) => l.line.includes('echo 12 bytes')) ? found : undefined;
    }, 15_000, 'the echo log line');
    expect(record.logs.find((l) => l.line.includes('echo 12 bytes'))?.stream).toBe('stdout');
  });

  it('stores the log lines of an unchanged @fnproject/fdk program with its invocation', async () => {
    const reply = await call(`${skiff.url}/function/fdk-echo`, { method: 'POST', body: 'nine byte', headers: { 'content-type': 'text/plain' } });
    expect(reply.status).toBe(200);
    const record = await eventually(async () => {
      const found = await invocationRecord(skiff.url, reply.headers['x-call-id']);
      return found.logs.length > 0 ? found : undefined;
    }, 15_000, 'the fdk-echo log line');
    expect(record.logs.map((l) => [l.stream, l.line])).toEqual([['stdout', 'fdk-echo 9 bytes']]);
  });

  it('stores each of several concurrent calls\' lines with its own invocation, calls sharing a container', async () => {
    const code = (await packFunctionDir(path.join(FIXTURES, 'logger'))).toString('base64');
    await client.json('PUT', '/system/functions/logger-c4', { code, handler: 'index.mjs', limits: { concurrency: 4 } });
    const replies = await Promise.all(Array.from({ length: 4 }, (_, i) => call(`${skiff.url}/function/logger-c4?n=${i + 1}`)));
    const containers = new Set<unknown>();
    for (const [i, reply] of replies.entries()) {
      const id = reply.headers['x-call-id'];
      const record = await eventually(async () => {
        const found = await invocationRecord(skiff.url, id);
        return found.logs.length === i + 2 ? found : undefined;
      }, 15_000, `the ${i + 2} lines of ${id}`);
      expect(record.logs.every((l) => l.line.endsWith(`call=${id}`))).toBe(true);
      containers.add(record.containerId);
    }
    // The three later calls joined the container the first one started.
    expect(containers.size).toBe(1);
  });

  if (backend === 'server') {
    it('stores lines printed outside any call (module load, a timer after the response) with no invocation id, in the ClickHouse server', async () => {
      const dir = await mkdtemp(path.join(os.tmpdir(), 'skiff-e2e-outside-'));
      const name = `outside-${randomBytes(3).toString('hex')}`;
      await writeFile(
        path.join(dir, 'index.mjs'),
        [
          'console.log(`loaded ${process.env.MARK}`);',
          'export default async function outside(request, context) {',
          '  console.log(`in call ${context.callId}`);',
          '  setTimeout(() => console.log(`after the response of ${context.callId}`), 20);',
          "  return 'ok';",
          '}',
          '',
        ].join('\n'),
      );
      const mark = randomBytes(4).toString('hex');
      await deployDir(client, dir, name, { MARK: mark });
      await rm(dir, { recursive: true, force: true });
      const reply = await call(`${skiff.url}/function/${name}`, { method: 'POST', body: 'x' });
      expect(reply.status).toBe(200);
      const id = reply.headers['x-call-id'];
      // skiff up under test stores into database skiff_<node id suffix> (cli/spawn.ts).
      const database = `skiff_${skiff.nodeId.slice('node-'.length)}`;
      const rows = await eventually(async () => {
        const sql = `SELECT invocation_id AS invocationId, line FROM ${database}.logs WHERE \`function\` = '${name}' ORDER BY time_ms, seq FORMAT JSONEachRow`;
        const res = await call(CLICKHOUSE_TEST_URL, { method: 'POST', body: sql });
        const found = res.body.toString('utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as { invocationId: string; line: string });
        return found.length >= 3 ? found : undefined;
      }, 15_000, 'the three lines of the outside function');
      expect(rows).toEqual([
        { invocationId: '', line: `loaded ${mark}` },
        { invocationId: id, line: `in call ${id}` },
        { invocationId: '', line: `after the response of ${id}` },
      ]);
    });
  }

  it('keeps the caller traceparent and stores its trace id', async () => {
    const traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
    const reply = await call(`${skiff.url}/function/hello?name=skiff`, { headers: { traceparent } });
    expect(reply.status).toBe(200);
    const record = await invocationRecord(skiff.url, reply.headers['x-call-id']);
    expect(record.traceId).toBe('4bf92f3577b34da6a3ce929d0e0e4736');
  });

  it('answers 404 FUNCTION_NOT_FOUND for an unknown function and records it', async () => {
    const reply = await call(`${skiff.url}/function/does-not-exist`, { method: 'POST', body: 'x' });
    expect(reply.status).toBe(404);
    expect(json(reply)).toEqual({ error: { code: 'FUNCTION_NOT_FOUND', message: expect.stringContaining('does-not-exist') } });
    const record = await invocationRecord(skiff.url, reply.headers['x-call-id']);
    expect(record).toMatchObject({ status: 'rejected', errorCode: 'FUNCTION_NOT_FOUND', httpStatus: 404 });
  });

  it('answers 413 PAYLOAD_TOO_LARGE for a body over the limit', async () => {
    const reply = await call(`${skiff.url}/function/echo`, { method: 'POST', body: Buffer.alloc(6 * 1024 * 1024 + 1) });
    expect(reply.status).toBe(413);
    expect(json<{ error: { code: string } }>(reply).error.code).toBe('PAYLOAD_TOO_LARGE');
    const record = await invocationRecord(skiff.url, reply.headers['x-call-id']);
    expect(record.errorCode).toBe('PAYLOAD_TOO_LARGE');
  });

  it('answers 413 at once and closes the connection when the declared body is far over the limit', async () => {
    const { hostname, port } = new URL(skiff.url);
    const socket = connect(Number(port), hostname);
    socket.write(`POST /function/echo HTTP/1.1\r\nHost: ${hostname}\r\nContent-Length: ${100 * 1024 * 1024}\r\n\r\n`);
    const chunks: Buffer[] = [];
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    await once(socket, 'close');
    const text = Buffer.concat(chunks).toString('latin1');
    expect(text).toMatch(/^HTTP\/1\.1 413 /);
    expect(text).toContain('"code":"PAYLOAD_TOO_LARGE"');
  });

  it('answers 431 HEADERS_TOO_LARGE for a header block over the limit', async () => {
    const reply = await call(`${skiff.url}/function/echo`, { method: 'POST', body: 'x', headers: { 'x-big': 'a'.repeat(17 * 1024) } });
    expect(reply.status).toBe(431);
    expect(json<{ error: { code: string } }>(reply).error.code).toBe('HEADERS_TOO_LARGE');
  });

  it('answers 504 FUNCTION_TIMEOUT past the deadline and replaces the container', async () => {
    const reply = await call(`${skiff.url}/function/slow?ms=60000`);
    expect(reply.status).toBe(504);
    expect(json<{ error: { code: string } }>(reply).error.code).toBe('FUNCTION_TIMEOUT');
    const record = await invocationRecord(skiff.url, reply.headers['x-call-id']);
    expect(record).toMatchObject({ status: 'timeout', errorCode: 'FUNCTION_TIMEOUT', httpStatus: 504 });
    const quick = await call(`${skiff.url}/function/slow?ms=1`);
    expect(quick.status).toBe(200);
    const quickRecord = await invocationRecord(skiff.url, quick.headers['x-call-id']);
    expect(quickRecord.containerId).not.toBe(record.containerId);
  });

  it('answers 502 FUNCTION_CRASHED when the function process dies mid-call', async () => {
    const reply = await call(`${skiff.url}/function/crash`, { method: 'POST', body: 'x' });
    expect(reply.status).toBe(502);
    expect(json<{ error: { code: string } }>(reply).error.code).toBe('FUNCTION_CRASHED');
    const record = await invocationRecord(skiff.url, reply.headers['x-call-id']);
    expect(record).toMatchObject({ status: 'error', errorCode: 'FUNCTION_CRASHED' });
  });

  it('answers 502 FUNCTION_BAD_RESPONSE when the function answers garbage', async () => {
    const reply = await call(`${skiff.url}/function/garbage`, { method: 'POST', body: 'x' });
    expect(reply.status).toBe(502);
    expect(json<{ error: { code: string } }>(reply).error.code).toBe('FUNCTION_BAD_RESPONSE');
  });

  it('lists invocations filtered by function and status', async () => {
    await call(`${skiff.url}/function/logger?n=2`);
    const rows = await eventually(async () => {
      const list = json<Array<{ function: string; status: string }>>(await call(`${skiff.url}/system/invocations?function=logger&status=ok&limit=5`));
      return list.length > 0 ? list : undefined;
    }, 15_000, 'logger invocations');
    expect(rows.every((r) => r.function === 'logger' && r.status === 'ok')).toBe(true);
    const bad = await call(`${skiff.url}/system/invocations?limit=0`);
    expect(bad.status).toBe(400);
    expect(json<{ error: { code: string } }>(bad).error.code).toBe('BAD_REQUEST');
  });

  it('is healthy and ready with an executor connected and storage writable', async () => {
    expect((await call(`${skiff.url}/healthz`)).status).toBe(200);
    const ready = await call(`${skiff.url}/readyz`);
    expect(ready.status).toBe(200);
    expect(json(ready)).toMatchObject({ ready: true, executors: 1, storage: 'writable' });
  });

  it('fails an in-flight call fast with 502 EXECUTOR_LOST when the executor is killed, then answers 503', async () => {
    const inFlight = call(`${skiff.url}/function/slow?ms=20000`);
    // Once the gateway has the call in flight on that executor, losing the executor must fail it.
    await eventually(async () => ((json<{ inFlight: number }>(await call(`${skiff.url}/readyz`)).inFlight >= 1) ? true : undefined), 10_000, 'the call in flight');
    const killedAt = Date.now();
    process.kill(skiff.executorPid, 'SIGKILL');
    const reply = await inFlight;
    const failedAfterMs = Date.now() - killedAt;
    expect(reply.status).toBe(502);
    expect(json<{ error: { code: string } }>(reply).error.code).toBe('EXECUTOR_LOST');
    expect(failedAfterMs).toBeLessThan(10_000);
    const after = await call(`${skiff.url}/function/echo`, { method: 'POST', body: 'x' });
    expect(after.status).toBe(503);
    expect(json<{ error: { code: string } }>(after).error.code).toBe('NO_EXECUTOR');
    const ready = await call(`${skiff.url}/readyz`);
    expect(ready.status).toBe(503);
  });
});
