/**
 * The executor on a real Docker engine and real ZeroMQ: a fake gateway (BusRouter) deploys
 * functions and invokes them.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Dockerode from 'dockerode';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig, type ConfigOverrides } from '../../config.ts';
import { SkiffError } from '../../errors.ts';
import { CONTAINER_LABELS, ensureRuntimeImage, startExecutor, type Executor } from '../../executor/index.ts';
import { EXAMPLES, FakeGateway, FIXTURES } from './fake-gateway.ts';

const docker = new Dockerode();
const logger = pino({ level: 'silent' });
let runtimeImage = '';
const dataDirs: string[] = [];
const cleanups: Array<() => Promise<unknown> | unknown> = [];

function uniqueNodeId(): string {
  return `test-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
}

async function containersOf(nodeId: string): Promise<string[]> {
  const list = await docker.listContainers({ all: true, filters: { label: [`${CONTAINER_LABELS.managed}=true`, `${CONTAINER_LABELS.node}=${nodeId}`] } });
  return list.map((c) => c.Id);
}

async function containerExists(id: string): Promise<boolean> {
  try {
    await docker.getContainer(id).inspect();
    return true;
  } catch {
    return false;
  }
}

/** A fake gateway and an executor connected to it. */
async function setup(executor: ConfigOverrides['executor'] = {}): Promise<{ gateway: FakeGateway; executor: Executor; nodeId: string }> {
  const gateway = new FakeGateway();
  const endpoint = await gateway.bind();
  cleanups.push(() => gateway.close());
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'skiff-exec-'));
  dataDirs.push(dataDir);
  const nodeId = executor.nodeId ?? uniqueNodeId();
  const config = loadConfig({ dataDir, logLevel: 'silent', executor: { runtimeImage, idleTimeoutMs: 60_000, startTimeoutMs: 10_000, stemCells: 0, maxStemCells: 0, keepAlivePolicy: 'fixed', ...executor, nodeId, gatewayEndpoints: [endpoint] } }, {});
  const started = await startExecutor(config, { logger, docker });
  cleanups.push(() => started.close());
  await gateway.peer();
  return { gateway, executor: started, nodeId };
}

beforeAll(async () => {
  runtimeImage = await ensureRuntimeImage(docker, {});
});

afterAll(() => {
  for (const dir of dataDirs) rmSync(dir, { recursive: true, force: true });
});

describe('executor invoking functions in containers', () => {
  let gateway: FakeGateway;
  let nodeId: string;

  beforeAll(async () => {
    ({ gateway, nodeId } = await setup({ maxResponseBytes: 64 * 1024 }));
  });

  afterAll(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  it('answers the first call from a cold container and the second from the same warm one, bytes intact', async () => {
    await gateway.deploy(path.join(EXAMPLES, 'echo'), 'echo', { handler: 'index.js' });
    const body = Buffer.from([0, 1, 2, 0xff, 0xfe, 0x0a, 0x0d, 0x80]);
    const headers = { 'content-type': 'application/x-binary', 'x-custom': 'yes', connection: 'keep-alive' };
    const first = await gateway.invoke('echo', { body, path: '/some/path', query: 'a=1&b=two', headers });
    const second = await gateway.invoke('echo', { body, path: '/some/path', query: 'a=1&b=two', headers });

    expect(first.header).toMatchObject({ status: 200, errorCode: '', start: 'cold' });
    expect(second.header).toMatchObject({ status: 200, errorCode: '', start: 'warm', initUs: 0 });
    expect(second.header.containerId).toBe(first.header.containerId);
    expect(first.header.initUs).toBeGreaterThan(0);
    expect(Buffer.compare(first.body, body)).toBe(0);
    expect(Buffer.compare(second.body, body)).toBe(0);
    expect(second.header.headers).toMatchObject({
      'content-type': 'application/x-binary',
      'x-echo-method': 'POST',
      'x-echo-path': '/some/path',
      'x-echo-query': 'a=1&b=two',
    });
    expect(second.header.headers).not.toHaveProperty('content-length');
    expect(second.header.headers).not.toHaveProperty('fn-fdk-version');
    // Timings are reported for the record (visible with --reporter=verbose).
    console.info(`echo cold: init ${first.header.initUs} us, run ${first.header.runUs} us; warm: run ${second.header.runUs} us, queue ${second.header.queueUs} us`);
    expect(await containersOf(nodeId)).toContain(first.header.containerId);
  });

  it('sends the lines a call printed as LOGS tied to that invocation', async () => {
    await gateway.deploy(path.join(EXAMPLES, 'echo'), 'echo-logs', { handler: 'index.js' });
    const result = await gateway.invoke('echo-logs', { body: Buffer.from('12345') });
    const line = await gateway.waitFor(() => gateway.logs.find((l) => l.invocationId === result.header.id), 'the echo log line');
    expect(line).toMatchObject({ function: 'echo-logs', containerId: result.header.containerId, stream: 'stdout', line: 'echo 5 bytes', truncated: false });
  });

  it('attributes stdout and stderr lines to the call running in the container', async () => {
    await gateway.deploy(path.join(FIXTURES, 'logger'), 'logger');
    const a = await gateway.invoke('logger', { query: 'n=3' });
    const b = await gateway.invoke('logger', { query: 'n=2' });
    const linesOf = (id: string) => gateway.logs.filter((l) => l.invocationId === id);
    await gateway.waitFor(() => (linesOf(a.header.id).length === 4 && linesOf(b.header.id).length === 3 ? true : undefined), 'all logger lines');
    for (const [result, n] of [[a, 3], [b, 2]] as const) {
      const lines = linesOf(result.header.id);
      expect(lines.filter((l) => l.stream === 'stdout').map((l) => l.line)).toEqual(Array.from({ length: n }, (_, i) => `logger stdout ${i + 1}/${n} call=${result.header.id}`));
      expect(lines.filter((l) => l.stream === 'stderr').map((l) => l.line)).toEqual([`logger stderr call=${result.header.id}`]);
    }
  });

  it('sends a call\'s lines ahead of its RESULT, so an executor killed after answering has lost none of them', async () => {
    await gateway.deploy(path.join(FIXTURES, 'logger'), 'logger-order', { limits: { memoryMB: 128, timeoutMs: 10_000, concurrency: 8 } });
    // Several calls at once: lines of neighbouring calls share batches, each still ahead of its own RESULT.
    // Every other call waits after printing: its lines take the log socket (the RESULT waits for its
    // call-end frame); the others' ride in their response heads.
    const results = await Promise.all(Array.from({ length: 24 }, (_, i) => gateway.invoke('logger-order', { query: `n=${1 + (i % 5)}${i % 2 === 1 ? '&waitMs=5' : ''}` })));
    for (const [i, result] of results.entries()) {
      expect(result.header.status).toBe(200);
      // n stdout lines and one stderr line.
      expect(gateway.linesBeforeResult.get(result.header.id), `lines of call ${i} (${result.header.start}) before its RESULT`).toBe(2 + (i % 5));
    }
  });

  it('answers FUNCTION_TIMEOUT past the deadline and kills the container', async () => {
    await gateway.deploy(path.join(FIXTURES, 'slow'), 'slow');
    // A warm container first, so the deadline below covers the call only.
    const warmup = await gateway.invoke('slow', { query: 'ms=0' });
    expect(warmup.header.status).toBe(200);
    const result = await gateway.invoke('slow', { query: 'ms=60000', timeoutMs: 500 });
    expect(result.header).toMatchObject({ status: 504, errorCode: 'FUNCTION_TIMEOUT', start: 'warm', containerId: warmup.header.containerId });
    await gateway.event((e) => e.containerId === result.header.containerId && e.kind === 'killed', 'the killed event');
    await gateway.event((e) => e.containerId === result.header.containerId && e.kind === 'removed', 'the removed event');
    expect(await containerExists(result.header.containerId)).toBe(false);
    // The next call gets a new container.
    const next = await gateway.invoke('slow', { query: 'ms=0' });
    expect(next.header).toMatchObject({ status: 200, start: 'cold' });
    expect(next.header.containerId).not.toBe(result.header.containerId);
  });

  it('answers FUNCTION_CRASHED when the function process exits mid-call and removes the container', async () => {
    await gateway.deploy(path.join(FIXTURES, 'crash'), 'crash');
    const result = await gateway.invoke('crash');
    expect(result.header).toMatchObject({ status: 502, errorCode: 'FUNCTION_CRASHED' });
    expect(result.header.containerId).not.toBe('');
    await gateway.event((e) => e.containerId === result.header.containerId && e.kind === 'removed', 'the removed event');
    expect(await containerExists(result.header.containerId)).toBe(false);
  });

  it('answers FUNCTION_BAD_RESPONSE when the container does not speak HTTP', async () => {
    await gateway.deploy(path.join(FIXTURES, 'garbage'), 'garbage');
    const result = await gateway.invoke('garbage');
    expect(result.header, result.header.errorMessage).toMatchObject({ status: 502, errorCode: 'FUNCTION_BAD_RESPONSE' });
  });

  it('answers FUNCTION_START_FAILED with the load error when the function throws at import', async () => {
    await gateway.deploy(path.join(FIXTURES, 'badload'), 'badload');
    const result = await gateway.invoke('badload');
    expect(result.header).toMatchObject({ status: 502, errorCode: 'FUNCTION_START_FAILED', start: '' });
    expect(result.header.errorMessage).toContain('exited with code 1');
    expect(result.header.errorMessage).toContain('badload: this function fails at import');
  });

  it('answers RESPONSE_TOO_LARGE over executor.maxResponseBytes and keeps the container', async () => {
    await gateway.deploy(path.join(EXAMPLES, 'echo'), 'echo-large', { handler: 'index.js' });
    const small = await gateway.invoke('echo-large', { body: Buffer.alloc(1024, 7) });
    const large = await gateway.invoke('echo-large', { body: Buffer.alloc(100 * 1024, 7) });
    expect(large.header).toMatchObject({ status: 502, errorCode: 'RESPONSE_TOO_LARGE', containerId: small.header.containerId });
    const after = await gateway.invoke('echo-large', { body: Buffer.from('ok') });
    expect(after.header).toMatchObject({ status: 200, start: 'warm', containerId: small.header.containerId });
    expect(after.body.toString()).toBe('ok');
  });

  it('answers FUNCTION_NOT_FOUND for a function that was never deployed', async () => {
    const result = await gateway.invoke('no-such-function');
    expect(result.header).toMatchObject({ status: 404, errorCode: 'FUNCTION_NOT_FOUND', start: '', containerId: '' });
    expect(JSON.parse(result.body.toString('utf8'))).toMatchObject({ error: { code: 'FUNCTION_NOT_FOUND' } });
  });

  it('refuses a bundle whose bytes do not match its codeHash', async () => {
    const spec = await gateway.deploy(path.join(EXAMPLES, 'echo'), 'tampered', { handler: 'index.js', codeHash: 'a'.repeat(64) });
    expect(spec.codeHash).toBe('a'.repeat(64));
    const result = await gateway.invoke('tampered');
    expect(result.header).toMatchObject({ status: 503, errorCode: 'BUNDLE_UNAVAILABLE' });
    expect(result.header.errorMessage).toContain('sha256');
  });

  it('starts one container for concurrent cold calls when its concurrency allows', async () => {
    await gateway.deploy(path.join(FIXTURES, 'slow'), 'slow-shared', { limits: { memoryMB: 128, timeoutMs: 10_000, concurrency: 3 } });
    const results = await Promise.all([1, 2, 3].map(() => gateway.invoke('slow-shared', { query: 'ms=50' })));
    expect(results.map((r) => r.header.status)).toEqual([200, 200, 200]);
    expect(new Set(results.map((r) => r.header.containerId)).size).toBe(1);
    expect(results.every((r) => r.header.start === 'cold')).toBe(true);
  });

  it('runs each container with the hardening defaults', async () => {
    await gateway.deploy(path.join(EXAMPLES, 'echo'), 'echo-hardened', { handler: 'index.js', limits: { memoryMB: 96, timeoutMs: 10_000, concurrency: 1 } });
    const result = await gateway.invoke('echo-hardened');
    const info = await docker.getContainer(result.header.containerId).inspect();
    expect(info.Config.User).toBe('1000');
    expect(info.Config.Labels).toMatchObject({ 'skiff.managed': 'true', 'skiff.node': nodeId, 'skiff.function': 'echo-hardened', 'skiff.version': '1' });
    expect(info.HostConfig).toMatchObject({ NetworkMode: 'none', ReadonlyRootfs: true, CapDrop: ['ALL'], SecurityOpt: ['no-new-privileges'], Memory: 96 * 1024 * 1024, AutoRemove: false });
    expect(info.HostConfig.PidsLimit).toBeGreaterThan(0);
    expect(Object.keys(info.HostConfig.Tmpfs ?? {})).toEqual(['/tmp']);
  });
});

describe('executor container lifecycle', () => {
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  it('removes a container idle for longer than executor.idleTimeoutMs', async () => {
    const { gateway, nodeId } = await setup({ idleTimeoutMs: 400 });
    await gateway.deploy(path.join(EXAMPLES, 'echo'), 'echo', { handler: 'index.js' });
    const result = await gateway.invoke('echo');
    expect(result.header.start).toBe('cold');
    const evicted = await gateway.event((e) => e.containerId === result.header.containerId && e.kind === 'evicted', 'the evicted event');
    expect(evicted.detail).toContain('idle');
    await gateway.event((e) => e.containerId === result.header.containerId && e.kind === 'removed', 'the removed event');
    expect(await containersOf(nodeId)).toEqual([]);
  });

  it('removes the containers a previous run of the same node left behind', async () => {
    const nodeId = uniqueNodeId();
    const leftover = await docker.createContainer({
      Image: runtimeImage,
      Labels: { [CONTAINER_LABELS.managed]: 'true', [CONTAINER_LABELS.node]: nodeId, [CONTAINER_LABELS.function]: 'old' },
    });
    const other = await docker.createContainer({ Image: runtimeImage, Labels: { [CONTAINER_LABELS.managed]: 'true', [CONTAINER_LABELS.node]: `${nodeId}-other` } });
    cleanups.push(() => other.remove({ force: true }));
    await setup({ nodeId });
    expect(await containerExists(leftover.id)).toBe(false);
    expect(await containerExists(other.id)).toBe(true);
  });

  it('removes all its containers on close() and says BYE', async () => {
    const { gateway, executor, nodeId } = await setup();
    await gateway.deploy(path.join(EXAMPLES, 'echo'), 'echo', { handler: 'index.js' });
    await gateway.deploy(path.join(FIXTURES, 'logger'), 'logger');
    await Promise.all([gateway.invoke('echo'), gateway.invoke('logger', { query: 'n=1' })]);
    expect(await containersOf(nodeId)).toHaveLength(2);
    await executor.close();
    await executor.close();
    expect(await containersOf(nodeId)).toEqual([]);
    expect(executor.stats().containers).toEqual({ starting: 0, idle: 0, busy: 0, removing: 0 });
    const reason = await gateway.waitFor(() => gateway.downReasons[0], 'the executor to leave');
    expect(reason).toContain('BYE');
  });

  it('removes all its containers on destroy() too', async () => {
    const { gateway, executor, nodeId } = await setup();
    await gateway.deploy(path.join(EXAMPLES, 'echo'), 'echo', { handler: 'index.js' });
    await gateway.invoke('echo');
    expect(await containersOf(nodeId)).toHaveLength(1);
    await executor.destroy(new Error('test'));
    expect(await containersOf(nodeId)).toEqual([]);
  });

  it('advertises its credit and lowers it while calls are in flight', async () => {
    const { gateway } = await setup({ maxInFlight: 4 });
    await gateway.waitFor(() => (gateway.credits.includes(4) ? true : undefined), 'the initial credit');
    await gateway.deploy(path.join(FIXTURES, 'slow'), 'slow');
    const call = gateway.invoke('slow', { query: 'ms=300' });
    await gateway.waitFor(() => (gateway.credits.includes(3) ? true : undefined), 'the lowered credit');
    await call;
    await gateway.waitFor(() => (gateway.credits.at(-1) === 4 ? true : undefined), 'the credit back');
  });
});

describe('executor start checks', () => {
  it('refuses to start when Docker does not answer', async () => {
    const config = loadConfig({ dataDir: mkdtempSync(path.join(os.tmpdir(), 'skiff-exec-')), executor: { runtimeImage } }, {});
    dataDirs.push(config.dataDir);
    const unreachable = new Dockerode({ socketPath: path.join(os.tmpdir(), 'no-docker-here.sock') });
    const err = await startExecutor(config, { logger, docker: unreachable }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SkiffError);
    expect(err).toMatchObject({ code: 'CONTAINER_RUNTIME_ERROR' });
    expect((err as Error).message).toContain('Docker does not answer');
  });

  it('refuses to start without the runtime image and says how to build it', async () => {
    const config = loadConfig({ dataDir: mkdtempSync(path.join(os.tmpdir(), 'skiff-exec-')), executor: { runtimeImage: 'skiff/runtime-node20:missing-tag', nodeId: uniqueNodeId() } }, {});
    dataDirs.push(config.dataDir);
    const err = await startExecutor(config, { logger, docker }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'CONTAINER_RUNTIME_ERROR' });
    expect((err as Error).message).toContain('skiff/runtime-node20:missing-tag');
    expect((err as Error).message).toContain('build');
  });
});
