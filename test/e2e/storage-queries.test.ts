/**
 * The read routes end to end on both backends: filters and cursor paging of
 * GET /system/invocations, one invocation with its logs, per-function stats over a window, and
 * storage's counters in GET /system/stats — on a real `skiff up` with real invocations.
 */
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RuntimeStats } from '../../runtime-stats.ts';
import { GatewayClient } from '../../cli/client.ts';
import { deployDir } from '../../cli/deploy.ts';
import { parseInvocationQuery, parseWindow } from '../../gateway/query-routes.ts';
import { call, eventually, json, REPO_ROOT, startSkiff, type Backend, type SkiffUnderTest } from './harness.ts';

const LOGGER = path.join(REPO_ROOT, 'test', 'fixtures', 'functions', 'logger');
const TEXTS = path.join(REPO_ROOT, 'test', 'fixtures', 'functions', 'texts');
const CALLS = 7;
const TRACE_ID = '4bf92f3577b34da6a3ce929d0e0e4736';

interface Record_ {
  id: string;
  function: string;
  status: string;
  start: string;
  traceId: string;
  receivedAtMs: number;
}

describe('query parameters of the read routes', () => {
  it.each([
    ['function=f&status=timeout&start=none&limit=10', { function: 'f', status: 'timeout', start: '', limit: 10 }],
    ['since=1000&until=2000-01-01T00:00:00Z', { sinceMs: 1000, untilMs: Date.parse('2000-01-01T00:00:00Z') }],
    [`trace_id=${TRACE_ID}&cursor=abc`, { traceId: TRACE_ID, cursor: 'abc' }],
    ['', {}],
  ])('reads %s', (query, expected) => {
    expect(parseInvocationQuery(new URLSearchParams(query))).toEqual(expected);
  });

  it.each([
    ['status=nope', 'status must be one of ok, error, timeout, rejected'],
    ['start=hot', 'start must be one of cold, warm, stemcell, none'],
    ['limit=1001', 'limit must be an integer from 1 to 1000'],
    ['until=-5', 'until must be epoch milliseconds or an ISO 8601 date-time'],
    ['traceId=ABC', 'traceId must be 32 lower-case hex digits'],
  ])('refuses %s with BAD_REQUEST: %s', (query, message) => {
    expect(() => parseInvocationQuery(new URLSearchParams(query))).toThrow(expect.objectContaining({ code: 'BAD_REQUEST', message: expect.stringContaining(message) }));
  });

  it.each([
    ['90s', 90_000],
    ['15m', 900_000],
    ['1h', 3_600_000],
    ['7d', 604_800_000],
    ['250', 250],
  ])('reads the window %s as %i ms', (window, ms) => {
    expect(parseWindow(window)).toBe(ms);
  });

  it.each(['0', '1w', '-1h', '91d', ''])('refuses the window "%s"', (window) => {
    expect(() => parseWindow(window)).toThrow(expect.objectContaining({ code: 'BAD_REQUEST' }));
  });
});

describe.each<Backend>(['chdb', 'server'])('storage read routes with %s', (backend) => {
  let skiff: SkiffUnderTest;
  let client: GatewayClient;
  let startedAtMs: number;
  const ids: string[] = [];

  beforeAll(async () => {
    skiff = await startSkiff({ backend, examples: false, env: { SKIFF_STORAGE_FLUSH_INTERVAL_MS: '100', NODE_OPTIONS: '--max-semi-space-size=1' } });
    client = new GatewayClient(skiff.url);
    await deployDir(client, LOGGER, 'logger');
    startedAtMs = Date.now();
    for (let i = 0; i < CALLS; i++) {
      const headers: Record<string, string> = { 'x-call-id': `q-${backend}-${i}` };
      if (i === 3) headers.traceparent = `00-${TRACE_ID}-00f067aa0ba902b7-01`;
      const reply = await call(`${skiff.url}/function/logger?n=3`, { method: 'POST', body: 'x', headers });
      expect(reply.status).toBe(200);
      ids.push(`q-${backend}-${i}`);
    }
    await call(`${skiff.url}/function/no-such-function`, { method: 'POST', body: 'x', headers: { 'x-call-id': `q-${backend}-missing` } });
    await eventually(async () => {
      const list = json<Record_[]>(await call(`${skiff.url}/system/invocations?function=logger&limit=100`));
      return list.length === CALLS ? true : undefined;
    }, 20_000, 'all records in storage');
  });

  afterAll(async () => {
    await client?.close();
    await skiff?.stop();
  });

  it('pages through invocations newest first with X-Next-Cursor, each exactly once', async () => {
    const seen: string[] = [];
    let url = `${skiff.url}/system/invocations?function=logger&limit=3`;
    for (let page = 0; page < 5; page++) {
      const reply = await call(url);
      expect(reply.status).toBe(200);
      seen.push(...json<Record_[]>(reply).map((r) => r.id));
      const cursor = reply.headers['x-next-cursor'];
      if (cursor === undefined) break;
      expect(reply.headers.link).toContain(`cursor=${cursor}`);
      url = `${skiff.url}/system/invocations?function=logger&limit=3&cursor=${cursor}`;
    }
    expect(seen).toEqual([...ids].reverse());
  });

  it('filters by status, start type, trace id and time range', async () => {
    const list = async (query: string) => json<Record_[]>(await call(`${skiff.url}/system/invocations?${query}`));
    expect((await list('function=logger&status=ok')).length).toBe(CALLS);
    expect(await list('function=logger&status=error')).toEqual([]);
    const cold = await list('function=logger&start=cold');
    const warm = await list('function=logger&start=warm');
    expect(cold.length + warm.length).toBe(CALLS);
    expect(cold.length).toBeGreaterThanOrEqual(1);
    expect((await list(`traceId=${TRACE_ID}`)).map((r) => r.id)).toEqual([ids[3]]);
    expect((await list(`function=logger&until=${startedAtMs - 1}`)).length).toBe(0);
    expect((await list(`function=logger&since=${new Date(startedAtMs).toISOString()}`)).length).toBe(CALLS);
    const rejected = await list('status=rejected&start=none');
    expect(rejected.map((r) => r.id)).toContain(`q-${backend}-missing`);
  });

  it('answers 400 BAD_REQUEST naming the bad parameter', async () => {
    for (const [query, word] of [['status=nope', 'status'], ['start=hot', 'start'], ['limit=0', 'limit'], ['since=yesterday', 'since'], ['cursor=zz', 'cursor'], ['traceId=xyz', 'traceId']]) {
      const reply = await call(`${skiff.url}/system/invocations?${query}`);
      expect(reply.status).toBe(400);
      expect(json<{ error: { code: string; message: string } }>(reply).error).toMatchObject({ code: 'BAD_REQUEST', message: expect.stringContaining(word) });
    }
  });

  it('stores the lines a call printed exactly, whether they rode in its response head or took the log socket', async () => {
    await deployDir(client, TEXTS, 'texts');
    for (const query of ['', '?waitMs=5']) {
      const id = `texts-${backend}-${query === '' ? 'head' : 'socket'}`;
      expect((await call(`${skiff.url}/function/texts${query}`, { method: 'POST', body: 'x', headers: { 'x-call-id': id } })).status).toBe(200);
      const found = await eventually(async () => {
        const reply = await call(`${skiff.url}/system/invocations/${id}`);
        const body = reply.status === 200 ? json<Record_ & { logs: Array<{ stream: string; line: string; truncated: boolean }> }>(reply) : undefined;
        return body && body.logs.length === 7 ? body : undefined;
      }, 20_000, `the lines of ${id}`);
      expect(found.logs.map((l) => `${l.stream} ${l.line}`)).toEqual([
        `stdout call ${id}`,
        'stdout a\ttab and a back\\slash, \\t not a tab',
        'stdout ünïcödé ☃ 😀',
        'stderr two',
        'stderr lines',
        'stdout trailing spaces   ',
        'stdout ',
      ]);
      expect(found.logs.every((l) => !l.truncated)).toBe(true);
    }
  });

  it('returns one invocation with its log lines', async () => {
    const found = await eventually(async () => {
      const reply = await call(`${skiff.url}/system/invocations/${ids[0]}`);
      const body = reply.status === 200 ? json<Record_ & { logs: Array<{ stream: string; line: string }> }>(reply) : undefined;
      return body && body.logs.length === 4 ? body : undefined;
    }, 20_000, 'the logs of the first call');
    expect(found.logs.filter((l) => l.stream === 'stdout').map((l) => l.line)).toEqual([1, 2, 3].map((i) => `logger stdout ${i}/3 call=${ids[0]}`));
    expect((await call(`${skiff.url}/system/invocations/never-happened`)).status).toBe(404);
    expect((await call(`${skiff.url}/system/invocations/%E0%A4%A`)).status).toBe(400);
  });

  it('gives a function\'s count, rates, percentiles and bytes over a window', async () => {
    const reply = await call(`${skiff.url}/system/functions/logger/stats?window=15m`);
    expect(reply.status).toBe(200);
    const stats = json<{ count: number; errorRate: number; coldStartRate: number; totalUs: { p50: number; p99: number }; runUs: { p99: number }; requestBytes: number; windowMs: number }>(reply);
    expect(stats).toMatchObject({ count: CALLS, errorRate: 0, requestBytes: CALLS, windowMs: 15 * 60_000 });
    expect(stats.coldStartRate).toBeGreaterThan(0);
    expect(stats.totalUs.p50).toBeGreaterThan(0);
    expect(stats.totalUs.p99).toBeGreaterThanOrEqual(stats.totalUs.p50);
    expect(stats.runUs.p99).toBeGreaterThan(0);
    expect((await call(`${skiff.url}/system/functions/logger/stats?window=forever`)).status).toBe(400);
  });

  it('reports storage counters, with nothing dropped', async () => {
    const { storage } = json<{ storage: Record<string, unknown> & { tables: Record<string, unknown> } }>(await call(`${skiff.url}/system/stats`));
    expect(storage).toMatchObject({ droppedRows: 0, deadLetteredRows: 0, spooledBytes: 0 });
    expect(storage.recordsWritten).toBeGreaterThanOrEqual(CALLS);
    expect(storage.batchesWritten).toBeGreaterThan(0);
    expect(Object.keys(storage.tables)).toEqual(['invocations', 'logs', 'container_events']);
  });

  it('reports the GC pauses and event-loop delay of the gateway and of each executor (from its heartbeats)', async () => {
    type Stats = { gateway: { runtime: RuntimeStats }; executors: Array<{ nodeId: string; lastSeenMs: number; runtime?: RuntimeStats }> };
    const stats = async () => json<Stats>(await call(`${skiff.url}/system/stats`));
    // An executor's first heartbeat after its HELLO carries its runtime (heartbeats every 500 ms).
    let reply = await stats();
    for (let waited = 0; reply.executors[0]?.runtime === undefined && waited < 10_000; waited += 100) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      reply = await stats();
    }
    const { gateway, executors } = reply;
    expect(executors).toHaveLength(1);
    expect(executors[0].nodeId).toBe(skiff.nodeId);
    expect(Date.now() - executors[0].lastSeenMs).toBeLessThan(5_000);
    for (const runtime of [gateway.runtime, executors[0].runtime!]) {
      expect(runtime.sinceMs).toBeLessThanOrEqual(Date.now());
      expect(runtime.eventLoopDelayMs.max).toBeGreaterThan(0); // both loops ran for seconds: sampled
      expect(runtime.eventLoopDelayMs.p99).toBeLessThanOrEqual(runtime.eventLoopDelayMs.max);
      for (const kind of ['minor', 'major', 'incremental', 'weakCallbacks'] as const) {
        expect(runtime.gc[kind].count).toBeGreaterThanOrEqual(0);
        expect(runtime.gc[kind].maxMs).toBeLessThanOrEqual(runtime.gc[kind].totalMs);
      }
      expect(runtime.heapUsedMb).toBeGreaterThan(0);
    }
    // Calls make garbage in both processes; the young generation is kept small in this Skiff
    // (--max-semi-space-size=1), so a hundred of them take several collections in each.
    for (let i = 0; i < 10; i++) {
      const replies = await Promise.all(Array.from({ length: 10 }, () => call(`${skiff.url}/function/logger?n=0`, { method: 'POST', body: 'x' })));
      expect(replies.map((r) => r.status)).toEqual(Array(10).fill(200));
    }
    await new Promise((resolve) => setTimeout(resolve, 1_200)); // two heartbeats
    const later = await stats();
    expect(later.gateway.runtime.gc.minor.count).toBeGreaterThan(gateway.runtime.gc.minor.count);
    expect(later.gateway.runtime.gc.minor.totalMs).toBeGreaterThan(gateway.runtime.gc.minor.totalMs);
    expect(later.executors[0].runtime!.gc.minor.count).toBeGreaterThan(executors[0].runtime!.gc.minor.count);
    expect(later.executors[0].runtime!.sinceMs).toBe(executors[0].runtime!.sinceMs);
  });
});
