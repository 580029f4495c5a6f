/**
 * Code bundles on demand, end to end: a real `skiff gateway` and a real `skiff executor` process.
 * An executor that joins after the deploys is told the specs only; it fetches a bundle from the
 * gateway by hash the first time a call needs it, once for concurrent calls, and caches it on
 * its disk.
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Dockerode from 'dockerode';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GatewayClient } from '../../cli/client.ts';
import { deployDir, type DeployedFunction } from '../../cli/deploy.ts';
import { spawnExecutor, spawnGateway, type GatewayProcess, type SkiffProcess } from '../../cli/spawn-parts.ts';
import { ensureRuntimeImage } from '../../executor/index.ts';
import { executorPaths } from '../../executor/paths.ts';
import { call, eventually, json, REPO_ROOT } from './harness.ts';

/** How many times the gateway logged serving the bundle `codeHash` (its info log, one line per BUNDLE sent). */
function timesServed(gateway: GatewayProcess, codeHash: string): number {
  return gateway.output.filter((line) => line.includes('"code bundle served"') && line.includes(codeHash)).length;
}

describe('code bundles fetched by executors on demand', () => {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'skiff-bundle-fetch-'));
  const nodeId = `bundle-fetch-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
  let gateway: GatewayProcess;
  let executor: SkiffProcess | undefined;
  let first: DeployedFunction;
  let late: DeployedFunction;

  beforeAll(async () => {
    const runtimeImage = await ensureRuntimeImage(new Dockerode());
    gateway = await spawnGateway({ dataDir, env: { SKIFF_LOG_LEVEL: 'info' } });
    const client = new GatewayClient(gateway.url);
    try {
      first = await deployDir(client, path.join(REPO_ROOT, 'examples', 'echo'), 'first');
      late = await deployDir(client, path.join(REPO_ROOT, 'examples', 'hello'), 'late');
    } finally {
      await client.close();
    }
    expect(first.codeHash).not.toBe(late.codeHash);
    // The executor joins after both deploys: it learns them from the DEPLOYs sent on its HELLO.
    executor = spawnExecutor({ bus: gateway.bus, nodeId, runtimeImage, dataDir });
    const spawned = executor;
    await eventually(async () => {
      if (spawned.process.exitCode !== null) throw new Error(`the executor exited: ${spawned.output.join('\n')}`);
      const ready = await call(`${gateway.url}/readyz`).catch(() => undefined);
      return ready && json<{ executors: number }>(ready).executors >= 1 ? true : undefined;
    }, 60_000, 'the executor to connect');
  });

  afterAll(async () => {
    await executor?.stop();
    await gateway?.stop();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('fetches only the bundle a call needs, once for concurrent calls, and runs it', async () => {
    const bundles = executorPaths(dataDir, nodeId).bundles;
    // A call of the first function: by the time it answers, the executor has handled both DEPLOYs.
    const echoed = await call(`${gateway.url}/function/first`, { method: 'POST', body: 'one' });
    expect(echoed.status, echoed.body.toString()).toBe(200);
    expect(echoed.body.toString()).toBe('one');
    expect(timesServed(gateway, first.codeHash)).toBe(1);
    expect(existsSync(path.join(bundles, first.codeHash))).toBe(true);

    // No call needed the late function yet: none of its code crossed the bus or reached the disk.
    expect(timesServed(gateway, late.codeHash)).toBe(0);
    expect(existsSync(path.join(bundles, late.codeHash))).toBe(false);

    const replies = await Promise.all(['Ada', 'Grace', 'Edsger'].map((name) => call(`${gateway.url}/function/late?name=${name}`)));
    expect(replies.map((r) => r.status)).toEqual([200, 200, 200]);
    expect(replies.map((r) => json<{ message: string }>(r).message)).toEqual(['Hello, Ada!', 'Hello, Grace!', 'Hello, Edsger!']);
    expect(timesServed(gateway, late.codeHash)).toBe(1);
    expect(existsSync(path.join(bundles, late.codeHash))).toBe(true);

    // Cached on the node: later calls fetch nothing.
    const again = await call(`${gateway.url}/function/late?name=again`);
    expect(json<{ message: string }>(again).message).toBe('Hello, again!');
    expect(timesServed(gateway, late.codeHash)).toBe(1);
    expect(timesServed(gateway, first.codeHash)).toBe(1);
  });
});
