/**
 * uWebSockets.js request/response plumbing. Hot path: bodies are read into one Buffer with the
 * limit enforced while streaming, and large responses are written with tryEnd/onWritable so a
 * slow client applies backpressure instead of growing memory.
 */
import { STATUS_CODES } from 'node:http';
import type { HttpRequest, HttpResponse } from 'uWebSockets.js';
import { SkiffError } from '../errors.ts';

/** Per-request state that outlives the uWS request object (which dies when the handler returns). */
export interface RequestContext {
  readonly res: HttpResponse;
  aborted: boolean;
  /** Set once a response was written, so nothing is written twice. */
  responded: boolean;
}

/** Starts tracking a request; must be called synchronously in the route handler. */
export function openRequest(res: HttpResponse): RequestContext {
  const ctx: RequestContext = { res, aborted: false, responded: false };
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
 * Reads the body into one Buffer. Rejects with PAYLOAD_TOO_LARGE as soon as the declared
 * content-length or the bytes received pass `limitBytes`, without buffering the rest.
 */
export function readBody(ctx: RequestContext, declaredLength: number, limitBytes: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    if (declaredLength > limitBytes) {
      reject(new SkiffError('PAYLOAD_TOO_LARGE', `request body of ${declaredLength} bytes is over the limit of ${limitBytes} bytes`));
      return;
    }
    const chunks: Buffer[] = [];
    let received = 0;
    let failed = false;
    ctx.res.onData((chunk, isLast) => {
      if (failed) return;
      received += chunk.byteLength;
      if (received > limitBytes) {
        failed = true;
        reject(new SkiffError('PAYLOAD_TOO_LARGE', `request body is over the limit of ${limitBytes} bytes`));
        return;
      }
      // uWS reuses the chunk's memory after this callback: copy it.
      if (chunk.byteLength > 0) chunks.push(Buffer.from(new Uint8Array(chunk)));
      if (isLast) resolve(chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, received));
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
 * backpressure. `closeConnection` is for answers sent before the request body was consumed.
 */
export function sendResponse(
  ctx: RequestContext,
  status: number,
  headers: Record<string, string>,
  body: Buffer | string,
  closeConnection = false,
): void {
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
    if (closeConnection) {
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
export function sendError(ctx: RequestContext, err: SkiffError, headers: Record<string, string> = {}, closeConnection = false): void {
  sendResponse(ctx, err.statusCode, { 'content-type': 'application/json', ...headers }, JSON.stringify(err.toJSON()), closeConnection);
}
