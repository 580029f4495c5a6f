/**
 * Several hosts on one machine (network namespaces), each with a gateway and an executor, one
 * ClickHouse server: calls through any gateway, deploys seen by every gateway, a host failing.
 * Gateways are found by name, as in Swarm and Kubernetes: executors connect to every address of
 * one name, gateways subscribe to every other gateway behind another, each host resolving through
 * its own /etc/hosts.
 */
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GatewayClient } from '../../cli/client.ts';
import { deployDir } from '../../cli/deploy.ts';
import { call, eventually, invocationRecord, json, REPO_ROOT, CLICKHOUSE_TEST_URL } from '../e2e/harness.ts';
import { startCluster, type Cluster, type ClusterHost } from './netns.ts';

const HEARTBEAT_MS = 200;
const CONTROL_PORT = 7200;
/** bus.peerResolveIntervalMs of the gateways: short, so a change of the name is followed quickly. */
const PEER_RESOLVE_INTERVAL_MS = 200;

/** The addresses a host's processes hold established TCP connections to on the control port. */
function controlConnections(host: ClusterHost): string[] {
  const out = execFileSync('ip', ['netns', 'exec', host.namespace, 'ss', '-Htn', 'state', 'established', `( dport = :${CONTROL_PORT} )`], { encoding: 'utf8' });
  return [...new Set(out.split('\n').filter(Boolean).map((line) => line.trim().split(/\s+/).at(-1)!.replace(/:\d+$/, '')))].sort();
}

/** Waits until each listed host is connected to exactly the control channels of `expected` hosts. */
async function meshIs(cluster: Cluster, expected: Record<number, number[]>): Promise<void> {
  for (const [index, peers] of Object.entries(expected)) {
    const host = cluster.hosts[Number(index) - 1];
    const want = peers.map((i) => cluster.hosts[i - 1].ip).sort();
    await eventually(async () => (JSON.stringify(controlConnections(host)) === JSON.stringify(want) ? true : undefined), 20_000, `host ${index} subscribed to hosts ${peers.join(', ')} (has ${controlConnections(host).join(', ')})`);
  }
}

describe('a three-host Skiff cluster', () => {
  let cluster: Cluster;

  beforeAll(async () => {
    // Gateway 2 places calls at random: the baseline for the warm-hit comparison.
    cluster = await startCluster({
      hosts: 3,
      clickhouseUrl: CLICKHOUSE_TEST_URL,
      heartbeatIntervalMs: HEARTBEAT_MS,
      namedGateways: true,
      env: { SKIFF_PEER_RESOLVE_INTERVAL_MS: String(PEER_RESOLVE_INTERVAL_MS) },
      gatewayEnv: { 2: { SKIFF_PLACEMENT: 'random' } },
    });
  });

  afterAll(async () => {
    await cluster?.stop();
  });

  it('connects every executor to every gateway', async () => {
    for (const host of cluster.hosts) {
      expect(json<{ executors: number }>(await call(`${host.url}/readyz`)).executors).toBe(3);
    }
  });

  it('subscribes each gateway to every other gateway behind the control name, never to itself', async () => {
    await meshIs(cluster, { 1: [2, 3], 2: [1, 3], 3: [1, 2] });
  });

  it('follows the control name as a gateway leaves it and joins it again, hearing deploys from the one that joined', async () => {
    cluster.setControlName([1, 2]);
    await meshIs(cluster, { 1: [2], 2: [1], 3: [1, 2] });
    cluster.setControlName([1, 2, 3]);
    await meshIs(cluster, { 1: [2, 3], 2: [1, 3], 3: [1, 2] });
    // Only the control channel brings a deploy into another gateway's registry (GET does not
    // reload from storage). A subscription joins just after its connection: deploy again until heard.
    const client = new GatewayClient(cluster.hosts[2].url);
    let deployed = 0;
    try {
      await eventually(async () => {
        deployed = (await deployDir(client, path.join(REPO_ROOT, 'examples', 'echo'), 'joiner')).version;
        for (const host of cluster.hosts.slice(0, 2)) {
          const seen = await eventually(async () => {
            const reply = await call(`${host.url}/system/functions/joiner`);
            return reply.status === 200 && json<{ version: number }>(reply).version === deployed ? true : undefined;
          }, 2_000, `joiner v${deployed} on gateway ${host.index}`).catch(() => undefined);
          if (!seen) return undefined;
        }
        return true;
      }, 20_000, 'a deploy on gateway 3 heard by gateways 1 and 2');
    } finally {
      await client.close();
    }
    expect(deployed).toBeGreaterThan(0);
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
