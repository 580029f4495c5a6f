/**
 * The executor's telemetry batches: LOGS bodies written as bytes (RowBytes) and sent per gateway
 * route, byte for byte what the rows' text is, however a body grows.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decodeLogRows, MessageType, RowBytes, type HeaderOf, type LogLines } from '../../bus/index.ts';
import { TelemetryBatcher, type TelemetryRoute } from '../../executor/telemetry.ts';

/** A route that keeps every LOGS body it is given. */
class RecordingRoute implements TelemetryRoute {
  readonly bodies: Buffer[] = [];
  send<T extends MessageType>(type: T, _header: HeaderOf[T], body?: Buffer): boolean {
    if (type === MessageType.LOGS && body) this.bodies.push(Buffer.from(body)); // a copy, as the bus sends it
    return true;
  }
}

const linesOf = (invocationId: string, lines: string[]): LogLines => ({
  invocationId,
  function: 'fn',
  containerId: 'c1',
  timeMs: 1_700_000_000_000,
  stream: 'stdout',
  lines,
  truncated: false,
  tsvPlain: false,
});

describe('RowBytes', () => {
  it('holds exactly the UTF-8 of what was appended, across growth and takes', () => {
    fc.assert(
      fc.property(
        fc.array(fc.array(fc.string({ unit: 'binary', maxLength: 40 }), { maxLength: 12 }), { minLength: 1, maxLength: 4 }),
        fc.integer({ min: 1, max: 64 }),
        (bodies, initialCapacity) => {
          const rows = new RowBytes(initialCapacity);
          for (const texts of bodies) {
            for (const text of texts) rows.append(text);
            const expected = Buffer.from(texts.join(''), 'utf8');
            expect(rows.length).toBe(expected.length);
            expect(rows.take().equals(expected)).toBe(true);
            expect(rows.length).toBe(0);
          }
        },
      ),
    );
  });

  it('hands over copies and keeps its working buffer from body to body, letting go of one grown past 256 KiB; an empty take is empty', () => {
    const rows = new RowBytes(64);
    expect(rows.take().length).toBe(0);
    rows.append('x'.repeat(1000));
    expect(rows.capacity).toBeGreaterThanOrEqual(3000); // room for the worst case of UTF-8
    const first = rows.take();
    const kept = rows.capacity;
    rows.append('é');
    // The taken body is its own bytes: writing the next one into the kept buffer leaves it as it was.
    expect(first.toString('utf8')).toBe('x'.repeat(1000));
    expect(rows.take().toString('utf8')).toBe('é');
    expect(rows.capacity).toBe(kept);
    rows.append('y'.repeat(100_000)); // room for 300,000 bytes: past the limit
    expect(rows.take().length).toBe(100_000);
    expect(rows.capacity).toBe(64);
  });
});

describe('TelemetryBatcher log lines', () => {
  it('sends each route its own lines, as rows that decode back, on flush', () => {
    const a = new RecordingRoute();
    const b = new RecordingRoute();
    const telemetry = new TelemetryBatcher();
    try {
      telemetry.lines(a, linesOf('inv-a', ['one', 'two\twith tab']));
      telemetry.lines(b, linesOf('inv-b', ['ünïcödé 🙂']));
      telemetry.lines(a, linesOf('inv-a2', ['three']));
      telemetry.flush();
      expect(a.bodies).toHaveLength(1);
      expect(decodeLogRows(a.bodies[0]).map((r) => [r.invocationId, r.line])).toEqual([
        ['inv-a', 'one'],
        ['inv-a', 'two\twith tab'],
        ['inv-a2', 'three'],
      ]);
      expect(decodeLogRows(b.bodies[0]).map((r) => r.line)).toEqual(['ünïcödé 🙂']);
      // Nothing new: nothing sent.
      telemetry.flush();
      expect(a.bodies).toHaveLength(1);
    } finally {
      telemetry.close();
    }
  });

  it('hands one route\'s batched lines over for its RESULT, sends its events ahead, leaves other routes batched, and counts lines a RESULT could not take', () => {
    const a = new RecordingRoute();
    const b = new RecordingRoute();
    const events: string[] = [];
    a.send = <T extends MessageType>(type: T, _header: HeaderOf[T], body?: Buffer) => {
      if (type === MessageType.EVENTS) events.push('events');
      if (type === MessageType.LOGS && body) a.bodies.push(Buffer.from(body));
      return true;
    };
    const telemetry = new TelemetryBatcher();
    try {
      expect(telemetry.takeLines(a)).toBeUndefined();
      telemetry.lines(a, linesOf('inv-a', ['one', 'two']));
      telemetry.lines(b, linesOf('inv-b', ['bee']));
      telemetry.event(a, { timeMs: 1, nodeId: 'n', containerId: 'c1', function: 'fn', version: 1, kind: 'started', detail: '' });
      const taken = telemetry.takeLines(a);
      expect(events).toEqual(['events']);
      expect(taken?.lines).toBe(2);
      expect(decodeLogRows(taken!.body).map((r) => r.line)).toEqual(['one', 'two']);
      // Taken: the next take and the timer's flush find nothing more of a's.
      expect(telemetry.takeLines(a)).toBeUndefined();
      telemetry.flush();
      expect(a.bodies).toHaveLength(0);
      expect(decodeLogRows(b.bodies[0]).map((r) => r.line)).toEqual(['bee']);
      telemetry.refused(taken!.lines);
      expect(telemetry.dropped).toBe(2);
    } finally {
      telemetry.close();
    }
  });

  it('writes frames of whole lines from their bytes into the same body as decoded lines, and counts them towards a full batch', () => {
    const route = new RecordingRoute();
    const telemetry = new TelemetryBatcher();
    const bytesOf = (invocationId: string, text: string) => {
      const bytes = Buffer.from(`ignored\n${text}`);
      return { invocationId, function: 'fn', containerId: 'c1', timeMs: 1_700_000_000_000, stream: 'stdout' as const, bytes, start: 8, end: bytes.length };
    };
    try {
      telemetry.lineBytes(route, bytesOf('inv-1', 'one\ntwo\tthree\r\n'));
      telemetry.lines(route, linesOf('inv-2', ['decoded']));
      telemetry.lineBytes(route, bytesOf('inv-3', 'ünïcödé 🙂\n'));
      telemetry.flush();
      expect(decodeLogRows(route.bodies[0]).map((r) => [r.invocationId, r.line, r.seq])).toEqual([
        ['inv-1', 'one', 1],
        ['inv-1', 'two\tthree', 2],
        ['inv-2', 'decoded', 3],
        ['inv-3', 'ünïcödé 🙂', 4],
      ]);
      // 50 frames of 10 lines: the 500th line sends the batch at once.
      for (let frame = 0; frame < 50; frame++) telemetry.lineBytes(route, bytesOf(`inv-${frame}`, 'x\n'.repeat(10)));
      expect(route.bodies).toHaveLength(2);
      expect(decodeLogRows(route.bodies[1])).toHaveLength(500);
    } finally {
      telemetry.close();
    }
  });

  it('sends a full batch at once, past the first body size, every line intact and none twice', () => {
    const route = new RecordingRoute();
    const telemetry = new TelemetryBatcher();
    try {
      const line = (i: number) => `line ${i} ${'ä'.repeat(40)}`;
      // 60 frames of 10 lines: the 500-line batch leaves at once (~45 KB, over the 16 KB first body).
      for (let frame = 0; frame < 60; frame++) telemetry.lines(route, linesOf(`inv-${frame}`, Array.from({ length: 10 }, (_, i) => line(frame * 10 + i))));
      expect(route.bodies).toHaveLength(1);
      telemetry.flush();
      expect(route.bodies).toHaveLength(2);
      const rows = route.bodies.flatMap((body) => decodeLogRows(body));
      expect(rows.map((r) => r.line)).toEqual(Array.from({ length: 600 }, (_, i) => line(i)));
      expect(new Set(rows.map((r) => r.lineId)).size).toBe(600);
    } finally {
      telemetry.close();
    }
  });
});
