/**
 * Stem cells on real Docker: prewarmed runtime containers that become a function's container by
 * specializing (code injected, no container start), reported as start 'stemcell'; replaced in
 * the background; and the executor's lifecycle around them (drain on close, leftovers removed on
 * restart, nothing leaked).
 */
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { ContainerEvent } from '../../bus/index.ts';
import { CONTAINER_LABELS } from '../../executor/index.ts';
import { EXAMPLES, FakeGateway, FIXTURES } from './fake-gateway.ts';
import { containerExists, containersOf, docker, ExecutorHarness, uniqueNodeId } from './harness.ts';

const harness = new ExecutorHarness();

afterEach(() => harness.close());

/** Resolves with the next stem cell that became ready and is not in `seen`. */
function stemCellReady(gateway: FakeGateway, seen: Set<string> = new Set()): Promise<ContainerEvent> {
  return gateway.event((e) => e.kind === 'ready' && e.function === '' && !seen.has(e.containerId), 'a stem cell to be ready');
}

describe('stem cells', () => {
  it('answers the first call from a specialized stem cell, then warm, and replaces the stem cell', async () => {
    const { gateway, nodeId } = await harness.start({ stemCells: 1, maxStemCells: 1 });
    const stem = await stemCellReady(gateway);
    await gateway.deploy(path.join(EXAMPLES, 'echo'), 'echo', { handler: 'index.js' });
    const first = await gateway.invoke('echo', { body: Buffer.from('from a stem cell') });
    expect(first.header).toMatchObject({ status: 200, errorCode: '', start: 'stemcell', containerId: stem.containerId });
    expect(first.header.initUs).toBeGreaterThan(0);
    expect(first.body.toString()).toBe('from a stem cell');
    const specialized = await gateway.event((e) => e.kind === 'specialized' && e.containerId === stem.containerId, 'the specialized event');
    expect(specialized).toMatchObject({ function: 'echo', version: 1 });
    const line = await gateway.waitFor(() => gateway.logs.find((l) => l.invocationId === first.header.id), 'the echo log line');
    expect(line.line).toBe('echo 16 bytes');

    const second = await gateway.invoke('echo', { body: Buffer.from('again') });
    expect(second.header).toMatchObject({ status: 200, start: 'warm', initUs: 0, containerId: stem.containerId });
    const replacement = await stemCellReady(gateway, new Set([stem.containerId]));
    expect(await containersOf(nodeId, { [CONTAINER_LABELS.stemCell]: 'node20' })).toEqual(expect.arrayContaining([stem.containerId, replacement.containerId]));
    console.info(`echo via stem cell: init ${first.header.initUs} us, run ${first.header.runUs} us`);
  });

  it('specializes a stem cell for an @fnproject/fdk program', async () => {
    const { gateway } = await harness.start({ stemCells: 1, maxStemCells: 1 });
    await stemCellReady(gateway);
    await gateway.deploy(path.join(EXAMPLES, 'fdk-echo'), 'fdk-echo', { handler: 'func.js' });
    const result = await gateway.invoke('fdk-echo', { body: Buffer.from('fdk in a stem cell'), headers: { 'content-type': 'text/plain' } });
    expect(result.header, result.header.errorMessage).toMatchObject({ status: 200, start: 'stemcell' });
    expect(result.body.toString()).toBe('fdk in a stem cell');
  });

  it('answers FUNCTION_START_FAILED with the load error when a stem cell cannot load the function, and the next call gets a fresh start', async () => {
    const { gateway } = await harness.start({ stemCells: 1, maxStemCells: 1 });
    const stem = await stemCellReady(gateway);
    await gateway.deploy(path.join(FIXTURES, 'badload'), 'badload');
    const result = await gateway.invoke('badload');
    expect(result.header).toMatchObject({ status: 502, errorCode: 'FUNCTION_START_FAILED' });
    expect(result.header.errorMessage).toContain('badload: this function fails at import');
    await gateway.event((e) => e.containerId === stem.containerId && e.kind === 'removed', 'the failed stem cell removed');
    expect(await containerExists(stem.containerId)).toBe(false);
  });

  it('cold-starts a function whose memory does not match the stem cells', async () => {
    const { gateway } = await harness.start({ stemCells: 1, maxStemCells: 1 });
    await stemCellReady(gateway);
    await gateway.deploy(path.join(EXAMPLES, 'echo'), 'echo-256', { handler: 'index.js', limits: { memoryMB: 256, timeoutMs: 10_000, concurrency: 1 } });
    const result = await gateway.invoke('echo-256');
    expect(result.header).toMatchObject({ status: 200, start: 'cold' });
    expect(result.header.createUs).toBeGreaterThan(0);
  });
});

describe('executor lifecycle', () => {
  it('drains on close(): a call in flight finishes, then every container (stem cells too) is removed', async () => {
    const { gateway, executor, nodeId } = await harness.start({ stemCells: 1, maxStemCells: 1 });
    await stemCellReady(gateway);
    await gateway.deploy(path.join(FIXTURES, 'slow'), 'slow', { limits: { memoryMB: 256, timeoutMs: 10_000, concurrency: 1 } });
    const call = gateway.invoke('slow', { query: 'ms=1500' });
    await gateway.waitFor(() => (executor.stats().inFlight === 1 && executor.stats().containers.busy === 1 ? true : undefined), 'the call to be running', 20_000);
    const closing = executor.close();
    const result = await call;
    expect(result.header).toMatchObject({ status: 200, errorCode: '' });
    expect(result.body.toString()).toBe('slept 1500 ms');
    await closing;
    expect(await containersOf(nodeId)).toEqual([]);
  });

  it('removes what a previous executor of the same node left behind, and leaks nothing itself', async () => {
    const nodeId = uniqueNodeId();
    const before = (await docker.listContainers({ all: true })).length;
    const first = await harness.start({ nodeId, stemCells: 2, maxStemCells: 2 });
    await stemCellReady(first.gateway);
    await first.gateway.deploy(path.join(EXAMPLES, 'echo'), 'echo', { handler: 'index.js', limits: { memoryMB: 256, timeoutMs: 10_000, concurrency: 1 } });
    await first.gateway.invoke('echo');
    const left = await containersOf(nodeId);
    expect(left.length).toBeGreaterThanOrEqual(2);
    // A crash: the executor never cleans up; a new one on the same node must.
    const second = await harness.start({ nodeId, stemCells: 0, maxStemCells: 0 });
    for (const id of left) expect(await containerExists(id)).toBe(false);
    await second.executor.close();
    await first.executor.destroy();
    expect(await containersOf(nodeId)).toEqual([]);
    // Other helpers' containers come and go on this engine: compare only ours.
    expect((await docker.listContainers({ all: true, filters: { label: [`${CONTAINER_LABELS.node}=${nodeId}`] } })).length).toBe(0);
    expect(before).toBeGreaterThanOrEqual(0);
  });

  it('leaves no container behind when closed while its stem cells are still being made', async () => {
    // Closing at different moments of the launches (directory, log socket, create, start): a
    // removal that ran before the create must keep the launch from creating the container.
    for (const delayMs of [0, 5, 20, 60]) {
      const { executor, nodeId } = await harness.start({ stemCells: 3, maxStemCells: 3 });
      await new Promise((resolve) => setTimeout(resolve, delayMs));
      await executor.close();
      // Launches still running after close() resolved finish (or stop) within a moment.
      await new Promise((resolve) => setTimeout(resolve, 1500));
      expect(await containersOf(nodeId), `closed ${delayMs} ms after start`).toEqual([]);
    }
  });
});
