/**
 * One container's http-stream client: HTTP/1.1 `POST /call` over the unix socket the container
 * published in its iofs directory, with undici (one Client per container, pipelining 1).
 * Hot path: the request body Buffer from the INVOKE frame is sent as is; the response body is
 * collected as Buffers up to executor.maxResponseBytes, straight from undici's dispatch handler.
 */
import { Client, type Dispatcher } from 'undici';
import type { InvokeHeader } from '../bus/index.ts';
import { SkiffError } from '../errors.ts';
import type { AbortHook } from './abortable.ts';
import { fromFnResponseHeaders, toFnRequestHeaders } from './fn-headers.ts';

/** A warm connection stays open this long between calls (the bootstrap never closes it). */
const KEEP_ALIVE_MS = 10 * 60_000;

/** One call into the container. */
export interface ContainerCall {
  invoke: InvokeHeader;
  functionName: string;
  body: Buffer;
  /** Aborted at the deadline or when the container goes away; its reason is the error thrown. */
  signal: AbortHook;
  maxResponseBytes: number;
}

/** A stem cell's answer to a control request. */
export interface ControlReply {
  status: number;
  body: string;
}

export interface ContainerResponse {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
  /**
   * The call printed lines over the log socket and ends them with a call-end frame
   * (LOG_END_HEADER): the RESULT waits for that frame, so it never overtakes the lines.
   */
  linesEnd: boolean;
  /** The call's lines, carried in its response head (LOG_LINES_HEADER; bus/log-rows.ts CarriedLogLines). */
  logLines: string | undefined;
}

/** Response header the bootstrap sets on a call that printed over the log socket (bootstrap.mjs). */
export const LOG_END_HEADER = 'skiff-log-end';
/** The response header a container carries a call's lines in (bootstrap.mjs: LOG_LINES_HEADER). */
export const LOG_LINES_HEADER = 'skiff-log';
/** Bytes of lines a response head carries at most (bootstrap.mjs: LOG_LINES_HEADER_MAX_BYTES). */
const LOG_LINES_HEADER_MAX_BYTES = 8 * 1024;
/** Node's and undici's default limit on a response head. */
const DEFAULT_MAX_HEADER_BYTES = 16 * 1024;

/** undici/socket error codes meaning the container side went away mid-call. */
const CRASH_CODES = new Set(['UND_ERR_SOCKET', 'UND_ERR_CLOSED', 'UND_ERR_DESTROYED', 'ECONNRESET', 'EPIPE', 'ECONNREFUSED', 'ENOENT', 'UND_ERR_ABORTED']);
/** Codes meaning the container answered something that is not HTTP/http-stream. */
const BAD_RESPONSE_CODES = new Set(['UND_ERR_RES_CONTENT_LENGTH_MISMATCH', 'UND_ERR_HEADERS_OVERFLOW', 'UND_ERR_INFO']);

/** Maps a failed call to its Skiff error: our own abort reason first, then undici's error. */
export function classifyCallError(err: unknown, signal: AbortHook): SkiffError {
  if (signal.aborted && signal.reason instanceof SkiffError) return signal.reason;
  if (err instanceof SkiffError) return err;
  const code = (err as { code?: unknown } | null)?.code;
  const message = err instanceof Error ? err.message : String(err);
  const parserError = err instanceof Error && err.name === 'HTTPParserError';
  if (parserError || (typeof code === 'string' && (code.startsWith('HPE_') || BAD_RESPONSE_CODES.has(code)))) {
    return new SkiffError('FUNCTION_BAD_RESPONSE', `the function answered an invalid http-stream response: ${message}`, { cause: err });
  }
  if (typeof code === 'string') {
    if (CRASH_CODES.has(code)) {
      return new SkiffError('FUNCTION_CRASHED', `the function container closed the connection before answering: ${message}`, { cause: err });
    }
  }
  return new SkiffError('FUNCTION_CRASHED', `the call to the function container failed: ${message}`, { cause: err });
}

function tooLarge(limit: number): SkiffError {
  return new SkiffError('RESPONSE_TOO_LARGE', `the function response body is over executor.maxResponseBytes (${limit} bytes)`);
}

/** The http-stream client of one container. */
export class ContainerClient {
  readonly #client: Client;

  constructor(socketPath: string) {
    this.#client = new Client('http://localhost', {
      socketPath,
      pipelining: 1,
      // The executor owns deadlines (the call's AbortSignal); undici must not cut calls itself.
      headersTimeout: 0,
      bodyTimeout: 0,
      keepAliveTimeout: KEEP_ALIVE_MS,
      keepAliveMaxTimeout: KEEP_ALIVE_MS,
      // A function's own headers keep the usual room; the carried lines come on top.
      maxHeaderSize: DEFAULT_MAX_HEADER_BYTES + LOG_LINES_HEADER_MAX_BYTES,
    });
  }

  /**
   * Runs one call; throws a SkiffError (FUNCTION_*, RESPONSE_TOO_LARGE or the signal's reason).
   * Uses undici's dispatch handler directly: no Readable stream or async iterator per call.
   */
  call(call: ContainerCall): Promise<ContainerResponse> {
    const { signal, maxResponseBytes } = call;
    if (signal.aborted) return Promise.reject(classifyCallError(signal.reason, signal));
    return new Promise<ContainerResponse>((resolve, reject) => {
      let controller: Dispatcher.DispatchController | undefined;
      let head: { status: number; headers: Record<string, string> } | undefined;
      let linesEnd = false;
      let logLines: string | undefined;
      const chunks: Buffer[] = [];
      let size = 0;
      let settled = false;
      const onAbort = () => controller?.abort(signal.reason as Error);
      const fail = (err: unknown) => {
        if (settled) return;
        settled = true;
        signal.removeEventListener('abort', onAbort);
        reject(classifyCallError(err, signal));
      };
      signal.addEventListener('abort', onAbort, { once: true });
      this.#client.dispatch(
        { path: '/call', method: 'POST', headers: toFnRequestHeaders(call.invoke, call.functionName), body: call.body },
        {
          onRequestStart(ctrl) {
            controller = ctrl;
            if (signal.aborted) ctrl.abort(signal.reason as Error);
          },
          onResponseStart(ctrl, statusCode, headers) {
            try {
              head = fromFnResponseHeaders(statusCode, headers);
              linesEnd = headers[LOG_END_HEADER] !== undefined;
              const carried = headers[LOG_LINES_HEADER];
              // Sent twice (only a function's own doing): kept, as one value the row writer will find malformed.
              if (carried !== undefined) logLines = Array.isArray(carried) ? carried.join(', ') : carried;
              const declared = Number(headers['content-length']);
              if (Number.isFinite(declared) && declared > maxResponseBytes) throw tooLarge(maxResponseBytes);
            } catch (err) {
              fail(err);
              ctrl.abort(err as Error);
            }
          },
          onResponseData(ctrl, chunk) {
            size += chunk.length;
            if (size > maxResponseBytes) {
              const err = tooLarge(maxResponseBytes);
              fail(err);
              ctrl.abort(err);
              return;
            }
            chunks.push(chunk);
          },
          onResponseEnd() {
            if (settled) return;
            settled = true;
            signal.removeEventListener('abort', onAbort);
            if (!head) {
              reject(new SkiffError('FUNCTION_BAD_RESPONSE', 'the function answered no response head'));
              return;
            }
            resolve({ status: head.status, headers: head.headers, body: chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, size), linesEnd, logLines });
          },
          onResponseError(_ctrl, err) {
            fail(err);
          },
        },
      );
    });
  }

  /**
   * One control request of a stem cell (GET /ready, POST /specialize) on the connection its calls
   * will use, so that connection is open and warm before the first call. Rejects with
   * FUNCTION_START_FAILED (naming executor.startTimeoutMs) when no answer comes within `timeoutMs`.
   */
  async control(method: 'GET' | 'POST', path: string, body: Buffer | undefined, timeoutMs: number): Promise<ControlReply> {
    const timedOut = new SkiffError('FUNCTION_START_FAILED', `the stem cell did not answer ${method} ${path} within executor.startTimeoutMs (${timeoutMs} ms)`);
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(timedOut), timeoutMs);
    try {
      const headers = body ? { 'content-type': 'application/json' } : undefined;
      const res = await this.#client.request({ path, method, headers, body, signal: abort.signal });
      return { status: res.statusCode, body: await res.body.text() };
    } catch (err) {
      if (abort.signal.aborted) throw timedOut;
      throw err;
    } finally {
      clearTimeout(timer);
    }
  }

  /** Closes the connection after any call in progress. */
  async close(): Promise<void> {
    await this.#client.close();
  }

  /** Drops the connection now, failing any call in progress. */
  destroy(): void {
    void this.#client.destroy().catch(() => {});
  }
}
