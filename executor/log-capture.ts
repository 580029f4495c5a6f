/**
 * Captures a container's stdout/stderr as lines. Two ways in:
 * - the log socket (LOG_SOCKET_FILE in the container's iofs directory): the bootstrap sends what
 *   the function writes to process.stdout/stderr as frames tagged with the call they were written
 *   in (see executor/runtime/bootstrap/bootstrap.mjs), so lines skip dockerd and containerd and
 *   their attribution is exact, whatever the concurrency;
 * - Docker's attach stream: whatever reaches fd 1/2 another way (native code, child processes, the
 *   bootstrap's own fallback when the socket is missing or backed up). Those lines go to the
 *   container's current (or latest) invocation, exact only with concurrency 1.
 * Lines are split on '\n' (a trailing '\r' is dropped) and cut at executor.maxLogLineBytes (marked
 * truncated; the rest of that line is discarded). Lines written outside any call (module load,
 * timers firing after the response) are kept with no invocation id.
 * Hot path: the bootstrap sends one frame per run of a call's writes (usually one per call); frames
 * are parsed in place. A frame of whole lines (the usual console.log output) goes out as it is,
 * its bytes not decoded (CapturedLineBytes: storage rows are written from them); anything else
 * goes through the line splitter as bytes come.
 */
import { isUtf8 } from 'node:buffer';
import { chmod } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { utf8Boundary, type LogStream } from '../bus/index.ts';
import type { InvocationRef } from './container.ts';
import type { ContainerOutput } from './driver.ts';
import type { TelemetryRoute } from './telemetry.ts';

/** Lines read together: the complete lines of one frame (the common case), or a single line. */
export interface CapturedLines {
  stream: LogStream;
  /** The lines, in order, without their newlines. */
  lines: string[];
  /** The line was cut at executor.maxLogLineBytes (the rest of it discarded); only ever set on a single line. */
  truncated: boolean;
  /** No line holds a tab or backslash (nor, split on newlines, a newline): each is a TabSeparated field as it is. */
  tsvPlain: boolean;
  timeMs: number;
  /**
   * The call the container says the lines were written in ('' for none: module load, timers after
   * the response); undefined for lines read through Docker's attach stream, which carry no call.
   */
  callId?: string;
}

/**
 * A frame of whole lines from the log socket, not decoded: `bytes[start, end)` is valid UTF-8, each
 * line ends in '\n' and none is over executor.maxLogLineBytes (bus/log-rows.ts LogLineBytes).
 */
export interface CapturedLineBytes {
  stream: LogStream;
  bytes: Buffer;
  start: number;
  end: number;
  /** How many lines (newlines) the bytes hold, counted by the reader as it checked them. */
  lineCount: number;
  timeMs: number;
  /** As CapturedLines.callId (log socket frames always carry one, '' for none). */
  callId: string;
}

/** Lines a reader hands over: decoded, or a frame's bytes as they came. */
export type Captured = CapturedLines | CapturedLineBytes;

/** What a reader hands its lines to. */
export type OnLines = (captured: Captured) => void;

/** Captured lines as text (a frame's bytes decoded, a trailing '\r' dropped from each line as the splitter does). */
export function capturedText(captured: Captured): CapturedLines {
  if (!('bytes' in captured)) return captured;
  const { stream, bytes, start, end, timeMs, callId } = captured;
  const lines = bytes.toString('utf8', start, end - 1).split('\n').map((line) => (line.endsWith('\r') ? line.slice(0, -1) : line));
  return { stream, lines, truncated: false, tsvPlain: !lines.some((line) => TSV_OR_CR.test(line)), timeMs, callId };
}

/** One line the line splitter emitted, read now (its text escaped later, when written as a row). */
function singleLine(stream: LogStream, line: string, truncated: boolean, callId?: string): CapturedLines {
  return { stream, lines: [line], truncated, tsvPlain: false, timeMs: Date.now(), callId };
}

/** The socket, in a container's iofs directory, its bootstrap sends output to (bootstrap.mjs: LOG_SOCKET_FILE). */
export const LOG_SOCKET_FILE = 'log.sock';
/** Frame: u32 LE length of what follows, u8 kind, u8 call id length, call id (latin1), payload. */
const FRAME_HEADER_BYTES = 6;
const FRAME_STDOUT = 1;
const FRAME_STDERR = 2;
/**
 * The call's lines are all sent: end its partial lines, and let its RESULT go (CallEnds). Sent as
 * its response ends for a call that printed, and when the response closes for one that left a
 * partial line.
 */
const FRAME_CALL_END = 3;
/** The log socket is for the container's bootstrap: more connections than this are refused. */
const MAX_LOG_CONNECTIONS = 4;
/**
 * Calls with a partial line kept at once, per connection; beyond it the oldest is ended (its
 * partial line emitted). Bounds what a container can make the executor hold to this many times
 * executor.maxLogLineBytes.
 */
const MAX_OPEN_CALLS = 1024;
/** Call-end frames kept per container for RESULTs that have not asked yet; beyond it the oldest is forgotten. */
const MAX_ENDED_CALLS = 1024;
/** Invocations of a container remembered, to route their late lines to their own gateway. */
const MAX_KNOWN_INVOCATIONS = 256;
/** After close(), how long a container's connection may still deliver what it sent before it is cut. */
const LOG_DRAIN_GRACE_MS = 2_000;

const NEWLINE = 0x0a;
const CARRIAGE_RETURN = 0x0d;
/** Characters a TabSeparated field must escape, besides the newline lines are split on; '\r' also ends a CRLF line. */
const TSV_OR_CR = /[\t\r\\]/;

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

  /** Holds no part of a line: nothing to end. */
  get idle(): boolean {
    return this.#pendingBytes === 0 && !this.#discarding;
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

/**
 * Remembers the last few lines of a container, to explain a failed start or exit. Keeps the last
 * captured blocks as they came and decodes them only when asked: a container taking calls adds
 * a block per call, and its explanation is rarely read.
 */
export class RecentLines {
  readonly #limit: number;
  /** The last blocks, oldest first, and their line counts: without the oldest, fewer than `limit` lines. */
  readonly #blocks: Captured[] = [];
  readonly #counts: number[] = [];
  #lines = 0;

  constructor(limit: number) {
    this.#limit = limit;
  }

  add(captured: Captured): void {
    const count = 'bytes' in captured ? captured.lineCount : captured.lines.length;
    this.#blocks.push(captured);
    this.#counts.push(count);
    this.#lines += count;
    while (this.#blocks.length > 1 && this.#lines - this.#counts[0] >= this.#limit) {
      this.#lines -= this.#counts.shift() as number;
      this.#blocks.shift();
    }
  }

  toString(): string {
    const lines = this.#blocks.flatMap((block) => capturedText(block).lines);
    return lines.slice(Math.max(0, lines.length - this.#limit)).join('\n');
  }
}

/**
 * Reads both streams of a container line by line until they end. Resolves when both ended
 * (the container stopped or was removed).
 */
export function captureOutput(output: ContainerOutput, maxLineBytes: number, onLines: OnLines): Promise<void> {
  const follow = (stream: LogStream, readable: ContainerOutput['stdout']) =>
    new Promise<void>((resolve) => {
      const splitter = new LineSplitter(maxLineBytes, (line, truncated) => onLines(singleLine(stream, line, truncated)));
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

interface CallStreams {
  stdout?: LineSplitter;
  stderr?: LineSplitter;
}

/**
 * Parses the frames of one log socket connection into lines, one splitter per call and stream so
 * partial lines of concurrent calls never mix. A malformed frame throws (the connection is cut).
 */
export class LogFrameReader {
  readonly #maxLineBytes: number;
  readonly #onLines: OnLines;
  readonly #calls = new Map<string, CallStreams>();
  /** Header bytes of a frame split across chunks. */
  readonly #header = Buffer.alloc(FRAME_HEADER_BYTES + 255);
  #headerHave = 0;
  #kind = 0;
  #callId = '';
  /** Payload bytes of the current frame still to come; -1 while reading a header. */
  #remaining = -1;

  readonly #onCallEnd: (callId: string) => void;

  constructor(maxLineBytes: number, onLines: OnLines, onCallEnd: (callId: string) => void = () => {}) {
    this.#maxLineBytes = maxLineBytes;
    this.#onLines = onLines;
    this.#onCallEnd = onCallEnd;
  }

  push(chunk: Buffer): void {
    let at = 0;
    while (at < chunk.length) {
      if (this.#remaining < 0) {
        at = this.#readHeader(chunk, at);
        if (this.#remaining > 0 && at + this.#remaining <= chunk.length && this.#wholeLines(chunk, at, at + this.#remaining)) {
          at += this.#remaining;
          this.#remaining = -1;
          this.#forgetIfIdle();
        }
        continue;
      }
      const take = Math.min(this.#remaining, chunk.length - at);
      this.#splitter().push(chunk.subarray(at, at + take));
      at += take;
      this.#remaining -= take;
      if (this.#remaining === 0) {
        this.#remaining = -1;
        this.#forgetIfIdle();
      }
    }
  }

  /**
   * The fast path, for a frame whose payload is all in this chunk: when it holds only whole lines
   * (it ends with a newline), none over the limit, all valid UTF-8, and its call and stream hold
   * no partial line, its bytes go out as they are (CapturedLineBytes), not decoded. Returns false
   * (nothing done) to leave the frame to the line splitter, which cuts long lines and replaces
   * invalid UTF-8.
   */
  #wholeLines(chunk: Buffer, start: number, end: number): boolean {
    if (this.#kind === 0 || chunk[end - 1] !== NEWLINE) return false;
    const stream: LogStream = this.#kind === FRAME_STDOUT ? 'stdout' : 'stderr';
    const splitter = this.#calls.get(this.#callId)?.[stream];
    if (splitter && !splitter.idle) return false;
    let lineCount = 0;
    for (let at = start; at < end; lineCount++) {
      const nl = chunk.indexOf(NEWLINE, at); // found by end - 1 at the latest
      if (nl - at > this.#maxLineBytes) return false;
      at = nl + 1;
    }
    if (!isUtf8(chunk.subarray(start, end))) return false;
    this.#onLines({ stream, bytes: chunk, start, end, lineCount, timeMs: Date.now(), callId: this.#callId });
    return true;
  }

  /**
   * After a frame: a call whose lines all ended is forgotten at once. The bootstrap sends a
   * call-end frame only for a call it left with an unended line, so this is how most calls go.
   */
  #forgetIfIdle(): void {
    const streams = this.#calls.get(this.#callId);
    if (streams && (streams.stdout?.idle ?? true) && (streams.stderr?.idle ?? true)) this.#calls.delete(this.#callId);
  }

  /** Emits every partial line left (the connection ended). */
  end(): void {
    for (const streams of this.#calls.values()) endStreams(streams);
    this.#calls.clear();
  }

  /** Reads (the rest of) a header from chunk[at..]; returns where reading goes on. */
  #readHeader(chunk: Buffer, at: number): number {
    if (this.#headerHave === 0 && at + FRAME_HEADER_BYTES <= chunk.length) {
      const end = at + FRAME_HEADER_BYTES + chunk[at + 5];
      if (end <= chunk.length) {
        this.#startFrame(chunk, at); // the whole header is in this chunk: no copy
        return end;
      }
    }
    // Split across chunks: gather it (the fixed part, then the call id).
    const want = this.#headerHave < FRAME_HEADER_BYTES ? FRAME_HEADER_BYTES : FRAME_HEADER_BYTES + this.#header[5];
    const take = Math.min(want - this.#headerHave, chunk.length - at);
    chunk.copy(this.#header, this.#headerHave, at, at + take);
    this.#headerHave += take;
    if (this.#headerHave >= FRAME_HEADER_BYTES && this.#headerHave === FRAME_HEADER_BYTES + this.#header[5]) {
      this.#headerHave = 0;
      this.#startFrame(this.#header, 0);
    }
    return at + take;
  }

  #startFrame(header: Buffer, start: number): void {
    const length = header.readUInt32LE(start);
    const kind = header[start + 4];
    const idBytes = header[start + 5];
    if (kind < FRAME_STDOUT || kind > FRAME_CALL_END || length < 2 + idBytes) {
      throw new Error(`malformed log frame (kind ${kind}, length ${length}, call id ${idBytes} bytes)`);
    }
    const idAt = start + FRAME_HEADER_BYTES;
    this.#callId = idBytes === 0 ? '' : header.toString('latin1', idAt, idAt + idBytes);
    this.#kind = kind;
    const payloadBytes = length - 2 - idBytes;
    this.#remaining = payloadBytes === 0 ? -1 : payloadBytes;
    if (kind === FRAME_CALL_END) {
      const streams = this.#calls.get(this.#callId);
      if (streams) {
        this.#calls.delete(this.#callId);
        endStreams(streams);
      }
      this.#kind = 0; // a call-end frame carries no payload: any it claims is skipped
      this.#onCallEnd(this.#callId);
    }
  }

  #splitter(): { push(chunk: Buffer): void } {
    if (this.#kind === 0) return SKIP;
    const stream: LogStream = this.#kind === FRAME_STDOUT ? 'stdout' : 'stderr';
    const callId = this.#callId;
    let streams = this.#calls.get(callId);
    if (!streams) {
      if (this.#calls.size >= MAX_OPEN_CALLS) {
        const [oldestId, oldest] = this.#calls.entries().next().value as [string, CallStreams];
        this.#calls.delete(oldestId);
        endStreams(oldest);
      }
      streams = {};
      this.#calls.set(callId, streams);
    }
    let splitter = streams[stream];
    if (!splitter) {
      splitter = new LineSplitter(this.#maxLineBytes, (line, truncated) => this.#onLines(singleLine(stream, line, truncated, callId)));
      streams[stream] = splitter;
    }
    return splitter;
  }
}

const SKIP = { push(): void {} };

function endStreams(streams: CallStreams): void {
  streams.stdout?.end();
  streams.stderr?.end();
}

/**
 * Which invocation a captured line belongs to, and the gateway it goes to. A line from the log
 * socket carries its call id (the bootstrap knows it exactly, whatever the concurrency); it goes
 * to that invocation's gateway when this container ran it, else to the current one's. A function
 * can claim any call id, but lines are stored under the container's function and read back by
 * (function, invocation id), so it can only ever write into invocations of its own function.
 * Attach lines carry no call id: they go to the container's current (latest) invocation.
 */
export class LineAttribution {
  /** Invocations seen on this container, oldest first: where their late lines go. */
  readonly #known = new Map<string, InvocationRef>();

  /** `callId`: the lines' (CapturedLines.callId). */
  resolve(callId: string | undefined, current: InvocationRef | undefined): { invocationId: string; route: TelemetryRoute | undefined } {
    if (current && !this.#known.has(current.id)) {
      if (this.#known.size >= MAX_KNOWN_INVOCATIONS) this.#known.delete(this.#known.keys().next().value as string);
      this.#known.set(current.id, current);
    }
    if (callId === undefined) return { invocationId: current?.id ?? '', route: current?.route };
    return { invocationId: callId, route: this.#known.get(callId)?.route ?? current?.route };
  }
}

/**
 * Call-end frames read, matched with the RESULTs waiting for them. The bootstrap writes a call's
 * lines and its call-end frame before its response, so the frame is usually in first; but the
 * executor may read the response socket before the log socket (epoll does not promise the order
 * in which two sockets became readable), and then the RESULT waits for the frame.
 */
export class CallEnds {
  /** Frames in before their RESULT asked (insertion order: oldest first). */
  readonly #ended = new Set<string>();
  readonly #waiting = new Map<string, () => void>();

  ended(callId: string): void {
    const release = this.#waiting.get(callId);
    if (release) {
      release();
      return;
    }
    if (this.#ended.size >= MAX_ENDED_CALLS) this.#ended.delete(this.#ended.values().next().value as string);
    this.#ended.add(callId);
  }

  /** Undefined when the call's frame is in; else settles when it comes, nothing more can, or after `maxWaitMs`. */
  wait(callId: string, maxWaitMs: number): Promise<void> | undefined {
    if (this.#ended.delete(callId)) return undefined;
    return new Promise<void>((resolve) => {
      const release = () => {
        clearTimeout(timer);
        this.#waiting.delete(callId);
        resolve();
      };
      const timer = setTimeout(release, maxWaitMs);
      this.#waiting.set(callId, release);
    });
  }

  /** No frame can come any more (a connection closed, or the container's logs did): nobody waits. */
  releaseAll(): void {
    for (const release of [...this.#waiting.values()]) release();
  }
}

/**
 * The log socket of one container: listens in its iofs directory before the container starts
 * (world-writable: the container's user connects), reads each connection's frames into lines.
 */
export class LogSocket {
  readonly #server: net.Server;
  readonly #connections = new Set<net.Socket>();
  #closed = false;

  private constructor(server: net.Server) {
    this.#server = server;
  }

  /** Listens on `<iofsDir>/LOG_SOCKET_FILE`. */
  static async open(iofsDir: string, maxLineBytes: number, onLines: OnLines, callEnds = new CallEnds()): Promise<LogSocket> {
    const server = net.createServer();
    const socket = new LogSocket(server);
    server.maxConnections = MAX_LOG_CONNECTIONS;
    server.on('connection', (connection) => socket.#follow(connection, maxLineBytes, onLines, callEnds));
    const file = path.join(iofsDir, LOG_SOCKET_FILE);
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(file, () => {
        server.off('error', reject);
        resolve();
      });
    });
    server.on('error', () => {}); // after listening: nothing to report (connections have their own)
    await chmod(file, 0o666);
    return socket;
  }

  #follow(connection: net.Socket, maxLineBytes: number, onLines: OnLines, callEnds: CallEnds): void {
    this.#connections.add(connection);
    const reader = new LogFrameReader(maxLineBytes, onLines, (callId) => callEnds.ended(callId));
    connection.on('data', (chunk: Buffer) => {
      try {
        reader.push(chunk);
      } catch {
        connection.destroy(); // a malformed frame: the bootstrap falls back to stdout/stderr
      }
    });
    connection.on('error', () => {});
    connection.once('close', () => {
      this.#connections.delete(connection);
      reader.end();
      callEnds.releaseAll();
    });
  }

  /**
   * Stops listening. Connections still deliver what the container sent until it is gone (EOF),
   * at most LOG_DRAIN_GRACE_MS.
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#server.close();
    for (const connection of this.#connections) {
      connection.end();
      setTimeout(() => connection.destroy(), LOG_DRAIN_GRACE_MS).unref();
    }
  }
}

/**
 * Everything a container prints, both ways in, as lines with their invocation. Opened before
 * the container is created (the bootstrap connects at start); close() when it is removed.
 */
export class ContainerLogs {
  readonly attribution = new LineAttribution();
  readonly #socket: LogSocket;
  readonly #callEnds: CallEnds;
  readonly #maxLineBytes: number;
  readonly #onLines: OnLines;

  private constructor(socket: LogSocket, callEnds: CallEnds, maxLineBytes: number, onLines: OnLines) {
    this.#socket = socket;
    this.#callEnds = callEnds;
    this.#maxLineBytes = maxLineBytes;
    this.#onLines = onLines;
  }

  static async open(iofsDir: string, maxLineBytes: number, onLines: OnLines): Promise<ContainerLogs> {
    const callEnds = new CallEnds();
    return new ContainerLogs(await LogSocket.open(iofsDir, maxLineBytes, onLines, callEnds), callEnds, maxLineBytes, onLines);
  }

  /** See CallEnds.wait: the lines call `callId` printed over the log socket are read (undefined: already). */
  linesRead(callId: string, maxWaitMs: number): Promise<void> | undefined {
    return this.#callEnds.wait(callId, maxWaitMs);
  }

  /** Reads the container's Docker attach stream too (output that bypassed the log socket). */
  follow(output: ContainerOutput): void {
    void captureOutput(output, this.#maxLineBytes, this.#onLines);
  }

  close(): void {
    this.#socket.close();
    this.#callEnds.releaseAll();
  }
}
