/**
 * Hardening proven by behaviour: a hostile function (test/fixtures/functions/hostile) writes to
 * /, opens a TCP connection, allocates past its memory, spins forever or fork-bombs; each is
 * contained (a clear error code on its own call, the container replaced where it is spoiled) and
 * another function keeps answering meanwhile. Real Docker, real ZeroMQ.
 */
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXAMPLES, FakeGateway, FIXTURES } from './fake-gateway.ts';
import { containerExists, docker, ExecutorHarness } from './harness.ts';

const harness = new ExecutorHarness();
const PIDS_LIMIT = 48;
let gateway: FakeGateway;

beforeAll(async () => {
  ({ gateway } = await harness.start({ stemCells: 0, maxStemCells: 0, pidsLimit: PIDS_LIMIT, keepAlivePolicy: 'fixed' }));
  await gateway.deploy(path.join(EXAMPLES, 'echo'), 'bystander', { handler: 'index.js' });
  await gateway.deploy(path.join(FIXTURES, 'hostile'), 'hostile', { limits: { memoryMB: 128, timeoutMs: 3_000, concurrency: 1 } });
  await gateway.deploy(path.join(FIXTURES, 'hostile'), 'hostile-big', { limits: { memoryMB: 768, timeoutMs: 6_000, concurrency: 1 } });
});

afterAll(() => harness.close());

/** The bystander answers while `during` is still running. */
async function bystanderAnswersDuring(during: Promise<unknown>): Promise<void> {
  let settled = false;
  void during.finally(() => (settled = true));
  const result = await gateway.invoke('bystander', { body: Buffer.from('still here') });
  expect(result.header.status).toBe(200);
  expect(result.body.toString()).toBe('still here');
  expect(settled).toBe(false);
}

describe('hostile functions', () => {
  it('runs as a non-root user with no capabilities, no new privileges, no Docker socket and a writable /tmp', async () => {
    const result = await gateway.invoke('hostile', { path: '/probe' });
    expect(result.header.status).toBe(200);
    expect(JSON.parse(result.body.toString())).toEqual({ uid: 1000, capEff: '0000000000000000', noNewPrivs: '1', dockerSocket: false, tmpWritable: true });
  });

  it('refuses a write to / (read-only rootfs) with FUNCTION_ERROR on that call only', async () => {
    const result = await gateway.invoke('hostile', { path: '/write-root' });
    expect(result.header).toMatchObject({ status: 500, errorCode: '' });
    expect(result.body.toString()).toMatch(/FUNCTION_ERROR.*EROFS/);
    const next = await gateway.invoke('hostile', { path: '/probe' });
    expect(next.header).toMatchObject({ status: 200, start: 'warm', containerId: result.header.containerId });
  });

  it('has no network: a TCP connection out fails inside the function', async () => {
    const result = await gateway.invoke('hostile', { path: '/tcp' });
    expect(result.header.status).toBe(500);
    expect(result.body.toString()).toMatch(/ENETUNREACH|EHOSTUNREACH|connect timed out/);
  });

  it('keeps its own loopback: a server and a client inside the function talk over 127.0.0.1', async () => {
    const result = await gateway.invoke('hostile', { path: '/loopback' });
    expect(result.header.status).toBe(200);
    expect(result.body.toString()).toBe('loopback pong');
  });

  it('kills a function that allocates past its memory with FUNCTION_OUT_OF_MEMORY and replaces its container', async () => {
    const result = await gateway.invoke('hostile', { path: '/alloc' });
    expect(result.header, result.header.errorMessage).toMatchObject({ status: 502, errorCode: 'FUNCTION_OUT_OF_MEMORY' });
    await gateway.event((e) => e.containerId === result.header.containerId && e.kind === 'removed', 'the OOM-killed container removed');
    expect(await containerExists(result.header.containerId)).toBe(false);
    const next = await gateway.invoke('hostile', { path: '/probe' });
    expect(next.header.status).toBe(200);
    expect(next.header.containerId).not.toBe(result.header.containerId);
  });

  it('stops a function that runs forever at its deadline (504), kills its container, and others keep answering', async () => {
    const call = gateway.invoke('hostile', { path: '/forever', timeoutMs: 3_000 });
    await bystanderAnswersDuring(call);
    const result = await call;
    expect(result.header).toMatchObject({ status: 504, errorCode: 'FUNCTION_TIMEOUT' });
    await gateway.event((e) => e.containerId === result.header.containerId && e.kind === 'killed', 'the killed event');
    await gateway.event((e) => e.containerId === result.header.containerId && e.kind === 'removed', 'the removed event');
    const next = await gateway.invoke('hostile', { path: '/probe' });
    expect(next.header.status).toBe(200);
    expect(next.header.containerId).not.toBe(result.header.containerId);
  });

  it('holds a fork bomb at the PID limit, times it out, replaces its container, and others keep answering', async () => {
    const call = gateway.invoke('hostile-big', { path: '/fork-bomb', timeoutMs: 6_000 });
    const line = await gateway.waitFor(() => gateway.logs.find((l) => l.function === 'hostile-big' && l.line.startsWith('fork-bomb: spawn failed')), 'the fork bomb to hit the PID limit');
    expect(line.line).toMatch(/spawn failed with EAGAIN/);
    const stats = (await docker.getContainer(line.containerId).stats({ stream: false })) as { pids_stats?: { current?: number } };
    expect(stats.pids_stats?.current ?? 0).toBeLessThanOrEqual(PIDS_LIMIT);
    await bystanderAnswersDuring(call);
    const result = await call;
    expect(result.header).toMatchObject({ status: 504, errorCode: 'FUNCTION_TIMEOUT', containerId: line.containerId });
    await gateway.event((e) => e.containerId === line.containerId && e.kind === 'removed', 'the fork bomb container removed');
    expect(await containerExists(line.containerId)).toBe(false);
  });
});
