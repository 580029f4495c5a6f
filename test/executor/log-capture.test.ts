import { describe, expect, it } from 'vitest';
import { LineSplitter } from '../../executor/log-capture.ts';

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
