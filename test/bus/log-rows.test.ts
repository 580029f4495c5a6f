import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { countLogRows, decodeLogRows, LOG_ROW_COLUMNS, LogRowEncoder, RowBytes, type LogLine } from '../../bus/index.ts';
import { tsvField } from '../../tsv.ts';
import { columnNames } from '../../storage/schema.ts';

const line = (overrides: Partial<LogLine> = {}): LogLine => ({
  invocationId: 'call-1', function: 'fn', containerId: 'c-1', timeMs: 1_790_000_000_000, stream: 'stdout', line: 'hello', truncated: false, ...overrides,
});

describe('LOGS body rows', () => {
  it('names the logs table columns in its order', () => {
    expect([...LOG_ROW_COLUMNS]).toEqual(columnNames('logs'));
  });

  it('escapes tabs, newlines, carriage returns and backslashes in every text field', () => {
    expect(tsvField('a\tb\nc\rd\\e')).toBe('a\\tb\\nc\\rd\\\\e');
    expect(tsvField('plain')).toBe('plain');
    const row = new LogRowEncoder('w1').encode(line({ invocationId: 'id\twith tab', line: 'x\\y\tz' }));
    expect(row.split('\t')).toHaveLength(LOG_ROW_COLUMNS.length);
    expect(row.endsWith('\n')).toBe(true);
  });

  it('gives every row its own line id and an increasing seq, and reads back what it wrote', () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.record({
            invocationId: fc.string(),
            function: fc.string(),
            containerId: fc.string(),
            timeMs: fc.integer({ min: 0, max: 2 ** 45 }),
            stream: fc.constantFrom('stdout' as const, 'stderr' as const),
            line: fc.string({ unit: 'binary' }),
            truncated: fc.boolean(),
          }),
          { maxLength: 20 },
        ),
        (lines) => {
          const encoder = new LogRowEncoder('prop');
          const body = Buffer.from(lines.map((l) => encoder.encode(l)).join(''));
          expect(countLogRows(body)).toBe(lines.length);
          const rows = decodeLogRows(body);
          expect(rows.map(({ seq: _seq, lineId: _lineId, ...rest }) => rest)).toEqual(lines);
          expect(rows.map((r) => r.seq)).toEqual(lines.map((_, i) => i + 1));
          expect(new Set(rows.map((r) => r.lineId)).size).toBe(lines.length);
        },
      ),
    );
  });

  it('writes lines read together as the same rows as line by line, plain lines as they are', () => {
    fc.assert(
      fc.property(
        fc.array(fc.string({ unit: 'binary' }), { minLength: 1, maxLength: 12 }),
        fc.string(),
        fc.constantFrom('stdout' as const, 'stderr' as const),
        (texts, invocationId, stream) => {
          const plain = texts.every((t) => !/[\t\n\r\\]/.test(t));
          const block = { invocationId, function: 'fn', containerId: 'c-1', timeMs: 1_790_000_000_000, stream, lines: texts, truncated: false };
          const together = new LogRowEncoder('blk').encodeLines({ ...block, tsvPlain: plain });
          const single = new LogRowEncoder('blk');
          expect(together).toBe(texts.map((text) => single.encode({ ...block, line: text })).join(''));
          expect(decodeLogRows(Buffer.from(together)).map((r) => r.line)).toEqual(texts);
        },
      ),
    );
  });

  it('writes a frame of whole lines from its bytes as the very rows the string path writes for its lines', () => {
    // Lines as a reader splits them: no '\n'; a '\r' just before a newline is dropped, any other is escaped.
    const text = fc.array(fc.oneof(fc.string({ unit: 'binary', maxLength: 30 }), fc.constantFrom('\t', '\\', '\r', 'é🙂', '')), { maxLength: 4 }).map((parts) => Buffer.from(parts.join('')).toString().replaceAll('\n', ' '));
    const frameOf = fc.record({
      invocationId: fc.oneof(fc.string(), fc.constantFrom('call-1', 'tab\there', 'ünï')),
      function: fc.constantFrom('fn', 'f\\n'),
      containerId: fc.constantFrom('c-1', 'c-2'),
      timeMs: fc.oneof(fc.integer({ min: 0, max: 2 ** 45 }), fc.constantFrom(Number.NaN, -5, 1.5, Number.MAX_SAFE_INTEGER, 1e300, Number.POSITIVE_INFINITY)),
      stream: fc.constantFrom('stdout' as const, 'stderr' as const),
      lines: fc.array(text, { minLength: 1, maxLength: 8 }),
      before: fc.constantFrom('', 'junk\n', '\n\n'),
      after: fc.constantFrom('', 'more\n', 'x'),
    });
    fc.assert(
      fc.property(fc.array(frameOf, { minLength: 1, maxLength: 6 }), fc.integer({ min: 1, max: 256 }), (frames, initialCapacity) => {
        const fromStrings = new LogRowEncoder('eq');
        const fromBytes = new LogRowEncoder('eq');
        const out = new RowBytes(initialCapacity);
        let expected = '';
        for (const { lines, before, after, ...source } of frames) {
          const read = lines.map((line) => (line.endsWith('\r') ? line.slice(0, -1) : line));
          expected += fromStrings.encodeLines({ ...source, lines: read, truncated: false, tsvPlain: false });
          const payload = Buffer.from(lines.map((line) => `${line}\n`).join(''));
          const bytes = Buffer.concat([Buffer.from(before), payload, Buffer.from(after)]);
          const rows = fromBytes.writeLineBytes({ ...source, bytes, start: before.length, end: before.length + payload.length }, out);
          expect(rows).toBe(lines.length);
        }
        const body = out.take();
        expect(body.toString()).toBe(expected);
        expect(countLogRows(body)).toBe(frames.reduce((n, f) => n + f.lines.length, 0));
      }),
    );
  });

  it('writes the lines a call carried in its response head (a Skiff-Log value) as the rows the string path writes, cutting lines over the limit', () => {
    // As the bootstrap carries lines: tab and backslash escaped, UTF-8 bytes as latin1, a stream letter each, tabs between, '|' after.
    const carry = (lines: Array<{ stream: 'stdout' | 'stderr'; text: string }>) =>
      `${lines.map(({ stream, text }) => (stream === 'stdout' ? 'o' : 'e') + Buffer.from(text.replace(/[\t\\]/g, (c) => (c === '\t' ? '\\t' : '\\\\'))).toString('latin1')).join('\t')}|`;
    const text = fc.array(fc.oneof(fc.string({ maxLength: 20 }), fc.constantFrom('\t', '\\', '\\t', 'é🙂', ' ', '')), { maxLength: 4 }).map((parts) => Buffer.from(parts.join('')).toString().replace(/[\x00-\x08\x0a-\x1f\x7f]/g, '?'));
    const lineOf = fc.record({ stream: fc.constantFrom('stdout' as const, 'stderr' as const), text });
    fc.assert(
      fc.property(fc.array(lineOf, { minLength: 1, maxLength: 8 }), fc.integer({ min: 1, max: 80 }), (lines, maxLineBytes) => {
        const out = new RowBytes(16);
        const rows = new LogRowEncoder('w').writeCarriedLines({ invocationId: 'call-1', function: 'fn', containerId: 'c-1', timeMs: 1_790_000_000_000, value: carry(lines) }, out, maxLineBytes);
        expect(rows).toBe(lines.length);
        const decoded = decodeLogRows(out.take());
        expect(decoded.map(({ stream, line, truncated, invocationId, function: fn }) => ({ stream, line, truncated, invocationId, fn }))).toEqual(
          lines.map(({ stream, text: whole }) => {
            const bytes = Buffer.from(whole);
            let cut = Math.min(bytes.length, maxLineBytes);
            while (cut > 0 && cut < bytes.length && (bytes[cut] & 0xc0) === 0x80) cut--;
            return { stream, line: bytes.toString('utf8', 0, cut), truncated: bytes.length > maxLineBytes, invocationId: 'call-1', fn: 'fn' };
          }),
        );
        expect(new Set(decoded.map((row) => row.lineId)).size).toBe(lines.length);
      }),
    );
  });

  it('keeps a Skiff-Log value not in that form whole, as one stderr line, and no value can shift a row\'s columns', () => {
    const write = (value: string) => {
      const out = new RowBytes();
      const rows = new LogRowEncoder('w').writeCarriedLines({ invocationId: 'call-1', function: 'fn', containerId: 'c-1', timeMs: 1, value }, out, 1024);
      return { rows, decoded: decodeLogRows(out.take()) };
    };
    for (const value of ['oabc\\|', 'oa\\b|', 'xabc|', 'oabc', 'o\tline|', '|', '', 'o\nx|', 'oĀ|', 'o\u0000|']) {
      const { rows, decoded } = write(value);
      expect(rows, JSON.stringify(value)).toBe(1);
      expect(decoded, JSON.stringify(value)).toHaveLength(1);
      expect(decoded[0].stream).toBe('stderr');
      expect(decoded[0].line).toBe(`malformed Skiff-Log header: ${Buffer.from(value, 'latin1').toString('utf8')}`);
    }
    expect(write('oone\te\\\\two\\t|').decoded.map((row) => `${row.stream} ${row.line}`)).toEqual(['stdout one', 'stderr \\two\t']);
    fc.assert(
      fc.property(fc.oneof(fc.string({ unit: 'binary', maxLength: 60 }), fc.array(fc.constantFrom('o', 'e', '\t', '\\', 't', 'x', '|', 'é', '\n'), { maxLength: 20 }).map((chars) => chars.join(''))), (value) => {
        const { rows, decoded } = write(value);
        expect(decoded).toHaveLength(rows);
        for (const row of decoded) expect(['stdout', 'stderr']).toContain(row.stream);
      }),
    );
  });

  it('refuses an id prefix that could break a row, and a body that does not end its last row', () => {
    expect(() => new LogRowEncoder('a\tb')).toThrow(/id prefix/);
    expect(() => new LogRowEncoder('')).toThrow(/id prefix/);
    expect(() => decodeLogRows(Buffer.from('a\tb'))).toThrow(/newline/);
    expect(() => decodeLogRows(Buffer.from('a\tb\n'))).toThrow(/row 1 has 2 fields/);
  });
});
