/** Tests read captured output line by line: a reader's blocks of lines, flattened. */
import { capturedText, type Captured, type CapturedLines } from '../../executor/log-capture.ts';

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
