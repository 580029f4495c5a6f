/**
 * A function deployed through another gateway that shares the ClickHouse server but not a control
 * channel: the gateway never hears the announcement, so its registry learns the function from
 * storage on the first miss, for async submits as for sync calls, and its executor fetches the
 * code bundle by hash from it (served from storage: it never received the deploy itself).
 */
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GatewayClient } from '../../cli/client.ts';
import { deployDir } from '../../cli/deploy.ts';
import { spawnGateway, type GatewayProcess } from '../../cli/spawn-parts.ts';
import { call, eventually, json } from '../e2e/harness.ts';
import { ASYNC_FUNCTIONS, asyncStatus, freeFixedPort, startCluster, type Cluster } from './cluster.ts';

describe('a function deployed through a gateway this one never heard from', () => {
  let cluster: Cluster;
  let other: GatewayProcess;

  beforeAll(async () => {
    cluster = await startCluster({ backend: 'server' });
    other = await spawnGateway({
      dataDir: mkdtempSync(path.join(os.tmpdir(), 'skiff-peer-')),
      clickhouseUrl: cluster.clickhouseUrl,
      env: { SKIFF_CLICKHOUSE_DATABASE: cluster.database },
      port: await freeFixedPort(),
      bus: `tcp://127.0.0.1:${await freeFixedPort()}`,
    });
    const client = new GatewayClient(other.url);
    try {
      await deployDir(client, path.join(ASYNC_FUNCTIONS, 'exec-log'), 'peer-async');
      await deployDir(client, path.join(ASYNC_FUNCTIONS, 'exec-log'), 'peer-sync');
    } finally {
      await client.close();
    }
  });

  afterAll(async () => {
    await other?.stop();
    await cluster?.stop();
  });

  it('accepts an async submit and runs it to succeeded', async () => {
    const submitted = await call(`${cluster.url}/async-function/peer-async`, { method: 'POST', body: 'from a peer' });
    expect(submitted.status).toBe(202);
    const id = submitted.headers['x-call-id'];
    expect(id).toBeTruthy();
    const view = await eventually(async () => {
      const current = await asyncStatus(cluster.url, String(id));
      return ['succeeded', 'failed', 'dead-lettered'].includes(current.status) ? current : undefined;
    }, 60_000, 'the async call to finish');
    expect(view.status).toBe('succeeded');
  });

  it('answers a sync call', async () => {
    const reply = await call(`${cluster.url}/function/peer-sync`, { method: 'POST', body: 'sync from a peer' });
    expect(reply.status, reply.body.toString()).toBe(200);
  });

  it('still answers 404 FUNCTION_NOT_FOUND for a name nobody deployed', async () => {
    const reply = await call(`${cluster.url}/async-function/nobody-deployed-this`, { method: 'POST', body: 'x' });
    expect(reply.status).toBe(404);
    expect(json<{ error: { code: string } }>(reply).error.code).toBe('FUNCTION_NOT_FOUND');
  });
});
