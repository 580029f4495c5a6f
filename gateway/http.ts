/**
 * uWebSockets.js request/response plumbing. Hot path: bodies are read into one Buffer with the
 * limit enforced while streaming, and large responses are written with tryEnd/onWritable so a
 * slow client applies backpressure instead of growing memory.
 */
import { randomUUID } from 'node:crypto';
import { STATUS_CODES } from 'node:http';
import type { HttpRequest, HttpResponse } from 'uWebSockets.js';
import { SkiffError } from '../errors.ts';
import type { InvocationRequest } from './initiator.ts';

/** Per-request state that outlives the uWS request object (which dies when the handler returns). */
export interface RequestContext {
  readonly res: HttpResponse;
  aborted: boolean;
  /** Set once a response was written, so nothing is written twice. */
  responded: boolean;
  /** The request body was not consumed: the answer must close the connection. */
  mustClose: boolean;
}

/** Starts tracking a request; must be called synchronously in the route handler. */
export function openRequest(res: HttpResponse): RequestContext {
  const ctx: RequestContext = { res, aborted: false, responded: false, mustClose: false };
  res.onAborted(() => {
    ctx.aborted = true;
  });
  return ctx;
}

/** Reads all request headers (lower-case names) while the request object is valid. */
export function readHeaders(req: HttpRequest): Record<string, string> {
  const headers: Record<string, string> = {};
  req.forEach((name, value) => {
    const existing = headers[name];
    headers[name] = existing === undefined ? value : `${existing}, ${value}`;
  });
  return headers;
}

/** The byte size of the header block, for the header limit. */
export function headerBytes(headers: Record<string, string>): number {
  let total = 0;
  for (const name in headers) total += name.length + headers[name].length + 4;
  return total;
}

/**
 * Reads the body into one Buffer. Past `limitBytes` nothing more is kept: the rest is read and
 * discarded so the caller can read the 413 (closing mid-upload makes clients see EPIPE instead),
 * unless the body is more than `limitBytes` again, when the answer goes out at once and the
 * connection is closed (`ctx.mustClose`).
 */
export function readBody(ctx: RequestContext, declaredLength: number, limitBytes: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const tooLarge = () => new SkiffError('PAYLOAD_TOO_LARGE', `request body is over the limit of ${limitBytes} bytes`);
    const drainLimit = limitBytes * 2;
    if (declaredLength > drainLimit) {
      ctx.mustClose = true;
      reject(tooLarge());
      return;
    }
    const chunks: Buffer[] = [];
    let received = 0;
    let settled = false;
    ctx.res.onData((chunk, isLast) => {
      if (settled) return;
      received += chunk.byteLength;
      if (received > drainLimit) {
        settled = true;
        ctx.mustClose = true;
        reject(tooLarge());
        return;
      }
      if (received <= limitBytes && chunk.byteLength > 0) {
        // uWS reuses the chunk's memory after this callback: copy it.
        chunks.push(Buffer.from(new Uint8Array(chunk)));
      }
      if (!isLast) return;
      settled = true;
      if (received > limitBytes) reject(tooLarge());
      else resolve(chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, received));
    });
  });
}

const STATUS_LINES = new Map<number, string>();
function statusLine(status: number): string {
  let line = STATUS_LINES.get(status);
  if (line === undefined) {
    line = `${status} ${STATUS_CODES[status] ?? 'Unknown'}`;
    STATUS_LINES.set(status, line);
  }
  return line;
}

/** Headers uWS writes itself or that must not be forwarded from a function. */
const RESERVED_RESPONSE_HEADERS = new Set(['content-length', 'transfer-encoding', 'connection', 'keep-alive', 'date']);

/**
 * Writes a complete response. Small bodies go out in one corked write; large ones stream with
 * backpressure. Closes the connection when the request body was not consumed.
 */
export function sendResponse(ctx: RequestContext, status: number, headers: Record<string, string>, body: Buffer | string): void {
  if (ctx.aborted || ctx.responded) return;
  ctx.responded = true;
  const { res } = ctx;
  const bytes = typeof body === 'string' ? Buffer.from(body) : body;
  let finished = false;
  let bodyStart = 0;
  res.cork(() => {
    res.writeStatus(statusLine(status));
    for (const name in headers) {
      if (!RESERVED_RESPONSE_HEADERS.has(name)) res.writeHeader(name, headers[name]);
    }
    if (ctx.mustClose) {
      res.end(bytes, true);
      finished = true;
      return;
    }
    bodyStart = res.getWriteOffset();
    const [ok, done] = res.tryEnd(bytes, bytes.length);
    finished = ok || done;
  });
  if (finished) return;
  const total = bytes.length;
  res.onWritable((offset) => {
    if (ctx.aborted) return true;
    const [ok, done] = res.tryEnd(bytes.subarray(offset - bodyStart), total);
    return ok || done;
  });
}

/** Answers JSON. */
export function sendJson(ctx: RequestContext, status: number, value: unknown, headers: Record<string, string> = {}): void {
  sendResponse(ctx, status, { 'content-type': 'application/json', ...headers }, JSON.stringify(value));
}

/** Answers a Skiff error as `{ error: { code, message } }`. */
export function sendError(ctx: RequestContext, err: SkiffError, headers: Record<string, string> = {}): void {
  sendResponse(ctx, err.statusCode, { 'content-type': 'application/json', ...headers }, JSON.stringify(err.toJSON()));
}

/** A caller's X-Call-Id is kept when it is a sane token; otherwise the gateway makes one. */
const CALL_ID_PATTERN = /^[A-Za-z0-9._:-]{1,128}$/;
export const EMPTY_BODY = Buffer.alloc(0);

/**
 * The invocation a call to `<routePrefix><name>[/<rest>]` asks for (sync /function/ or async
 * /async-function/): the caller's X-Call-Id when sane, `/<rest>` as the function's path, the
 * body still to be read (EMPTY_BODY until then).
 */
export function invocationRequestOf(req: HttpRequest, routePrefix: string, receivedAtMs: number, trigger: 'sync' | 'async'): InvocationRequest {
  const functionName = req.getParameter(0) ?? '';
  const url = req.getUrl();
  const prefixLength = routePrefix.length + functionName.length;
  const headers = readHeaders(req);
  const callerCallId = headers['x-call-id'];
  return {
    id: callerCallId !== undefined && CALL_ID_PATTERN.test(callerCallId) ? callerCallId : randomUUID(),
    functionName,
    method: req.getCaseSensitiveMethod(),
    path: url.length > prefixLength ? url.slice(prefixLength) : '/',
    query: req.getQuery() ?? '',
    headers,
    body: EMPTY_BODY,
    traceparent: headers['traceparent'] ?? '',
    receivedAtMs,
    trigger,
  };
}
