/**
 * The load generator runs in its own process and reports µs latencies and its own CPU; here
 * against a plain node:http server in this process (no Docker).
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LoadGenerator } from '../../bench/load.ts';
import { pooledPercentile } from '../../bench/stats.ts';

describe('LoadGenerator', () => {
  let server: http.Server;
  let url: string;
  let generator: LoadGenerator;

  beforeAll(async () => {
    server = http.createServer((req, res) => {
      if (req.url === '/busy') {
        res.writeHead(429);
        res.end();
        return;
      }
      req.resume();
      req.on('end', () => res.end(req.url));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    generator = new LoadGenerator();
  });

  afterAll(async () => {
    await generator.close();
    server.close();
  });

  it('runs autocannon in another process and reports µs latencies and its own CPU use', async () => {
    expect(generator.pid).not.toBe(process.pid);
    const result = await generator.run({ kind: 'duration', target: { url: `${url}/a`, method: 'POST', headers: {}, body: Buffer.from('x') }, connections: 2, durationS: 1 });
    expect(result.requests).toBeGreaterThan(0);
    expect(result.errors + result.non2xx).toBe(0);
    expect(result.errorMessages).toEqual([]);
    expect(result.latencyUs.p50).toBeGreaterThan(0);
    expect(result.latencyUs.p50).toBeLessThanOrEqual(result.latencyUs.p99);
    expect(result.generator.cpuPercent).toBeGreaterThan(0);
    expect(result.generator.wallMs).toBeGreaterThanOrEqual(900);
  });

  it('sends a round robin over paths shared by every connection', async () => {
    const seen = new Map<string, number>();
    const counting = (req: http.IncomingMessage) => seen.set(req.url ?? '', (seen.get(req.url ?? '') ?? 0) + 1);
    server.on('request', counting);
    try {
      await generator.run({ kind: 'duration', target: { url: `${url}/`, method: 'GET', headers: {}, body: Buffer.alloc(0) }, connections: 4, durationS: 1, roundRobinPaths: ['/f0', '/f1', '/f2'] });
    } finally {
      server.off('request', counting);
    }
    const counts = ['/f0', '/f1', '/f2'].map((p) => seen.get(p) ?? 0);
    expect(Math.min(...counts)).toBeGreaterThan(0);
    expect(Math.max(...counts) - Math.min(...counts)).toBeLessThanOrEqual(4);
  });

  it('fires a burst at once and counts statuses, first and last response', async () => {
    const result = await generator.run({ kind: 'burst', target: { url: `${url}/busy`, method: 'GET', headers: {}, body: Buffer.alloc(0) }, count: 50, timeoutMs: 10_000 });
    expect(result.statuses).toEqual({ 429: 50 });
    expect(result.errors).toBe(0);
    expect(result.firstResponseMs).toBeLessThanOrEqual(result.lastResponseMs);
  });

  it('sends scheduled calls at their times (open loop)', async () => {
    const calls = Array.from({ length: 10 }, (_, i) => ({ atMs: i * 20, path: `/s${i}` }));
    const result = await generator.run({ kind: 'schedule', baseUrl: url, method: 'POST', headers: {}, body: Buffer.from('x'), calls, timeoutMs: 10_000 });
    expect(result.statuses).toEqual({ 200: 10 });
    expect(result.wallMs).toBeGreaterThanOrEqual(180);
    expect(result.latencyDistribution).toBeUndefined();
  });

  it('answers with the latency distribution when asked, counting every 2xx call and agreeing with its percentiles', async () => {
    const calls = Array.from({ length: 40 }, (_, i) => ({ atMs: i * 5, path: `/d${i}` }));
    const scheduled = await generator.run({ kind: 'schedule', baseUrl: url, method: 'POST', headers: {}, body: Buffer.from('x'), calls, timeoutMs: 10_000, keepDistribution: true });
    const distribution = scheduled.latencyDistribution ?? [];
    expect(distribution.reduce((n, [, count]) => n + count, 0)).toBe(40);
    // Both keep 3 significant digits: the pooled p99 of one run is its histogram's p99 to within a bucket.
    expect(Math.abs(pooledPercentile([distribution], 99) - scheduled.latencyUs.p99)).toBeLessThanOrEqual(scheduled.latencyUs.p99 / 100);
    const closed = await generator.run({ kind: 'duration', target: { url: `${url}/a`, method: 'POST', headers: {}, body: Buffer.from('x') }, connections: 2, durationS: 1, keepDistribution: true });
    const counted = closed.latencyDistribution?.reduce((n, [, count]) => n + count, 0) ?? 0;
    // autocannon's total and the response events may differ by the calls in flight at the end.
    expect(counted).toBeGreaterThan(0);
    expect(Math.abs(counted - closed.requests)).toBeLessThanOrEqual(2);
  });
});
