/**
 * Several hosts on one machine (network namespaces), each with a gateway and an executor, one
 * ClickHouse server: calls through any gateway, deploys seen by every gateway, a host failing.
 */
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GatewayClient } from '../../cli/client.ts';
import { deployDir } from '../../cli/deploy.ts';
import { call, eventually, invocationRecord, json, REPO_ROOT, CLICKHOUSE_TEST_URL } from '../e2e/harness.ts';
import { startCluster, type Cluster } from './netns.ts';

const HEARTBEAT_MS = 200;

describe('a three-host Skiff cluster', () => {
  let cluster: Cluster;

  beforeAll(async () => {
    // Gateway 2 places calls at random: the baseline for the warm-hit comparison.
    cluster = await startCluster({ hosts: 3, clickhouseUrl: CLICKHOUSE_TEST_URL, heartbeatIntervalMs: HEARTBEAT_MS, gatewayEnv: { 2: { SKIFF_PLACEMENT: 'random' } } });
  });

  afterAll(async () => {
    await cluster?.stop();
  });

  it('connects every executor to every gateway', async () => {
    for (const host of cluster.hosts) {
      expect(json<{ executors: number }>(await call(`${host.url}/readyz`)).executors).toBe(3);
    }
  });

  it('makes a deploy on one gateway invocable through the others at once', async () => {
    const client = new GatewayClient(cluster.hosts[0].url);
    await deployDir(client, path.join(REPO_ROOT, 'examples', 'echo'), 'spread');
    await client.close();
    for (const host of cluster.hosts.slice(1)) {
      const reply = await call(`${host.url}/function/spread`, { method: 'POST', body: `via ${host.index}` });
      expect(reply.status, reply.body.toString()).toBe(200);
      expect(reply.body.toString()).toBe(`via ${host.index}`);
    }
  });

  it('answers through an affinity gateway from a warm container on any node once the function ran', async () => {
    const client = new GatewayClient(cluster.hosts[1].url);
    await deployDir(client, path.join(REPO_ROOT, 'examples', 'echo'), 'warmth');
    await client.close();
    // Gateways 1 and 3 place by affinity (gateway 2 is the random baseline below).
    for (const host of [cluster.hosts[0], cluster.hosts[2]]) {
      await call(`${host.url}/function/warmth`, { method: 'POST', body: 'first' });
      const again = await call(`${host.url}/function/warmth`, { method: 'POST', body: 'again' });
      expect(again.status).toBe(200);
      const record = await invocationRecord(host.url, again.headers['x-call-id']);
      expect(record.start).toBe('warm');
      expect(cluster.hosts.map((h) => h.nodeId)).toContain(record.executor);
    }
  });

  it('hits warm containers more often with affinity placement than with random placement on the same workload', async () => {
    const FUNCTIONS = 4;
    const CALLS = 8;
    const warmRate = async (gateway: string, prefix: string): Promise<number> => {
      const client = new GatewayClient(gateway);
      const names = Array.from({ length: FUNCTIONS }, (_, i) => `${prefix}-${i}`);
      for (const name of names) await deployDir(client, path.join(REPO_ROOT, 'examples', 'echo'), name);
      await client.close();
      for (let round = 0; round < CALLS; round++) {
        for (const name of names) expect((await call(`${gateway}/function/${name}`, { method: 'POST', body: 'x' })).status).toBe(200);
      }
      let warm = 0;
      for (const name of names) {
        const rows = await eventually(async () => {
          const list = json<Array<{ start: string }>>(await call(`${gateway}/system/invocations?function=${name}&limit=100`));
          return list.length === CALLS ? list : undefined;
        }, 20_000, `${CALLS} records of ${name}`);
        warm += rows.filter((r) => r.start === 'warm').length;
      }
      return warm / (FUNCTIONS * CALLS);
    };
    const affinity = await warmRate(cluster.hosts[0].url, 'aff');
    const random = await warmRate(cluster.hosts[1].url, 'rnd');
    // Affinity: every call after a function's first is warm. Random spreads each function over the
    // three executors, paying a start on each.
    expect(affinity).toBe((CALLS - 1) / CALLS);
    expect(random).toBeLessThan(affinity);
  });

  it('fails calls on a failed host fast, then routes around it', async () => {
    const client = new GatewayClient(cluster.hosts[0].url);
    await deployDir(client, path.join(REPO_ROOT, 'test', 'fixtures', 'functions', 'slow'), 'sleepy');
    await client.close();
    const entry = cluster.hosts[0].url;
    // Calls long enough to be in flight on every executor when host 3 fails.
    const inFlight = Array.from({ length: 6 }, () => call(`${entry}/function/sleepy?ms=8000`));
    await eventually(async () => ((json<{ inFlight: number }>(await call(`${entry}/readyz`)).inFlight >= 6) ? true : undefined), 20_000, 'six calls in flight');
    const failedAt = Date.now();
    await cluster.failHost(3);
    const replies = await Promise.all(inFlight);
    const lost = replies.filter((r) => r.status === 502);
    for (const reply of lost) expect(json<{ error: { code: string } }>(reply).error.code).toBe('EXECUTOR_LOST');
    expect(replies.every((r) => r.status === 200 || r.status === 502)).toBe(true);
    // Every call either finished or failed long before its 8 s of sleep would have run out twice.
    expect(Date.now() - failedAt).toBeLessThan(16_000);
    const ready = json<{ executors: number }>(await call(`${entry}/readyz`));
    expect(ready.executors).toBe(2);
    for (let i = 0; i < 4; i++) {
      const reply = await call(`${entry}/function/spread`, { method: 'POST', body: `after ${i}` });
      expect(reply.status).toBe(200);
    }
  });
});
