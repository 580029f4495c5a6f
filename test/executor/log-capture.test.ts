/**
 * Log capture: line splitting, the log socket's frames (as the bootstrap writes them), which
 * invocation a line belongs to, and the whole path on real containers (bootstrap → log socket →
 * executor → LOGS) with a fake gateway.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TelemetryRoute } from '../../executor/telemetry.ts';
import { CallEnds, capturedText, LineAttribution, LineSplitter, LogFrameReader, LogSocket, LOG_SOCKET_FILE, RecentLines } from '../../executor/log-capture.ts';
import { eachLine, type CapturedLine } from './captured-lines.ts';
import { ExecutorHarness } from './harness.ts';

function split(chunks: Array<string | Buffer>, maxBytes = 16): Array<[string, boolean]> {
  const out: Array<[string, boolean]> = [];
  const splitter = new LineSplitter(maxBytes, (line, truncated) => out.push([line, truncated]));
  for (const chunk of chunks) splitter.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk));
  splitter.end();
  return out;
}

describe('log line splitting', () => {
  it('splits on newlines across chunks and drops a trailing carriage return', () => {
    expect(split(['one\ntw', 'o\r\nthr', 'ee'])).toEqual([
      ['one', false],
      ['two', false],
      ['three', false],
    ]);
  });

  it('keeps empty lines', () => {
    expect(split(['a\n\nb\n'])).toEqual([
      ['a', false],
      ['', false],
      ['b', false],
    ]);
  });

  it('cuts a line over the limit, marks it truncated and drops the rest of it', () => {
    expect(split(['0123456789', 'abcdefghij', 'KLMNOP\nnext\n'], 10)).toEqual([
      ['0123456789', true],
      ['next', false],
    ]);
  });

  it('never cuts a UTF-8 character in half', () => {
    const [[line, truncated]] = split(['ééééé\n'], 5);
    expect(truncated).toBe(true);
    expect(line).toBe('éé');
  });

  it('accepts a line of exactly the limit', () => {
    expect(split(['abcd', '\n'], 4)).toEqual([['abcd', false]]);
  });
});

const STDOUT = 1;
const STDERR = 2;
const CALL_END = 3;

/** A log socket frame as the bootstrap writes it. */
function frame(kind: number, callId: string, payload: string | Buffer = ''): Buffer {
  const body = Buffer.isBuffer(payload) ? payload : Buffer.from(payload, 'utf8');
  const header = Buffer.alloc(6);
  header.writeUInt32LE(2 + callId.length + body.length, 0);
  header[4] = kind;
  header[5] = callId.length;
  return Buffer.concat([header, Buffer.from(callId, 'latin1'), body]);
}

function read(chunks: Buffer[], maxLineBytes = 64): Array<Omit<CapturedLine, 'timeMs'>> {
  const out: Array<Omit<CapturedLine, 'timeMs'>> = [];
  const reader = new LogFrameReader(maxLineBytes, (captured) => {
    for (const { timeMs: _timeMs, ...line } of eachLine(captured)) out.push(line);
  });
  for (const chunk of chunks) reader.push(chunk);
  reader.end();
  return out;
}

describe('CallEnds', () => {
  it('lets a RESULT go at once when its call-end frame is in, and once only', () => {
    const ends = new CallEnds();
    ends.ended('a');
    expect(ends.wait('a', 10_000)).toBeUndefined();
    // Consumed: a second ask for the same call waits (here until released).
    const again = ends.wait('a', 10_000);
    expect(again).toBeInstanceOf(Promise);
    ends.releaseAll();
    return again;
  });

  it('holds a RESULT until its frame comes, or nothing more can, or its wait is over', async () => {
    const ends = new CallEnds();
    const order: string[] = [];
    const byFrame = ends.wait('a', 10_000)!.then(() => order.push('a'));
    const byClose = ends.wait('b', 10_000)!.then(() => order.push('b'));
    const byTime = ends.wait('c', 5)!.then(() => order.push('c'));
    await new Promise((resolve) => setTimeout(resolve, 1));
    expect(order).toEqual([]);
    ends.ended('a');
    await byFrame;
    expect(order).toEqual(['a']);
    await byTime;
    expect(order).toEqual(['a', 'c']);
    ends.releaseAll();
    await byClose;
    expect(order).toEqual(['a', 'c', 'b']);
    // A frame for a call nobody waits for any more is kept for a later ask, not misapplied.
    ends.ended('a');
    expect(ends.wait('a', 10_000)).toBeUndefined();
  });

  it('keeps at most 1024 unasked frames, forgetting the oldest', () => {
    const ends = new CallEnds();
    for (let i = 0; i <= 1024; i++) ends.ended(`call-${i}`);
    expect(ends.wait('call-1024', 10_000)).toBeUndefined();
    expect(ends.wait('call-1', 10_000)).toBeUndefined();
    const forgotten = ends.wait('call-0', 10_000);
    expect(forgotten).toBeInstanceOf(Promise);
    ends.releaseAll();
    return forgotten;
  });
});

describe('log socket frames', () => {
  const stream = Buffer.concat([
    frame(STDOUT, '', 'loaded\n'),
    frame(STDOUT, 'call-a', 'a one\na tw'),
    frame(STDERR, 'call-b', 'b err\n'),
    frame(STDOUT, 'call-b', 'b out'),
    frame(STDOUT, 'call-a', 'o\n'),
    frame(CALL_END, 'call-b'),
    frame(STDOUT, 'call-a', 'é'.repeat(40) + '\n'),
  ]);
  const expected = [
    { stream: 'stdout', line: 'loaded', truncated: false, callId: '' },
    { stream: 'stdout', line: 'a one', truncated: false, callId: 'call-a' },
    { stream: 'stderr', line: 'b err', truncated: false, callId: 'call-b' },
    { stream: 'stdout', line: 'a two', truncated: false, callId: 'call-a' },
    { stream: 'stdout', line: 'b out', truncated: false, callId: 'call-b' },
    { stream: 'stdout', line: 'é'.repeat(32), truncated: true, callId: 'call-a' },
  ];

  it('keeps the partial lines of each call and stream apart and ends a call\'s at its call-end frame', () => {
    expect(read([stream])).toEqual(expected);
  });

  it('reads the same lines whatever the chunking, down to one byte at a time', () => {
    for (const size of [1, 2, 3, 5, 7, 11, 64]) {
      const chunks: Buffer[] = [];
      for (let at = 0; at < stream.length; at += size) chunks.push(stream.subarray(at, at + size));
      expect(read(chunks)).toEqual(expected);
    }
  });

  it('hands a frame of whole lines over at once as its bytes, and reads any frames the same in one chunk as byte by byte', () => {
    const blocks: Array<{ lines: number; bytes: boolean }> = [];
    const reader = new LogFrameReader(64, (captured) => {
      if ('bytes' in captured) expect(captured.lineCount).toBe(capturedText(captured).lines.length);
      blocks.push({ lines: capturedText(captured).lines.length, bytes: 'bytes' in captured });
    });
    reader.push(Buffer.concat([frame(STDOUT, 'c', 'one\ntwo\nthree\n'), frame(STDERR, 'c', 'tab\there\r\n')]));
    expect(blocks).toEqual([{ lines: 3, bytes: true }, { lines: 1, bytes: true }]);
    // A line over the limit, invalid UTF-8, or a frame that ends mid-line: the line splitter's, line by line.
    blocks.length = 0;
    reader.push(Buffer.concat([frame(STDOUT, 'd', `short\n${'x'.repeat(65)}\n`), frame(STDOUT, 'e', Buffer.from([0x61, 0xff, 0x0a])), frame(STDOUT, 'f', 'a\nb')]));
    expect(blocks).toEqual([{ lines: 1, bytes: false }, { lines: 1, bytes: false }, { lines: 1, bytes: false }, { lines: 1, bytes: false }]);
    const part = fc.oneof(fc.string(), fc.constantFrom('\n', '\r\n', '\t', '\\', 'é', 'x'.repeat(70)));
    const frames = fc.array(
      fc.record({ kind: fc.constantFrom(STDOUT, STDERR, CALL_END), callId: fc.constantFrom('', 'a', 'b'), payload: fc.array(part, { maxLength: 6 }).map((p) => p.join('')) }),
      { maxLength: 12 },
    );
    fc.assert(
      fc.property(frames, (list) => {
        const bytes = Buffer.concat(list.map((f) => frame(f.kind, f.callId, f.kind === CALL_END ? '' : f.payload)));
        const byteByByte = read([...bytes].map((b) => Buffer.from([b])));
        expect(read([bytes])).toEqual(byteByByte);
        const plainBlocks: string[][] = [];
        const whole = new LogFrameReader(64, (captured) => {
          const text = capturedText(captured);
          if (text.tsvPlain) plainBlocks.push(text.lines);
        });
        whole.push(bytes);
        for (const text of plainBlocks.flat()) expect(text).not.toMatch(/[\t\n\r\\]/);
      }),
    );
  });

  it('remembers a container\'s last lines, from frames kept as bytes and decoded only when asked', () => {
    const recent = new RecentLines(3);
    expect(recent.toString()).toBe('');
    const bytes = Buffer.from('skip\none\ntwo\r\n');
    recent.add({ stream: 'stdout', bytes, start: 5, end: bytes.length, lineCount: 2, timeMs: 0, callId: 'c' });
    expect(recent.toString()).toBe('one\ntwo');
    recent.add({ stream: 'stderr', lines: ['three', 'four'], truncated: false, tsvPlain: true, timeMs: 0 });
    expect(recent.toString()).toBe('two\nthree\nfour');
    for (let i = 0; i < 100; i++) {
      const frame = Buffer.from(`a${i}\nb${i}\n`);
      recent.add({ stream: 'stdout', bytes: frame, start: 0, end: frame.length, lineCount: 2, timeMs: 0, callId: '' });
    }
    expect(recent.toString()).toBe('b98\na99\nb99');
  });

  it('emits the partial lines left when the connection ends', () => {
    expect(read([frame(STDOUT, 'c', 'no newline'), frame(STDERR, '', 'neither')])).toEqual([
      { stream: 'stdout', line: 'no newline', truncated: false, callId: 'c' },
      { stream: 'stderr', line: 'neither', truncated: false, callId: '' },
    ]);
  });

  it.each([
    ['an unknown kind', Buffer.from([3, 0, 0, 0, 9, 0, 0x41])],
    ['a length shorter than its call id', Buffer.from([2, 0, 0, 0, 1, 5, 0x41, 0x41, 0x41, 0x41, 0x41])],
  ])('throws on %s', (_what, bad) => {
    expect(() => read([bad])).toThrow(/malformed log frame/);
  });
});

describe('which invocation a line belongs to', () => {
  const route: TelemetryRoute = { send: () => true };
  const other: TelemetryRoute = { send: () => true };

  it('takes the call id the container gives, routed to the gateway of that invocation when this container ran it', () => {
    const attribution = new LineAttribution();
    const a = { id: 'inv-a', route };
    const b = { id: 'inv-b', route: other };
    expect(attribution.resolve('inv-a', a)).toEqual({ invocationId: 'inv-a', route });
    // inv-a ended, inv-b runs now: inv-a's late lines still go to inv-a and its gateway.
    expect(attribution.resolve('inv-a', b)).toEqual({ invocationId: 'inv-a', route });
    // A call this container never ran (its lines stay under this function): the current gateway.
    expect(attribution.resolve('inv-z', b)).toEqual({ invocationId: 'inv-z', route: other });
  });

  it('gives attach lines (no call id) to the invocation running now', () => {
    const attribution = new LineAttribution();
    expect(attribution.resolve(undefined, { id: 'inv-b', route: other })).toEqual({ invocationId: 'inv-b', route: other });
  });

  it('keeps lines printed outside any call with no invocation', () => {
    const attribution = new LineAttribution();
    expect(attribution.resolve('', { id: 'inv-a', route })).toEqual({ invocationId: '', route });
    expect(attribution.resolve('', undefined)).toEqual({ invocationId: '', route: undefined });
    expect(attribution.resolve(undefined, undefined)).toEqual({ invocationId: '', route: undefined });
  });
});

describe('the log socket', () => {
  let dir = '';
  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'skiff-logsock-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  async function connect(file: string): Promise<net.Socket> {
    const socket = net.connect(file);
    await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
    return socket;
  }

  it('reads frames from a world-writable socket in the iofs directory and cuts a connection that sends a malformed one', async () => {
    const lines: CapturedLine[] = [];
    const socket = await LogSocket.open(dir, 4096, (captured) => lines.push(...eachLine(captured)));
    try {
      const { mode } = await import('node:fs/promises').then((fs) => fs.stat(path.join(dir, LOG_SOCKET_FILE)));
      expect(mode & 0o777).toBe(0o666);
      const good = await connect(path.join(dir, LOG_SOCKET_FILE));
      good.write(Buffer.concat([frame(STDOUT, 'c1', 'hello\nwor'), frame(STDOUT, 'c1', 'ld\n')]));
      const bad = await connect(path.join(dir, LOG_SOCKET_FILE));
      const closed = new Promise((resolve) => bad.once('close', resolve));
      bad.on('error', () => {});
      bad.write(Buffer.from([1, 0, 0, 0, 42, 0]));
      await closed;
      await expect.poll(() => lines.map((l) => l.line)).toEqual(['hello', 'world']);
      good.destroy();
    } finally {
      socket.close();
    }
  });
});

describe('output of real containers through the log socket', () => {
  const harness = new ExecutorHarness();
  let functionDir = '';

  beforeAll(async () => {
    functionDir = await mkdtemp(path.join(os.tmpdir(), 'skiff-logfn-'));
    await writeFile(
      path.join(functionDir, 'index.mjs'),
      [
        "console.log('printed at module load');",
        'export default async function printer(request, context) {',
        "  const wait = Number(new URLSearchParams(request.rawQuery).get('wait') || 0);",
        '  console.log(`before ${context.callId}`);',
        '  await new Promise((resolve) => setTimeout(resolve, wait));',
        '  console.error(`after ${context.callId}`);',
        "  if (request.rawQuery.includes('timer')) setTimeout(() => console.log(`timer after the response of ${context.callId}`), 50);",
        "  return 'ok';",
        '}',
        '',
      ].join('\n'),
    );
  });

  afterAll(async () => {
    await harness.close();
    await rm(functionDir, { recursive: true, force: true });
  });

  it('sends lines printed at module load and by a timer after the response with no invocation id, and a call\'s own with its id', async () => {
    const { gateway } = await harness.start({ stemCells: 0, maxStemCells: 0 });
    await gateway.deploy(functionDir, 'printer');
    const result = await gateway.invoke('printer', { query: 'timer=1' });
    expect(result.header.status).toBe(200);
    const id = result.header.id;
    const containerId = result.header.containerId;
    const timerLine = await gateway.waitFor(() => gateway.logs.find((l) => l.line === `timer after the response of ${id}`), 'the timer line');
    // Through Docker's attach stream this line would have gone to the container's latest call.
    expect(timerLine).toMatchObject({ invocationId: '', function: 'printer', containerId, stream: 'stdout' });
    expect(gateway.logs.find((l) => l.line === 'printed at module load')).toMatchObject({ invocationId: '', function: 'printer', containerId });
    expect(gateway.logs.filter((l) => l.invocationId === id).map((l) => [l.stream, l.line])).toEqual([
      ['stdout', `before ${id}`],
      ['stderr', `after ${id}`],
    ]);
  });

  it('prints console methods as Node formats them, group indentation included, ends a partial line with its call, and leaves a replaced process.stdout.write in the way', async () => {
    const shapesDir = await mkdtemp(path.join(os.tmpdir(), 'skiff-consolefn-'));
    try {
      await writeFile(
        path.join(shapesDir, 'index.mjs'),
        [
          'export default async function shapes(request) {',
          "  if (request.rawQuery === 'intercept') {",
          '    const seen = [];',
          '    const write = process.stdout.write;',
          '    process.stdout.write = function (chunk, ...rest) { seen.push(String(chunk)); return write.call(this, chunk, ...rest); };',
          "    console.log('intercepted %d', 1);",
          '    process.stdout.write = write;',
          '    return JSON.stringify(seen);',
          '  }',
          "  console.log('fmt %s=%d', 'n', 42, { a: [1] });",
          "  console.info('info line');",
          "  console.debug('debug line');",
          "  console.warn('warn line');",
          "  console.error(new Error('boom').message);",
          "  console.group('group title');",
          "  console.log('inside\\nsecond line');",
          '  console.groupEnd();',
          "  console.log('after group');",
          "  process.stdout.write('partial line without newline');",
          "  return 'ok';",
          '}',
          '',
        ].join('\n'),
      );
      const { gateway } = await harness.start({ stemCells: 0, maxStemCells: 0 });
      await gateway.deploy(shapesDir, 'console-shapes');
      const shapes = await gateway.invoke('console-shapes');
      expect(shapes.header.status).toBe(200);
      const mine = await gateway.waitFor(() => {
        const found = gateway.logs.filter((l) => l.invocationId === shapes.header.id);
        return found.length === 10 ? found : undefined;
      }, 'the ten lines of the call');
      expect(mine.filter((l) => l.stream === 'stdout').map((l) => l.line)).toEqual([
        'fmt n=42 { a: [ 1 ] }',
        'info line',
        'debug line',
        'group title',
        '  inside',
        '  second line',
        'after group',
        'partial line without newline',
      ]);
      expect(mine.filter((l) => l.stream === 'stderr').map((l) => l.line)).toEqual(['warn line', 'boom']);
      const intercepted = await gateway.invoke('console-shapes', { query: 'intercept' });
      expect(JSON.parse(intercepted.body.toString())).toEqual(['intercepted 1\n']);
      await gateway.waitFor(() => gateway.logs.find((l) => l.invocationId === intercepted.header.id && l.line === 'intercepted 1'), 'the intercepted line');
    } finally {
      await rm(shapesDir, { recursive: true, force: true });
    }
  });

  it('attributes each line to its own call when calls run concurrently in one container', async () => {
    const { gateway } = await harness.start({ stemCells: 0, maxStemCells: 0 });
    await gateway.deploy(functionDir, 'printer-concurrent', { limits: { memoryMB: 128, timeoutMs: 10_000, concurrency: 4 } });
    await gateway.invoke('printer-concurrent'); // one warm container
    const results = await Promise.all([300, 200, 100, 0].map((wait) => gateway.invoke('printer-concurrent', { query: `wait=${wait}` })));
    expect(new Set(results.map((r) => r.header.containerId)).size).toBe(1);
    for (const { header } of results) {
      const lines = await gateway.waitFor(() => {
        const found = gateway.logs.filter((l) => l.invocationId === header.id);
        return found.length === 2 ? found : undefined;
      }, `the lines of ${header.id}`);
      expect(lines.map((l) => l.line)).toEqual([`before ${header.id}`, `after ${header.id}`]);
    }
  });
});
