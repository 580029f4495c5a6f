/** Tests read captured output line by line: a reader's blocks of lines, flattened. */
import { capturedText, type Captured, type CapturedLines } from '../../executor/log-capture.ts';
import { decodeLogRows, LogRowEncoder, RowBytes } from '../../bus/index.ts';

export interface CapturedLine {
  stream: CapturedLines['stream'];
  line: string;
  truncated: boolean;
  timeMs: number;
  callId?: string;
}

/** Each line of a block (a frame's bytes decoded), with the block's stream, call, time and truncation mark. */
export function eachLine(captured: Captured): CapturedLine[] {
  const { stream, lines, truncated, timeMs, callId } = capturedText(captured);
  return lines.map((line) => ({ stream, line, truncated, timeMs, callId }));
}

/**
 * The lines a response carried in its head (the Skiff-Log header), read as the executor reads them:
 * the row writer (LogRowEncoder.writeCarriedLines) and the rows decoded back.
 */
export function carriedLines(value: string | string[] | undefined, callId: string, maxLineBytes: number): CapturedLine[] {
  if (value === undefined) return [];
  const rows = new RowBytes();
  new LogRowEncoder('test').writeCarriedLines({ invocationId: callId, function: 'f', containerId: 'c', timeMs: 1, value: Array.isArray(value) ? value.join(', ') : value }, rows, maxLineBytes);
  return decodeLogRows(rows.take()).map(({ stream, line, truncated, timeMs, invocationId }) => ({ stream, line, truncated, timeMs, callId: invocationId }));
}
