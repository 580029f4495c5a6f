/**
 * The bootstrap on the host (no Docker): started as the container would start it, with FN_LISTENER
 * in a temporary directory, and called over the unix socket with the Fn http-stream contract.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CallEnds, LogSocket } from '../../executor/log-capture.ts';
import { carriedLines, eachLine, type CapturedLine } from '../executor/captured-lines.ts';
import { BOOTSTRAP_SOURCE, LISTENER_FILE } from '../../executor/runtime/index.ts';

const FIXTURES = fileURLToPath(new URL('../fixtures/functions/', import.meta.url));
const READY_TIMEOUT_MS = 10_000;

interface Bootstrapped {
  child: ChildProcess;
  dir: string;
  socketPath: string;
  client: Client;
  output: { stdout: string; stderr: string };
  exited: Promise<[number | null, NodeJS.Signals | null]>;
}

const started: Bootstrapped[] = [];
let scratch = '';

beforeAll(async () => {
  scratch = await fsp.mkdtemp(path.join(os.tmpdir(), 'skiff-bootstrap-test-'));
});

afterAll(async () => {
  for (const b of started) {
    await b.client.close();
    if (b.child.exitCode === null && b.child.signalCode === null) {
      b.child.kill('SIGKILL');
      await b.exited;
    }
  }
  await fsp.rm(scratch, { recursive: true, force: true });
});

/** Polls `check` (bounded) until it returns true. */
async function until(what: string, check: () => Promise<boolean>, timeoutMs = READY_TIMEOUT_MS): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** Writes `source` as `file` in a new scratch directory named after `prefix`; returns its path. */
async function scratchModule(prefix: string, file: string, source: string): Promise<string> {
  const modulePath = path.join(await fsp.mkdtemp(path.join(scratch, `${prefix}-`)), file);
  await fsp.writeFile(modulePath, source);
  return modulePath;
}

/** `prepare` runs on the iofs directory before the bootstrap starts (e.g. to open a log socket in it). */
async function runBootstrap(handler: string, env: Record<string, string> = {}, waitReady = true, prepare?: (dir: string) => Promise<void>): Promise<Bootstrapped> {
  const dir = await fsp.mkdtemp(path.join(scratch, 'iofs-'));
  await prepare?.(dir);
  const socketPath = path.join(dir, LISTENER_FILE);
  const child = spawn(process.execPath, [BOOTSTRAP_SOURCE], {
    env: {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      FN_LISTENER: `unix:${socketPath}`,
      FN_FORMAT: 'http-stream',
      SKIFF_HANDLER: handler,
      SKIFF_FUNCTION_NAME: 'shapes',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const output = { stdout: '', stderr: '' };
  child.stdout!.on('data', (chunk: Buffer) => (output.stdout += chunk.toString('utf8')));
  child.stderr!.on('data', (chunk: Buffer) => (output.stderr += chunk.toString('utf8')));
  const exited = once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
  const b: Bootstrapped = { child, dir, socketPath, client: new Client('http://localhost', { socketPath }), output, exited };
  started.push(b);
  if (waitReady) {
    await until(`${socketPath}`, async () => {
      if (child.exitCode !== null) throw new Error(`bootstrap exited ${child.exitCode}: ${output.stderr}`);
      return fsp.stat(socketPath).then((s) => s.isSocket(), () => false);
    });
  }
  return b;
}

async function call(b: Bootstrapped, url: string, options: { method?: string; headers?: Record<string, string | string[]>; body?: Buffer | string; deadline?: Date } = {}) {
  const headers: Record<string, string | string[]> = {
    'Fn-Call-Id': 'call-42',
    'Fn-Deadline': (options.deadline ?? new Date(Date.now() + 30_000)).toISOString(),
    'Fn-Http-Method': options.method ?? 'POST',
    'Fn-Http-Request-Url': url,
  };
  for (const [name, value] of Object.entries(options.headers ?? {})) headers[`Fn-Http-H-${name}`] = value;
  const response = await b.client.request({ path: '/call', method: 'POST', headers, body: options.body ?? '' });
  return { statusCode: response.statusCode, headers: response.headers, body: Buffer.from(await response.body.arrayBuffer()) };
}

describe('the bootstrap serving a style (a) function', () => {
  let b: Bootstrapped;
  beforeAll(async () => {
    b = await runBootstrap(path.join(FIXTURES, 'shapes', 'index.mjs'));
  });

  it('publishes the listener as a relative symlink to a world-writable socket in the same directory', async () => {
    const target = await fsp.readlink(b.socketPath);
    expect(path.isAbsolute(target)).toBe(false);
    expect(path.dirname(target)).toBe('.');
    const stat = await fsp.stat(path.join(b.dir, target));
    expect(stat.isSocket()).toBe(true);
    expect(stat.mode & 0o777).toBe(0o666);
  });

  it('builds request and context from the Fn-* headers and the body', async () => {
    const deadline = new Date(Date.now() + 12_345);
    const res = await call(b, '/function/shapes/inspect?a=1&a=2&b=&c=%20x', {
      method: 'patch',
      deadline,
      headers: { 'Content-Type': 'application/json', 'X-Custom': ['one', 'two'], Cookie: ['a=1', 'b=2'] },
      body: Buffer.from([0, 1, 2, 3, 254, 255]),
    });
    expect(res.headers['fn-http-status']).toBe('200');
    expect(JSON.parse(res.body.toString('utf8'))).toEqual({
      request: {
        method: 'PATCH',
        url: '/function/shapes/inspect?a=1&a=2&b=&c=%20x',
        path: '/inspect',
        query: { a: ['1', '2'], b: '', c: ' x' },
        rawQuery: 'a=1&a=2&b=&c=%20x',
        headers: { 'content-type': 'application/json', 'x-custom': 'one, two', cookie: 'a=1; b=2' },
        body: Buffer.from([0, 1, 2, 3, 254, 255]).toString('base64'),
        bodyIsBuffer: true,
      },
      context: { callId: 'call-42', deadline: deadline.toISOString(), deadlineIsDate: true, functionName: 'shapes', hasSignal: true },
    });
  });

  it.each([
    ['/string', 200, 'text/plain; charset=utf-8', Buffer.from('plain text ✓')],
    ['/buffer', 200, 'application/octet-stream', Buffer.from([0, 1, 2, 255])],
    ['/array', 200, 'application/json', Buffer.from('[1,"two",{"three":3}]')],
    ['/null', 204, undefined, Buffer.alloc(0)],
    ['/shape', 201, 'application/json', Buffer.from('{"created":true}')],
    ['/shape-text', 404, 'text/plain; charset=utf-8', Buffer.from('nope')],
    ['/shape-type', 200, 'text/csv', Buffer.from('a,b\n1,2\n')],
    ['/response', 202, 'text/x-custom', Buffer.from('from a Response')],
  ])('maps a %s result to Fn-Http-Status %i with its content type and body', async (route, status, contentType, body) => {
    const res = await call(b, `/function/shapes${route}`);
    expect(res.statusCode).toBe(200);
    expect(res.headers['fn-http-status']).toBe(String(status));
    expect(res.headers['content-type']).toBe(contentType);
    expect(res.headers['fn-http-h-content-type']).toBe(contentType);
    expect(res.body.equals(body)).toBe(true);
  });

  it('passes function headers through as Fn-Http-H-* headers, repeated values included', async () => {
    const shape = await call(b, '/function/shapes/shape');
    expect(shape.headers['fn-http-h-x-multi']).toEqual(['a', 'b']);
    expect(shape.headers['fn-http-h-set-cookie']).toBe('k=v');
    const response = await call(b, '/function/shapes/response');
    expect(response.headers['fn-http-h-x-r']).toBe('1');
  });

  it('answers Fn-Http-Status 500 with a JSON error for an invalid status and logs why', async () => {
    const res = await call(b, '/function/shapes/bad-status');
    expect(res.headers['fn-http-status']).toBe('500');
    expect(JSON.parse(res.body.toString('utf8'))).toEqual({ error: { code: 'FUNCTION_ERROR', message: 'the function returned an invalid HTTP status: 42' } });
    await until('the error on stderr', async () => b.output.stderr.includes('invalid HTTP status: 42'));
  });

  it('aborts context.signal when the deadline passes', async () => {
    const res = await call(b, '/function/shapes/abort', { deadline: new Date(Date.now() + 150) });
    expect(res.headers['fn-http-status']).toBe('200');
    expect(res.body.toString('utf8')).toBe('aborted');
  });

  it('a context.signal first read after the deadline is already aborted, with why', async () => {
    const res = await call(b, '/function/shapes/abort-late?waitMs=120', { deadline: new Date(Date.now() + 40) });
    expect(res.body.toString('utf8')).toBe('true: deadline exceeded');
    const inTime = await call(b, '/function/shapes/abort-late?waitMs=0', { deadline: new Date(Date.now() + 30_000) });
    expect(inTime.body.toString('utf8')).toBe('false: undefined');
  });

  it.each(['early', 'late'])('aborts context.signal read %s when the executor drops the call', async (read) => {
    const dropped = new AbortController();
    const pending = b.client.request({
      path: '/call',
      method: 'POST',
      headers: { 'Fn-Call-Id': `drop-${read}`, 'Fn-Deadline': new Date(Date.now() + 30_000).toISOString(), 'Fn-Http-Method': 'POST', 'Fn-Http-Request-Url': `/function/shapes/abort-dropped?waitMs=300&read=${read}` },
      body: '',
      signal: dropped.signal,
    });
    setTimeout(() => dropped.abort(), 100);
    await expect(pending).rejects.toThrow();
    await until(`the ${read} signal's report on stderr`, async () => b.output.stderr.includes(`signal read ${read}: true true call connection closed`));
  });

  it('exits 0 on SIGTERM', async () => {
    const other = await runBootstrap(path.join(FIXTURES, 'shapes', 'index.mjs'));
    other.child.kill('SIGTERM');
    expect(await other.exited).toEqual([0, null]);
  });
});

describe('the bootstrap loading modules', () => {
  it.each([
    ['module.exports = function', 'index.cjs', "module.exports = async () => 'cjs function';", 'cjs function'],
    ['exports.default (transpiled)', 'index.cjs', "Object.defineProperty(exports, '__esModule', { value: true }); exports.default = async () => 'cjs default';", 'cjs default'],
    ['export default', 'index.mjs', "export default async () => 'esm default';", 'esm default'],
    ['export const handler', 'index.mjs', "export const handler = async () => 'esm handler';", 'esm handler'],
  ])('serves a handler exported as %s', async (_label, file, source, expected) => {
    const b = await runBootstrap(await scratchModule('module', file, source));
    const res = await call(b, '/function/shapes');
    expect(res.body.toString('utf8')).toBe(expected);
  });

  it('leaves the listener to a program that loaded @fnproject/fdk even when it exports fdk.handle\'s closer', async () => {
    const fdk = fileURLToPath(new URL('../../examples/fdk-echo/node_modules/@fnproject/fdk/fn-fdk.js', import.meta.url));
    const b = await runBootstrap(await scratchModule('fdk', 'func.cjs', `const fdk = require(${JSON.stringify(fdk)});\nmodule.exports = fdk.handle(async () => 'from fdk');\n`));
    const res = await call(b, '/function/shapes');
    expect(res.headers['fn-fdk-version']).toMatch(/^fdk-node\//);
    expect(JSON.parse(res.body.toString('utf8'))).toBe('from fdk');
  });

  it('prints the import error and exits 1 when the module throws at load', async () => {
    const b = await runBootstrap(path.join(FIXTURES, 'badload', 'index.mjs'), {}, false);
    const [code] = await b.exited;
    expect(code).toBe(1);
    expect(b.output.stderr).toContain('Error: badload: this function fails at import');
  });

  it('exits 1 naming FN_LISTENER when it is not a unix socket', async () => {
    const b = await runBootstrap(path.join(FIXTURES, 'shapes', 'index.mjs'), { FN_LISTENER: 'tcp://127.0.0.1:1' }, false);
    const [code] = await b.exited;
    expect(code).toBe(1);
    expect(b.output.stderr).toContain('FN_LISTENER must be unix:<socket path>');
  });
});

describe('the bootstrap as a stem cell', () => {
  /** A stem cell (no function yet) and a client on the socket it published as stem.sock. */
  async function stemCell(): Promise<{ b: Bootstrapped; stem: Client; stemLink: string; stemSocket: string }> {
    const b = await runBootstrap('', { SKIFF_STEMCELL: '1' }, false);
    const stemLink = path.join(b.dir, 'stem.sock');
    await until('stem.sock', async () => {
      if (b.child.exitCode !== null) throw new Error(`bootstrap exited ${b.child.exitCode}: ${b.output.stderr}`);
      return fsp.stat(stemLink).then((st) => st.isSocket(), () => false);
    });
    const stemSocket = path.join(b.dir, await fsp.readlink(stemLink));
    return { b, stem: new Client('http://localhost', { socketPath: stemSocket }), stemLink, stemSocket };
  }

  async function specialize(stem: Client, handler: string, env: Record<string, string> = {}) {
    const body = JSON.stringify({ functionName: 'shapes', handler, cwd: path.dirname(handler), env });
    const res = await stem.request({ path: '/specialize', method: 'POST', headers: { 'content-type': 'application/json' }, body });
    return { statusCode: res.statusCode, body: JSON.parse(await res.body.text()) as Record<string, unknown> };
  }

  it('answers GET /ready, specializes on the same connection, serves calls on it, then swaps stem.sock for lsnr.sock', async () => {
    const { b, stem, stemLink, stemSocket } = await stemCell();
    const connections: number[] = [];
    stem.on('connect', () => connections.push(Date.now()));
    const ready = await stem.request({ path: '/ready', method: 'GET' });
    expect([ready.statusCode, await ready.body.json()]).toEqual([200, { stemCell: true }]);
    expect(await specialize(stem, path.join(FIXTURES, 'shapes', 'index.mjs'))).toEqual({ statusCode: 200, body: { style: 'served' } });
    const res = await stem.request({
      path: '/call',
      method: 'POST',
      headers: { 'Fn-Call-Id': 'stem-1', 'Fn-Deadline': new Date(Date.now() + 30_000).toISOString(), 'Fn-Http-Request-Url': '/function/shapes/string' },
      body: '',
    });
    expect(res.headers['fn-http-status']).toBe('200');
    expect(await res.body.text()).toBe('plain text ✓');
    expect(connections).toHaveLength(1);
    await until('lsnr.sock', async () => fsp.stat(b.socketPath).then((st) => st.isSocket(), () => false));
    // The function's listener is the socket the stem cell served from the start.
    expect(path.join(b.dir, await fsp.readlink(b.socketPath))).toBe(stemSocket);
    await expect(fsp.lstat(stemLink)).rejects.toMatchObject({ code: 'ENOENT' });
    await stem.close();
  });

  it('refuses anything but GET /ready and POST /specialize before it specializes', async () => {
    const { stem } = await stemCell();
    const res = await stem.request({ path: '/call', method: 'POST', body: 'too early' });
    expect(res.statusCode).toBe(400);
    expect(await res.body.json()).toMatchObject({ error: { code: 'BAD_REQUEST' } });
    await stem.close();
  });

  it('answers 500 with the load error and exits 1 when the function cannot load', async () => {
    const { b, stem } = await stemCell();
    const res = await specialize(stem, path.join(FIXTURES, 'badload', 'index.mjs'));
    expect(res.statusCode).toBe(500);
    expect(res.body).toMatchObject({ error: { code: 'FUNCTION_START_FAILED' } });
    expect(String((res.body.error as { message: string }).message)).toContain('badload: this function fails at import');
    const [code] = await b.exited;
    expect(code).toBe(1);
    await stem.close();
  });
});

describe('the error-test fixtures', () => {
  it('crash exits with code 3 on a call without answering', async () => {
    const b = await runBootstrap(path.join(FIXTURES, 'crash', 'index.mjs'));
    await expect(call(b, '/function/crash')).rejects.toThrow();
    expect(await b.exited).toEqual([3, null]);
  });

  it('slow answers after the ?ms= delay', async () => {
    const b = await runBootstrap(path.join(FIXTURES, 'slow', 'index.mjs'));
    const res = await call(b, '/function/slow?ms=20');
    expect(res.body.toString('utf8')).toBe('slept 20 ms');
  });

  it('garbage opens the listener itself and answers bytes that are not HTTP', async () => {
    const b = await runBootstrap(path.join(FIXTURES, 'garbage', 'index.mjs'));
    await expect(call(b, '/function/garbage')).rejects.toThrow();
  });

  it('logger prints ?n= lines to stdout and one to stderr, then answers ok', async () => {
    const b = await runBootstrap(path.join(FIXTURES, 'logger', 'index.mjs'));
    const res = await call(b, '/function/logger?n=3');
    expect(res.body.toString('utf8')).toBe('ok');
    await until('the log lines', async () => b.output.stdout.split('\n').filter(Boolean).length === 3 && b.output.stderr.includes('logger stderr'));
    expect(b.output.stdout).toBe('logger stdout 1/3 call=call-42\nlogger stdout 2/3 call=call-42\nlogger stdout 3/3 call=call-42\n');
    expect(b.output.stderr).toBe('logger stderr call=call-42\n');
  });
});

describe('the bootstrap sending output over the executor log socket', () => {
  const sockets: LogSocket[] = [];
  afterAll(() => {
    for (const socket of sockets) socket.close();
  });

  /**
   * Starts the bootstrap with a LogSocket listening in its iofs directory, as the executor does.
   * `lines`: what the socket read, and what each response made with `callLogged` carried in its
   * head (Skiff-Log), as the executor reads both.
   */
  async function withLogSocket(handler: string, env: Record<string, string> = {}): Promise<{ b: Bootstrapped; lines: CapturedLine[]; callLogged: typeof call }> {
    const lines: CapturedLine[] = [];
    const b = await runBootstrap(handler, env, true, async (dir) => {
      sockets.push(await LogSocket.open(dir, 64, (captured) => lines.push(...eachLine(captured))));
    });
    const callLogged: typeof call = async (target, url, options) => {
      const res = await call(target, url, options);
      lines.push(...carriedLines(res.headers['skiff-log'], 'call-42', 64));
      return res;
    };
    return { b, lines, callLogged };
  }

  /** CallEnds that also records each call-end frame read, as `end <call id>`, into `read`. */
  function recordingCallEnds(read: string[]): CallEnds {
    return new (class extends CallEnds {
      override ended(callId: string): void {
        read.push(`end ${callId}`);
        super.ended(callId);
      }
    })();
  }

  const simple = (lines: CapturedLine[]) => lines.map(({ stream, line, truncated, callId }) => ({ stream, line, truncated, callId }));

  it('tags every line a call prints with its call id and prints nothing to stdout or stderr', async () => {
    const { b, lines, callLogged } = await withLogSocket(path.join(FIXTURES, 'logger', 'index.mjs'));
    const res = await callLogged(b, '/function/logger?n=2');
    expect(res.body.toString()).toBe('ok');
    await until('the logger lines', async () => lines.length === 3);
    expect(simple(lines)).toEqual([
      { stream: 'stdout', line: 'logger stdout 1/2 call=call-42', truncated: false, callId: 'call-42' },
      { stream: 'stdout', line: 'logger stdout 2/2 call=call-42', truncated: false, callId: 'call-42' },
      { stream: 'stderr', line: 'logger stderr call=call-42', truncated: false, callId: 'call-42' },
    ]);
    expect(b.output).toEqual({ stdout: '', stderr: '' });
  });

  it('sends lines printed at module load and by timers after the response with no call id, ends a call\'s partial line, and cuts long lines', async () => {
    const handler = await scratchModule(
      'outside',
      'index.mjs',
      [
        "console.log('loaded at module level');",
        'export default async function outside(request, context) {',
        '  console.log(`in call ${context.callId}`);',
        "  process.stdout.write(Buffer.from('partial line without newline'), () => {});",
        "  console.error('x'.repeat(100));",
        '  setTimeout(() => console.log(`timer after ${context.callId}`), 20);',
        "  return 'ok';",
        '}',
        '',
      ].join('\n'),
    );
    const { b, lines } = await withLogSocket(handler);
    expect((await call(b, '/function/outside')).body.toString()).toBe('ok');
    await until('the timer line', async () => lines.some((l) => l.line.startsWith('timer after')));
    expect(simple(lines)).toEqual([
      { stream: 'stdout', line: 'loaded at module level', truncated: false, callId: '' },
      { stream: 'stdout', line: 'in call call-42', truncated: false, callId: 'call-42' },
      { stream: 'stderr', line: 'x'.repeat(64), truncated: true, callId: 'call-42' },
      // Ended when the response was over: the call-end frame flushes it.
      { stream: 'stdout', line: 'partial line without newline', truncated: false, callId: 'call-42' },
      { stream: 'stdout', line: 'timer after call-42', truncated: false, callId: '' },
    ]);
    expect(b.output).toEqual({ stdout: '', stderr: '' });
  });

  it('carries the lines of a call that prints before answering in its response head, for a handler and an fdk program: nothing on the socket, no call-end frame; a silent call carries none', async () => {
    for (const [handler, url, expected] of [
      [path.join(FIXTURES, 'logger', 'index.mjs'), '/function/logger?n=2', ['stdout logger stdout 1/2 call=call-42', 'stdout logger stdout 2/2 call=call-42', 'stderr logger stderr call=call-42']],
      [fileURLToPath(new URL('../../examples/fdk-echo/func.js', import.meta.url)), '/function/fdk-echo', ['stdout fdk-echo 0 bytes']],
      [path.join(FIXTURES, 'shapes', 'index.mjs'), '/function/shapes/string', []],
    ] as const) {
      const read: string[] = [];
      const b = await runBootstrap(handler, {}, true, async (dir) => {
        sockets.push(await LogSocket.open(dir, 64, (captured) => read.push(...eachLine(captured).map((l) => `line ${l.callId}`)), recordingCallEnds(read)));
      });
      for (let i = 0; i < 2; i++) {
        const res = await call(b, url);
        expect(res.statusCode).toBe(200);
        expect(res.headers).not.toHaveProperty('skiff-log-end');
        if (expected.length === 0) expect(res.headers).not.toHaveProperty('skiff-log');
        expect(carriedLines(res.headers['skiff-log'], 'call-42', 64).map((l) => `${l.stream} ${l.line}`)).toEqual(expected);
      }
      // A line printed outside any call would still take the socket: the socket is live, and read nothing.
      await new Promise((resolve) => setTimeout(resolve, 50));
      expect(read).toEqual([]);
      expect(b.output).toEqual({ stdout: '', stderr: '' });
    }
  });

  it('sends the lines of a call still running when its turn ends over the socket, in order, marks its response (Skiff-Log-End) and sends its call-end frame after them', async () => {
    const handler = await scratchModule(
      'later',
      'index.mjs',
      [
        'export default async function later(request, context) {',
        '  console.log(`before the wait ${context.callId}`);',
        '  await new Promise((resolve) => setTimeout(resolve, 5));',
        '  console.log(`after the wait ${context.callId}`);',
        "  return 'ok';",
        '}',
        '',
      ].join('\n'),
    );
    const read: string[] = [];
    const callEnds = recordingCallEnds(read);
    const b = await runBootstrap(handler, {}, true, async (dir) => {
      sockets.push(await LogSocket.open(dir, 64, (captured) => read.push(...eachLine(captured).map((l) => `${l.callId} ${l.line}`)), callEnds));
    });
    for (let i = 0; i < 2; i++) {
      const res = await call(b, '/function/later');
      expect(res.headers['skiff-log-end']).toBe('1');
      expect(res.headers).not.toHaveProperty('skiff-log');
    }
    await until('both calls\' call-end frames', async () => read.filter((r) => r.startsWith('end')).length === 2);
    const oneCall = ['call-42 before the wait call-42', 'call-42 after the wait call-42', 'end call-42'];
    expect(read).toEqual([...oneCall, ...oneCall]);
    // The RESULT of each would not wait: its frame was in.
    expect(callEnds.wait('call-42', 10_000)).toBeUndefined();
  });

  it('carries lines with tabs, backslashes, non-ASCII text and newlines exactly; a line with a control character, a write that is not whole lines, and lines past the head\'s budget send the call\'s lines over the socket, in order', async () => {
    const handler = await scratchModule(
      'tricky',
      'index.mjs',
      [
        'export default async function tricky(request) {',
        "  const kind = new URL(request.url, 'http://x').searchParams.get('kind');",
        "  console.log('plain');",
        "  if (kind === 'text') { console.log('tab\\there, back\\\\slash, ünïcödé ☃ 😀, trailing  '); console.error('two\\nlines'); }",
        "  if (kind === 'control') console.log('bell\\u0007');",
        "  if (kind === 'partial') process.stdout.write('no newline');",
        "  if (kind === 'budget') for (let i = 0; i < 200; i++) console.log(`line ${i} `.padEnd(60, '.'));",
        "  return 'ok';",
        '}',
        '',
      ].join('\n'),
    );
    const { b, lines, callLogged } = await withLogSocket(handler);
    const res = await callLogged(b, '/function/tricky?kind=text');
    expect(res.headers['skiff-log']).toBeDefined();
    expect(lines.map((l) => `${l.stream} ${l.line}`)).toEqual(['stdout plain', 'stdout tab\there, back\\slash, ünïcödé ☃ 😀, trailing  ', 'stderr two', 'stderr lines']);
    for (const [kind, expected] of [
      ['control', ['plain', 'bell\u0007']],
      ['partial', ['plain', 'no newline']],
      ['budget', ['plain', ...Array.from({ length: 200 }, (_, i) => `line ${i} `.padEnd(60, '.'))]],
    ] as const) {
      lines.length = 0;
      const res = await callLogged(b, `/function/tricky?kind=${kind}`);
      expect(res.headers, kind).not.toHaveProperty('skiff-log');
      await until(`the ${kind} call's lines`, async () => lines.length === expected.length);
      expect(lines.map((l) => l.line), kind).toEqual(expected);
    }
  });

  it('carries a call\'s lines in every way a program writes its response head, once, keeping its own headers', async () => {
    const program = await scratchModule(
      'heads',
      'index.mjs',
      [
        "import fs from 'node:fs';",
        "import http from 'node:http';",
        "import path from 'node:path';",
        "const listenFile = process.env.FN_LISTENER.slice('unix:'.length);",
        "const socketFile = path.join(path.dirname(listenFile), 'heads.sock');",
        'const server = http.createServer((req, res) => {',
        "  const form = new URL(req.headers['fn-http-request-url'], 'http://x').pathname.split('/').pop();",
        "  if (form !== 'silent') console.log(`head ${form}`);",
        "  if (form === 'object' || form === 'silent') res.writeHead(200, { 'x-form': form });",
        "  else if (form === 'reason') res.writeHead(200, 'Fine', { 'x-form': form });",
        "  else if (form === 'flat') res.writeHead(200, ['x-form', form]);",
        "  else if (form === 'pairs') res.writeHead(200, [['x-form', form]]);",
        "  else if (form === 'set') { res.setHeader('x-form', form); res.writeHead(200); }",
        "  else res.setHeader('x-form', form); // implicit: end() writes the head",
        "  res.end('ok');",
        '});',
        'server.listen(socketFile, () => {',
        '  fs.chmodSync(socketFile, 0o666);',
        "  fs.symlinkSync('heads.sock', listenFile);",
        '});',
        '',
      ].join('\n'),
    );
    const { b, lines, callLogged } = await withLogSocket(program);
    for (const form of ['object', 'reason', 'flat', 'pairs', 'set', 'implicit', 'silent']) {
      const res = await callLogged(b, `/function/heads/${form}`);
      expect(res.statusCode, form).toBe(200);
      expect(res.headers['x-form'], form).toBe(form);
      expect(res.headers['skiff-log'] === undefined, form).toBe(form === 'silent');
    }
    await until('the programs\' lines', async () => lines.length === 6);
    expect(lines.map((l) => `${l.callId} ${l.line}`)).toEqual(['object', 'reason', 'flat', 'pairs', 'set', 'implicit'].map((form) => `call-42 head ${form}`));
  });

  it('tags the lines of an unchanged @fnproject/fdk program with the call id', async () => {
    const { b, lines, callLogged } = await withLogSocket(fileURLToPath(new URL('../../examples/fdk-echo/func.js', import.meta.url)));
    const res = await callLogged(b, '/function/fdk-echo', { body: 'seven b' });
    expect(res.body.toString()).toBe('seven b');
    await until('the fdk-echo line', async () => lines.length > 0);
    expect(simple(lines)).toEqual([{ stream: 'stdout', line: 'fdk-echo 7 bytes', truncated: false, callId: 'call-42' }]);
    expect(b.output.stdout).toBe('');
  });

  it('sends a long synchronous burst whole and in order', async () => {
    const { b, lines } = await withLogSocket(path.join(FIXTURES, 'logger', 'index.mjs'));
    // 5,000 lines (~200 KB) in one synchronous run, over LOG_BATCH_MAX_BYTES: sent while the run goes on.
    await call(b, '/function/logger?n=5000');
    await until('5001 lines', async () => lines.length === 5001);
    expect(lines.slice(0, 5000).map((l) => l.line)).toEqual(Array.from({ length: 5000 }, (_, i) => `logger stdout ${i + 1}/5000 call=call-42`));
    expect(lines.every((l) => l.callId === 'call-42')).toBe(true);
    expect(b.output.stdout).toBe('');
  });

  it('goes back to stdout when the log socket closes', async () => {
    const { b, lines, callLogged } = await withLogSocket(path.join(FIXTURES, 'logger', 'index.mjs'));
    await callLogged(b, '/function/logger?n=1');
    await until('the first call\'s lines', async () => lines.length === 2);
    // The executor ends the connection (a container being removed); the bootstrap sees it soon.
    sockets.at(-1)!.close();
    await until('stdout', async () => {
      await call(b, '/function/logger?n=1');
      return b.output.stdout.includes('logger stdout 1/1 call=call-42');
    });
    const before = { socket: lines.length, stdout: b.output.stdout.length };
    await callLogged(b, '/function/logger?n=1');
    await until('the next call on stdout', async () => b.output.stdout.length > before.stdout);
    expect(b.output.stdout.slice(before.stdout)).toBe('logger stdout 1/1 call=call-42\n');
    expect(lines.length).toBe(before.socket);
  });
});
