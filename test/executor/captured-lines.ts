/** Tests read captured output line by line: a reader's blocks of lines, flattened. */
import type { CapturedLines } from '../../executor/log-capture.ts';

export interface CapturedLine {
  stream: CapturedLines['stream'];
  line: string;
  truncated: boolean;
  timeMs: number;
  callId?: string;
}

/** Each line of a block, with the block's stream, call, time and truncation mark. */
export function eachLine({ stream, lines, truncated, timeMs, callId }: CapturedLines): CapturedLine[] {
  return lines.map((line) => ({ stream, line, truncated, timeMs, callId }));
}
