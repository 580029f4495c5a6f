/**
 * Captures a container's stdout/stderr as lines. Lines are split on '\n' (a trailing '\r' is
 * dropped) and cut at executor.maxLogLineBytes (marked truncated; the rest of that line is
 * discarded). Attribution to an invocation is the caller's business (see pool/executor): a
 * container serving one call at a time makes it exact.
 */
import type { LogStream } from '../bus/index.ts';
import type { ContainerOutput } from './driver.ts';

export interface CapturedLine {
  stream: LogStream;
  line: string;
  truncated: boolean;
  timeMs: number;
}

const NEWLINE = 0x0a;
const CARRIAGE_RETURN = 0x0d;

/** Backs a cut position off to the start of a UTF-8 character so no character is split. */
function utf8Boundary(buf: Buffer, cut: number): number {
  let i = cut;
  while (i > 0 && i < buf.length && (buf[i] & 0xc0) === 0x80) i--;
  return i;
}

/** Splits a byte stream into bounded lines. */
export class LineSplitter {
  readonly #maxBytes: number;
  readonly #emit: (line: string, truncated: boolean) => void;
  #pending: Buffer[] = [];
  #pendingBytes = 0;
  /** The current line was already emitted truncated; drop bytes until its end. */
  #discarding = false;

  constructor(maxBytes: number, emit: (line: string, truncated: boolean) => void) {
    this.#maxBytes = maxBytes;
    this.#emit = emit;
  }

  push(chunk: Buffer): void {
    let start = 0;
    while (start < chunk.length) {
      const nl = chunk.indexOf(NEWLINE, start);
      const end = nl === -1 ? chunk.length : nl;
      if (!this.#discarding) {
        this.#pending.push(chunk.subarray(start, end));
        this.#pendingBytes += end - start;
        if (this.#pendingBytes > this.#maxBytes) {
          this.#emitPending(true);
          this.#discarding = nl === -1;
        } else if (nl !== -1) {
          this.#emitPending(false);
        }
      } else if (nl !== -1) {
        this.#discarding = false;
      }
      start = end + 1;
    }
  }

  /** Emits a last line without a newline, if any. */
  end(): void {
    if (this.#pendingBytes > 0 && !this.#discarding) this.#emitPending(false);
    this.#pending = [];
    this.#pendingBytes = 0;
    this.#discarding = false;
  }

  #emitPending(truncated: boolean): void {
    let buf = this.#pending.length === 1 ? this.#pending[0] : Buffer.concat(this.#pending, this.#pendingBytes);
    this.#pending = [];
    this.#pendingBytes = 0;
    if (truncated) buf = buf.subarray(0, utf8Boundary(buf, this.#maxBytes));
    else if (buf.length > 0 && buf[buf.length - 1] === CARRIAGE_RETURN) buf = buf.subarray(0, buf.length - 1);
    this.#emit(buf.toString('utf8'), truncated);
  }
}

/** Remembers the last few lines of a container, to explain a failed start. */
export class RecentLines {
  readonly #limit: number;
  readonly #lines: string[] = [];

  constructor(limit: number) {
    this.#limit = limit;
  }

  add(line: string): void {
    this.#lines.push(line);
    if (this.#lines.length > this.#limit) this.#lines.shift();
  }

  toString(): string {
    return this.#lines.join('\n');
  }
}

/**
 * Reads both streams of a container line by line until they end. Resolves when both ended
 * (the container stopped or was removed).
 */
export function captureOutput(output: ContainerOutput, maxLineBytes: number, onLine: (line: CapturedLine) => void): Promise<void> {
  const follow = (stream: LogStream, readable: ContainerOutput['stdout']) =>
    new Promise<void>((resolve) => {
      const splitter = new LineSplitter(maxLineBytes, (line, truncated) => onLine({ stream, line, truncated, timeMs: Date.now() }));
      readable.on('data', (chunk: Buffer) => splitter.push(chunk));
      const done = () => {
        splitter.end();
        resolve();
      };
      readable.once('end', done);
      readable.once('close', done);
      readable.once('error', done);
    });
  return Promise.all([follow('stdout', output.stdout), follow('stderr', output.stderr)]).then(() => undefined);
}
