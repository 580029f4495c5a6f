/**
 * The runtime image on a real Docker engine: built offline (or found), then function containers
 * started from it the way the executor will (no network, hardened, code read-only at /function,
 * a host directory at /tmp/iofs) and called over the unix socket with the Fn http-stream contract.
 */
import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import Docker from 'dockerode';
import { Client } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureRuntimeImage, LISTENER_FILE, RUNTIME_LATEST_TAG, RUNTIME_PATHS, RUNTIME_USER, runtimeEnv } from '../../executor/runtime/index.ts';
import { readFunctionManifest } from '../../cli/pack.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const EXAMPLES = path.join(ROOT, 'examples');
const FIXTURES = path.join(ROOT, 'test', 'fixtures', 'functions');
const READY_TIMEOUT_MS = 15_000;

const docker = new Docker();
const containers: Docker.Container[] = [];
const tempDirs: string[] = [];
const readyTimes: { name: string; createMs: number; startCallMs: number; startToReadyMs: number }[] = [];
let image = '';

/** Resolves once `check` returns a value other than undefined; polls a bounded number of times. */
async function waitFor<T>(what: string, check: () => Promise<T | undefined>, timeoutMs: number, intervalMs = 5): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}

/** Splits Docker's multiplexed (non-TTY) log buffer into stdout and stderr text. */
function demuxLogs(buffer: Buffer): { stdout: string; stderr: string } {
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  for (let offset = 0; offset + 8 <= buffer.length; ) {
    const stream = buffer[offset];
    const size = buffer.readUInt32BE(offset + 4);
    const chunk = buffer.subarray(offset + 8, offset + 8 + size);
    (stream === 2 ? err : out).push(chunk);
    offset += 8 + size;
  }
  return { stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8') };
}

async function containerLogs(container: Docker.Container): Promise<{ stdout: string; stderr: string }> {
  const raw = (await container.logs({ stdout: true, stderr: true, follow: false })) as unknown as Buffer;
  return demuxLogs(raw);
}

interface FunctionContainer {
  container: Docker.Container;
  socketPath: string;
  client: Client;
}

/** Creates and starts a function container like the executor does; `ready` waits for lsnr.sock. */
async function startFunction(name: string, functionDir: string, options: { waitReady?: boolean } = {}): Promise<FunctionContainer> {
  const manifest = await readFunctionManifest(functionDir);
  const iofs = await fsp.mkdtemp(path.join(os.tmpdir(), `skiff-iofs-${name}-`));
  tempDirs.push(iofs);
  await fsp.chmod(iofs, 0o777);
  const socketPath = path.join(iofs, LISTENER_FILE);

  const createStarted = performance.now();
  const container = await docker.createContainer({
    Image: image,
    name: `skiff-runtime-test-${name}-${randomBytes(4).toString('hex')}`,
    Env: runtimeEnv(name, manifest.handler),
    Labels: { 'skiff.test': 'runtime-image' },
    HostConfig: {
      NetworkMode: 'none',
      Binds: [`${iofs}:${RUNTIME_PATHS.iofsDir}`, `${path.resolve(functionDir)}:${RUNTIME_PATHS.functionDir}:ro`],
      // The hardening defaults the executor applies: the runtime has to work under them.
      ReadonlyRootfs: true,
      Tmpfs: { '/tmp': 'rw,nosuid,nodev,size=16m' },
      CapDrop: ['ALL'],
      SecurityOpt: ['no-new-privileges'],
      PidsLimit: 64,
      Memory: 128 * 1024 * 1024,
      MemorySwap: 128 * 1024 * 1024,
    },
  });
  containers.push(container);
  const createMs = performance.now() - createStarted;

  const started = performance.now();
  await container.start();
  const startCallMs = performance.now() - started;
  if (options.waitReady !== false) {
    await waitFor(`${socketPath} to appear`, async () => (await fsp.stat(socketPath).then((s) => s.isSocket(), () => false)) || undefined, READY_TIMEOUT_MS, 2);
    readyTimes.push({ name, createMs, startCallMs, startToReadyMs: performance.now() - started });
  }
  return { container, socketPath, client: new Client('http://localhost', { socketPath }) };
}

function fnHeaders(functionName: string, requestUrl: string, method: string, callerHeaders: Record<string, string>): Record<string, string> {
  const headers: Record<string, string> = {
    'Fn-Call-Id': `call-${randomBytes(6).toString('hex')}`,
    'Fn-Deadline': new Date(Date.now() + 30_000).toISOString(),
    'Fn-Http-Method': method,
    'Fn-Http-Request-Url': requestUrl.replace('{name}', functionName),
  };
  for (const [name, value] of Object.entries(callerHeaders)) headers[`Fn-Http-H-${name}`] = value;
  if (callerHeaders['Content-Type']) headers['Content-Type'] = callerHeaders['Content-Type'];
  return headers;
}

async function call(fn: FunctionContainer, headers: Record<string, string>, body: Buffer | string) {
  const response = await fn.client.request({ path: '/call', method: 'POST', headers, body });
  const bytes = Buffer.from(await response.body.arrayBuffer());
  return { statusCode: response.statusCode, headers: response.headers, body: bytes };
}

function binaryBody(): Buffer {
  const every = Buffer.alloc(256);
  for (let i = 0; i < 256; i++) every[i] = i;
  return Buffer.concat([every, randomBytes(64 * 1024), Buffer.from('\r\n\r\n0\r\n', 'latin1'), every]);
}

beforeAll(async () => {
  await docker.ping();
  image = await ensureRuntimeImage(docker, { onProgress: (line) => console.log(`[runtime image] ${line}`) });
});

afterAll(async () => {
  await Promise.all(containers.map((c) => c.remove({ force: true }).catch(() => {})));
  await Promise.all(tempDirs.map((d) => fsp.rm(d, { recursive: true, force: true })));
  if (readyTimes.length > 0) {
    console.log('container create, start API call, and start → lsnr.sock ready (ms):');
    console.table(readyTimes.map((r) => ({ function: r.name, createMs: Math.round(r.createMs), startCallMs: Math.round(r.startCallMs), startToReadyMs: Math.round(r.startToReadyMs) })));
  }
});

describe('the runtime image', () => {
  it('is built or found under a content-hash tag that docker image inspect finds, and tagged latest', async () => {
    expect(image).toMatch(/^skiff\/runtime-node20:[0-9a-f]{12}$/);
    const info = await docker.getImage(image).inspect();
    const latest = await docker.getImage(RUNTIME_LATEST_TAG).inspect();
    expect(latest.Id).toBe(info.Id);
    expect(info.Config.Cmd).toEqual([RUNTIME_PATHS.node, RUNTIME_PATHS.bootstrap]);
    expect(info.Config.User).toBe(String(RUNTIME_USER.uid));
    expect(info.Config.WorkingDir).toBe(RUNTIME_PATHS.functionDir);
    expect(info.Config.Env).toContain('NODE_ENV=production');
  });

  it('is found again without a rebuild when the tag exists', async () => {
    const lines: string[] = [];
    const again = await ensureRuntimeImage(docker, { onProgress: (line) => lines.push(line) });
    expect(again).toBe(image);
    expect(lines.join('\n')).toMatch(/already exists/);
  });
});

describe('a style (a) function (examples/echo)', () => {
  let fn: FunctionContainer;
  beforeAll(async () => {
    fn = await startFunction('echo', path.join(EXAMPLES, 'echo'));
  });
  afterAll(async () => fn?.client.close());

  it('echoes a binary body byte for byte with the caller content type and x-echo headers', async () => {
    const body = binaryBody();
    const headers = fnHeaders('echo', '/function/{name}/a/b?x=1&x=2&y=z', 'PUT', { 'Content-Type': 'application/x-skiff-test', 'X-Custom': 'v' });
    const res = await call(fn, headers, body);
    expect(res.statusCode).toBe(200);
    expect(res.headers['fn-http-status']).toBe('200');
    expect(res.headers['fn-http-h-content-type']).toBe('application/x-skiff-test');
    expect(res.headers['content-type']).toBe('application/x-skiff-test');
    expect(res.headers['fn-http-h-x-echo-method']).toBe('PUT');
    expect(res.headers['fn-http-h-x-echo-path']).toBe('/a/b');
    expect(res.headers['fn-http-h-x-echo-query']).toBe('x=1&x=2&y=z');
    expect(res.body.equals(body)).toBe(true);
  });

  it('reports path / and an empty query for a bare function URL and an empty body', async () => {
    const res = await call(fn, fnHeaders('echo', '/function/{name}', 'GET', {}), Buffer.alloc(0));
    expect(res.headers['fn-http-status']).toBe('200');
    expect(res.headers['fn-http-h-x-echo-path']).toBe('/');
    expect(res.headers['fn-http-h-x-echo-query']).toBe('');
    expect(res.body.length).toBe(0);
  });

  it('writes its log line to the container stdout', async () => {
    await call(fn, fnHeaders('echo', '/function/{name}', 'POST', { 'Content-Type': 'text/plain' }), 'twelve bytes');
    const logs = await waitFor('the echo log line', async () => {
      const l = await containerLogs(fn.container);
      return l.stdout.includes('echo 12 bytes') ? l : undefined;
    }, 5_000, 20);
    expect(logs.stdout).toMatch(/^echo \d+ bytes$/m);
  });
});

describe('a style (a) ES module function (examples/hello)', () => {
  let fn: FunctionContainer;
  beforeAll(async () => {
    fn = await startFunction('hello', path.join(EXAMPLES, 'hello'));
  });
  afterAll(async () => fn?.client.close());

  it('answers a JSON greeting built from the name query parameter', async () => {
    const headers = fnHeaders('hello', '/function/{name}?name=Ada', 'GET', {});
    const res = await call(fn, headers, Buffer.alloc(0));
    expect(res.headers['fn-http-status']).toBe('200');
    expect(res.headers['content-type']).toBe('application/json');
    expect(JSON.parse(res.body.toString('utf8'))).toEqual({ message: 'Hello, Ada!', function: 'hello', callId: headers['Fn-Call-Id'] });
  });
});

describe('a style (b) fdk program (examples/fdk-echo)', () => {
  let fn: FunctionContainer;
  beforeAll(async () => {
    fn = await startFunction('fdk-echo', path.join(EXAMPLES, 'fdk-echo'));
  });
  afterAll(async () => fn?.client.close());

  it('echoes a binary body byte for byte through the unchanged @fnproject/fdk', async () => {
    const body = binaryBody();
    const headers = fnHeaders('fdk-echo', '/function/{name}/p/q?k=v', 'POST', { 'Content-Type': 'application/octet-stream' });
    const res = await call(fn, headers, body);
    expect(res.statusCode).toBe(200);
    expect(res.headers['fn-http-status']).toBe('200');
    expect(res.headers['content-type']).toBe('application/octet-stream');
    expect(res.headers['fn-http-h-x-echo-method']).toBe('POST');
    expect(res.headers['fn-http-h-x-echo-path']).toBe('/p/q');
    expect(res.headers['fn-http-h-x-echo-query']).toBe('k=v');
    expect(res.headers['fn-fdk-version']).toMatch(/^fdk-node\/0\.0\.76/);
    expect(res.body.equals(body)).toBe(true);
  });

  it('returns a JSON body as is rather than JSON-encoding it again', async () => {
    const json = '{"greeting":"grüß dich","n":[1,2]}';
    const res = await call(fn, fnHeaders('fdk-echo', '/function/{name}', 'POST', { 'Content-Type': 'application/json' }), json);
    expect(res.headers['content-type']).toBe('application/json');
    expect(res.body.toString('utf8')).toBe(json);
  });
});

describe('function failures', () => {
  it('answers Fn-Http-Status 500 with a JSON error and logs the stack when the handler throws', async () => {
    const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'skiff-thrower-'));
    tempDirs.push(dir);
    await fsp.writeFile(path.join(dir, 'index.mjs'), "export default async () => { throw new Error('kaboom in handler'); };\n");
    await fsp.chmod(dir, 0o755);
    await fsp.chmod(path.join(dir, 'index.mjs'), 0o644);
    const fn = await startFunction('thrower', dir);
    try {
      const res = await call(fn, fnHeaders('thrower', '/function/{name}', 'POST', {}), 'x');
      expect(res.statusCode).toBe(200);
      expect(res.headers['fn-http-status']).toBe('500');
      expect(res.headers['content-type']).toBe('application/json');
      expect(JSON.parse(res.body.toString('utf8'))).toEqual({ error: { code: 'FUNCTION_ERROR', message: 'kaboom in handler' } });
      const logs = await waitFor('the stack on stderr', async () => {
        const l = await containerLogs(fn.container);
        return l.stderr.includes('kaboom in handler') ? l : undefined;
      }, 5_000, 20);
      expect(logs.stderr).toMatch(/Error: kaboom in handler\n\s+at /);
    } finally {
      await fn.client.close();
    }
  });

  it('exits 1 with the import error on stderr and opens no listener when the code throws at load', async () => {
    const fn = await startFunction('badload', path.join(FIXTURES, 'badload'), { waitReady: false });
    await fn.client.close();
    const exit = (await fn.container.wait()) as { StatusCode: number };
    expect(exit.StatusCode).toBe(1);
    const logs = await containerLogs(fn.container);
    expect(logs.stderr).toContain('badload: this function fails at import');
    await expect(fsp.stat(fn.socketPath)).rejects.toThrow();
  });
});
