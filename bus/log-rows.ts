/**
 * The body of a LOGS message: log lines as rows ready for storage, in ClickHouse's TabSeparated
 * format with the columns LOG_ROW_COLUMNS names (the `logs` table's, in its order). The executor
 * writes each row once, as the line is read; the gateway's storage appends the body to its batch
 * as it is, with no per-line work: no decoding, re-encoding or JS object per line on the gateway,
 * which also runs the embedded ClickHouse. Each row carries its own identity (`line_id`, from the
 * writing executor's id prefix and a counter), so a retried or replayed batch dedups on it.
 * Hot path: one template string per line; lines read together (one frame's) share their leading
 * fields, and when the reader found none needing escapes, the escaping check too.
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

/** Writes log lines as LOGS body rows; one per executor, so `line_id`s never repeat. */
export class LogRowEncoder {
  readonly #idPrefix: string;
  #seq = 0;
  /** The escaped leading fields of the last row: consecutive lines of one call share them. */
  #lastInvocationId = '';
  #lastFunction = '';
  #lastContainerId = '';
  #lastLead = '\t\t\t';

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
    const time = Number.isFinite(l.timeMs) && l.timeMs > 0 ? Math.trunc(l.timeMs) : 0;
    if (l.invocationId !== this.#lastInvocationId || l.function !== this.#lastFunction || l.containerId !== this.#lastContainerId) {
      this.#lastInvocationId = l.invocationId;
      this.#lastFunction = l.function;
      this.#lastContainerId = l.containerId;
      this.#lastLead = `${tsvField(l.invocationId)}\t${tsvField(l.function)}\t${tsvField(l.containerId)}\t`;
    }
    const lead = `${this.#lastLead}${time}\t`;
    const tail = `\t${l.truncated ? 1 : 0}\n`;
    const stream = `\t${l.stream}\t`;
    let rows = '';
    for (const line of l.lines) {
      const seq = ++this.#seq;
      rows += `${lead}${seq}\t${this.#idPrefix}-${seq.toString(36)}${stream}${l.tsvPlain ? line : tsvField(line)}${tail}`;
    }
    return rows;
  }
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
