/**
 * The body of a LOGS message: log lines as rows ready for storage, in ClickHouse's TabSeparated
 * format with the columns LOG_ROW_COLUMNS names (the `logs` table's, in its order). The executor
 * writes each row once, as the line is read; the gateway's storage appends the body to its batch
 * as it is, with no per-line work: no decoding, re-encoding or JS object per line on the gateway,
 * which also runs the embedded ClickHouse. Each row carries its own identity (`line_id`, from the
 * writing executor's id prefix and a counter), so a retried or replayed batch dedups on it.
 * Hot path: a frame of whole lines (the usual console.log output) is written from its bytes
 * straight into the body (writeLineBytes: no string per line); other lines take one template
 * string each. Lines read together (one frame's) share their leading fields.
 */
import { tsvField, tsvUnescape } from '../tsv.ts';
import type { LogLine, LogStream } from './messages.ts';

/** The columns of a LOGS body's rows, in order: the storage `logs` table's (a test keeps them equal). */
export const LOG_ROW_COLUMNS = ['invocation_id', 'function', 'container_id', 'time_ms', 'seq', 'line_id', 'stream', 'line', 'truncated'] as const;

/** Lines of one invocation and stream read together, e.g. one log frame's. */
export interface LogLines extends Omit<LogLine, 'line'> {
  lines: readonly string[];
  /** No line holds a tab, newline, carriage return or backslash: rows take them as they are. */
  tsvPlain: boolean;
}

/** A decoded row: the line plus its identity and order (`seq` orders lines of the same ms). */
export interface DecodedLogRow extends LogLine {
  seq: number;
  lineId: string;
}

/** Bytes a LOGS body's working buffer starts with room for at least; it grows by doubling. */
const INITIAL_BODY_BYTES = 16 * 1024;
/**
 * A working buffer grown past this (a burst of long lines) is let go when its body is taken: a
 * large buffer kept would count as external memory and bring full GCs sooner.
 */
const MAX_KEPT_BODY_BYTES = 256 * 1024;
/** UTF-8 takes at most 3 bytes per UTF-16 code unit (a surrogate pair: 4 bytes for 2). */
const MAX_UTF8_BYTES_PER_CHAR = 3;

/**
 * A LOGS body being written: rows' text appended as UTF-8 bytes into one working buffer, kept
 * from body to body; take() hands over a copy of just the bytes written (the bus may still hold
 * it while it sends). Bodies are often small (a call's lines, sent ahead of its RESULT): a copy
 * of a few hundred bytes comes from Node's shared pool, where a new working buffer per body would
 * be a fresh external allocation each time.
 */
export class RowBytes {
  readonly #minCapacity: number;
  #bytes: Buffer | undefined;
  #length = 0;

  /** `initialCapacity`: the working buffer's first room. */
  constructor(initialCapacity = INITIAL_BODY_BYTES) {
    this.#minCapacity = Math.max(1, initialCapacity);
  }

  get length(): number {
    return this.#length;
  }

  /** Bytes the working buffer has room for. */
  get capacity(): number {
    return this.#bytes?.length ?? this.#minCapacity;
  }

  append(text: string): void {
    const bytes = this.reserve(text.length * MAX_UTF8_BYTES_PER_CHAR);
    this.#length += bytes.write(text, this.#length, 'utf8');
  }

  /**
   * Room for `extra` more bytes from `length` on: the buffer to write them into (valid until the
   * next reserve). advance() then counts what was written.
   */
  reserve(extra: number): Buffer {
    const needed = this.#length + extra;
    let bytes = this.#bytes;
    if (bytes === undefined || needed > bytes.length) {
      let capacity = bytes?.length ?? this.#minCapacity;
      while (capacity < needed) capacity *= 2;
      const grown = Buffer.allocUnsafe(capacity);
      if (bytes !== undefined) bytes.copy(grown, 0, 0, this.#length);
      this.#bytes = bytes = grown;
    }
    return bytes;
  }

  /** Counts `written` bytes put at `length` into the buffer reserve() returned. */
  advance(written: number): void {
    this.#length += written;
  }

  /** A copy of the bytes written so far; empties the body. */
  take(): Buffer {
    const bytes = this.#bytes;
    if (bytes === undefined || this.#length === 0) return Buffer.alloc(0);
    const body = Buffer.allocUnsafe(this.#length);
    bytes.copy(body, 0, 0, this.#length);
    this.#length = 0;
    if (bytes.length > MAX_KEPT_BODY_BYTES) this.#bytes = undefined;
    return body;
  }
}

/**
 * Whole lines as a container wrote them, not decoded: `bytes[start, end)` is valid UTF-8 of one
 * or more lines, each ending in '\n' (a '\r' before it is dropped, as a line splitter would) and
 * none longer than the executor's line limit (the reader checked; a longer one is cut on the
 * string path, marked truncated).
 */
export interface LogLineBytes extends Omit<LogLine, 'line' | 'truncated'> {
  bytes: Uint8Array;
  start: number;
  end: number;
}

/**
 * A call's lines as its container carried them in its response head (the Skiff-Log header,
 * executor/runtime/bootstrap: LOG_LINES_HEADER): `value` is each line as a stream letter ('o'
 * stdout, 'e' stderr) and its text as a TabSeparated field (tab and backslash escaped) in UTF-8
 * bytes (a latin1 string: a header value as parsed), lines joined by tabs, the whole ended by '|'.
 */
export interface CarriedLogLines extends Omit<LogLine, 'line' | 'truncated' | 'stream'> {
  value: string;
}

const TAB = 0x09;
const NEWLINE = 0x0a;
const CARRIAGE_RETURN = 0x0d;
const BACKSLASH = 0x5c;
const LETTER_T = 0x74;
const LETTER_R = 0x72;
const DIGIT_0 = 0x30;
/**
 * A row's bytes besides its line, leading ids and line id prefix, at most: time and seq (16 digits
 * each), the seq in base 36 (11), stream (6), truncated (1), seven tabs, '-' and the newline.
 */
const MAX_ROW_OVERHEAD_BYTES = 64;

/** Writes `value` (a non-negative integer) in `radix` at bytes[at]; returns where it ends. */
function writeUint(bytes: Uint8Array, at: number, value: number, radix: number): number {
  let digits = 1;
  for (let rest = Math.floor(value / radix); rest > 0; rest = Math.floor(rest / radix)) digits++;
  let rest = value;
  for (let i = at + digits - 1; i >= at; i--) {
    const digit = rest % radix;
    bytes[i] = digit < 10 ? DIGIT_0 + digit : 0x57 + digit; // 0x57 + 10 = 'a'
    rest = Math.floor(rest / radix);
  }
  return at + digits;
}

/** Writes ASCII `text` at bytes[at]; returns where it ends. */
function writeAscii(bytes: Uint8Array, at: number, text: string): number {
  for (let i = 0; i < text.length; i++) bytes[at + i] = text.charCodeAt(i);
  return at + text.length;
}

/** Where in the body a frame's first row wrote its leading fields and time (-1: not yet), for its other rows to copy. */
interface LeadSpan {
  start: number;
  end: number;
}

/** Writes log lines as LOGS body rows; one per executor, so `line_id`s never repeat. */
export class LogRowEncoder {
  readonly #idPrefix: string;
  #seq = 0;
  /** The escaped leading fields of the last row: consecutive lines of one call share them. */
  #lastInvocationId = '';
  #lastFunction = '';
  #lastContainerId = '';
  #lastLead = '\t\t\t';
  /** #lastLead's length in UTF-8 bytes. */
  #lastLeadBytes = 3;

  /** `idPrefix`: unique to this writer across processes and restarts (e.g. random bytes in hex). */
  constructor(idPrefix: string) {
    if (!/^[0-9A-Za-z_]+$/.test(idPrefix)) throw new TypeError(`a log row id prefix must be letters, digits or _ (got ${JSON.stringify(idPrefix)})`);
    this.#idPrefix = idPrefix;
  }

  /** One row, with its newline. */
  encode(l: LogLine): string {
    return this.encodeLines({ ...l, lines: [l.line], tsvPlain: false });
  }

  /**
   * One row per line, each with its newline, in one string. Every text field is escaped, the call
   * id too: a container claims its own call ids, and a tab in one must not shift the row's columns.
   */
  encodeLines(l: LogLines): string {
    const time = rowTime(l.timeMs);
    const lead = `${this.#lead(l)}${time}\t`;
    const tail = `\t${l.truncated ? 1 : 0}\n`;
    const stream = `\t${l.stream}\t`;
    let rows = '';
    for (const line of l.lines) {
      const seq = ++this.#seq;
      rows += `${lead}${seq}\t${this.#idPrefix}-${seq.toString(36)}${stream}${l.tsvPlain ? line : tsvField(line)}${tail}`;
    }
    return rows;
  }

  /**
   * The same rows as encodeLines would write for these lines, written from their bytes straight
   * into `out`: no string per line, nothing for the young generation to collect or copy (the
   * usual case, a frame of console.log output, goes this way). Returns how many rows it wrote.
   */
  writeLineBytes(l: LogLineBytes, out: RowBytes): number {
    const src = l.bytes;
    const lead = this.#lead(l);
    const time = rowTime(l.timeMs);
    let rows = 0;
    const span: LeadSpan = { start: -1, end: -1 };
    for (let at = l.start; at < l.end; ) {
      let lineEnd = src.indexOf(NEWLINE, at);
      if (lineEnd === -1 || lineEnd >= l.end) lineEnd = l.end; // the caller promised a newline: end there anyway
      const next = lineEnd + 1;
      if (lineEnd > at && src[lineEnd - 1] === CARRIAGE_RETURN) lineEnd--;
      // Each byte of the line at most doubles (escaped); the lead is copied or written once.
      const bytes = out.reserve(this.#lastLeadBytes + this.#idPrefix.length + MAX_ROW_OVERHEAD_BYTES + 2 * (lineEnd - at));
      let w = out.length;
      w = this.#writeRowStart(bytes, w, lead, time, l.stream, span);
      for (let i = at; i < lineEnd; i++) {
        const b = src[i];
        if (b === TAB) {
          bytes[w++] = BACKSLASH;
          bytes[w++] = LETTER_T;
        } else if (b === CARRIAGE_RETURN) {
          bytes[w++] = BACKSLASH;
          bytes[w++] = LETTER_R;
        } else if (b === BACKSLASH) {
          bytes[w++] = BACKSLASH;
          bytes[w++] = BACKSLASH;
        } else {
          bytes[w++] = b;
        }
      }
      bytes[w++] = TAB;
      bytes[w++] = DIGIT_0; // not truncated
      bytes[w++] = NEWLINE;
      out.advance(w - out.length);
      rows++;
      at = next;
    }
    return rows;
  }

  /**
   * The rows of a call's carried lines (CarriedLogLines), written into `out` from the header value
   * as it is (it is already TabSeparated). Returns how many rows it wrote. A line over
   * `maxLineBytes` is cut there, marked truncated. A value not in that form (a function can send
   * any header) is kept whole as one stderr line, cut at `maxLineBytes`, so nothing is lost and
   * nothing it holds can shift a row's columns.
   */
  writeCarriedLines(l: CarriedLogLines, out: RowBytes, maxLineBytes: number): number {
    const { value } = l;
    const end = value.length - 1; // the '|'
    if (!isCarriedValue(value)) {
      out.append(this.encodeLines({ ...l, stream: 'stderr', ...cutLine(`malformed Skiff-Log header: ${Buffer.from(value, 'latin1').toString('utf8')}`, maxLineBytes), tsvPlain: false }));
      return 1;
    }
    const lead = this.#lead(l);
    const time = rowTime(l.timeMs);
    let rows = 0;
    const span: LeadSpan = { start: -1, end: -1 };
    for (let at = 0; at < end; ) {
      let lineEnd = value.indexOf('\t', at);
      if (lineEnd === -1 || lineEnd > end) lineEnd = end;
      const stream: LogStream = value.charCodeAt(at) === LETTER_O ? 'stdout' : 'stderr';
      const field = value.slice(at + 1, lineEnd);
      at = lineEnd + 1;
      rows++;
      // Escaped bytes are at least the line's own: only a field over the limit can hold a line that is.
      if (field.length > maxLineBytes) {
        const line = tsvUnescape(Buffer.from(field, 'latin1').toString('utf8'));
        out.append(this.encodeLines({ ...l, stream, ...cutLine(line, maxLineBytes), tsvPlain: false }));
        continue;
      }
      const bytes = out.reserve(this.#lastLeadBytes + this.#idPrefix.length + MAX_ROW_OVERHEAD_BYTES + field.length);
      let w = out.length;
      w = this.#writeRowStart(bytes, w, lead, time, stream, span);
      w += bytes.write(field, w, 'latin1');
      bytes[w++] = TAB;
      bytes[w++] = DIGIT_0; // not truncated
      bytes[w++] = NEWLINE;
      out.advance(w - out.length);
    }
    return rows;
  }

  /**
   * A row's fields before its line, at bytes[w]: the leading fields and time (written for a frame's
   * first row, then copied from where `span` says it went), seq, line id and stream. Returns where the line goes.
   */
  #writeRowStart(bytes: Buffer, w: number, lead: string, time: number, stream: LogStream, span: LeadSpan): number {
    if (span.start === -1) {
      span.start = w;
      w += bytes.write(lead, w, 'utf8');
      w = writeUint(bytes, w, time, 10);
      bytes[w++] = TAB;
      span.end = w;
    } else {
      bytes.copyWithin(w, span.start, span.end);
      w += span.end - span.start;
    }
    const seq = ++this.#seq;
    w = writeUint(bytes, w, seq, 10);
    bytes[w++] = TAB;
    w = writeAscii(bytes, w, this.#idPrefix);
    bytes[w++] = 0x2d; // '-'
    w = writeUint(bytes, w, seq, 36);
    bytes[w++] = TAB;
    w = writeAscii(bytes, w, stream);
    bytes[w++] = TAB;
    return w;
  }

  /** The escaped invocation, function and container fields with their tabs: consecutive lines of one call share them. */
  #lead(l: Pick<LogLine, 'invocationId' | 'function' | 'containerId'>): string {
    if (l.invocationId !== this.#lastInvocationId || l.function !== this.#lastFunction || l.containerId !== this.#lastContainerId) {
      this.#lastInvocationId = l.invocationId;
      this.#lastFunction = l.function;
      this.#lastContainerId = l.containerId;
      this.#lastLead = `${tsvField(l.invocationId)}\t${tsvField(l.function)}\t${tsvField(l.containerId)}\t`;
      this.#lastLeadBytes = Buffer.byteLength(this.#lastLead);
    }
    return this.#lastLead;
  }
}

const LETTER_O = 0x6f;
const LETTER_E = 0x65;
/** Characters no carried value holds: controls but the tab separating lines, and anything past latin1 (not a header byte). */
const NOT_CARRIED = /[\x00-\x08\x0a-\x1f\x7f\u0100-\uffff]/;

/**
 * Whether `value` is in the CarriedLogLines form: ends with '|', each line starts with its stream
 * letter, every backslash starts an escape this format uses (\t or \\), no control characters.
 */
function isCarriedValue(value: string): boolean {
  const end = value.length - 1;
  if (end < 1 || value.charCodeAt(end) !== 0x7c || NOT_CARRIED.test(value)) return false;
  for (let at = 0; at <= end; ) {
    const letter = value.charCodeAt(at);
    if (letter !== LETTER_O && letter !== LETTER_E) return false;
    const next = value.indexOf('\t', at);
    at = next === -1 ? end + 1 : next + 1;
  }
  for (let at = value.indexOf('\\'); at !== -1; at = value.indexOf('\\', at + 2)) {
    const escaped = value.charCodeAt(at + 1);
    if (escaped !== LETTER_T && escaped !== BACKSLASH) return false;
  }
  return true;
}

/** Backs a cut position off to the start of a UTF-8 character so no character is split. */
export function utf8Boundary(buf: Uint8Array, cut: number): number {
  let i = cut;
  while (i > 0 && i < buf.length && (buf[i] & 0xc0) === 0x80) i--;
  return i;
}

/** `line` cut to at most `maxBytes` UTF-8 bytes on a character boundary, with whether it was. */
function cutLine(line: string, maxBytes: number): { lines: string[]; truncated: boolean } {
  const bytes = Buffer.from(line, 'utf8');
  if (bytes.length <= maxBytes) return { lines: [line], truncated: false };
  return { lines: [bytes.toString('utf8', 0, utf8Boundary(bytes, maxBytes))], truncated: true };
}

/** A row's time_ms: whole milliseconds, 0 for a time that is not one (or past 2^53, more digits than a row has room for). */
function rowTime(timeMs: number): number {
  const ms = Math.trunc(timeMs);
  return Number.isSafeInteger(ms) && ms > 0 ? ms : 0;
}

/** The number of rows in a LOGS body: one newline ends each (values have theirs escaped). */
export function countLogRows(body: Uint8Array): number {
  let rows = 0;
  for (let at = body.indexOf(0x0a); at !== -1; at = body.indexOf(0x0a, at + 1)) rows++;
  return rows;
}

/** Reads a LOGS body back (tests, tools): the rows, or a TypeError naming the first malformed one. */
export function decodeLogRows(body: Uint8Array): DecodedLogRow[] {
  const text = Buffer.from(body.buffer, body.byteOffset, body.byteLength).toString('utf8');
  if (text === '') return [];
  if (!text.endsWith('\n')) throw new TypeError('a LOGS body must end with a newline');
  return text
    .slice(0, -1)
    .split('\n')
    .map((line, i) => {
      const f = line.split('\t');
      if (f.length !== LOG_ROW_COLUMNS.length) throw new TypeError(`LOGS row ${i + 1} has ${f.length} fields, not ${LOG_ROW_COLUMNS.length}`);
      return {
        invocationId: tsvUnescape(f[0]),
        function: tsvUnescape(f[1]),
        containerId: tsvUnescape(f[2]),
        timeMs: Number(f[3]),
        seq: Number(f[4]),
        lineId: tsvUnescape(f[5]),
        stream: f[6] as LogStream,
        line: tsvUnescape(f[7]),
        truncated: f[8] === '1',
      };
    });
}
