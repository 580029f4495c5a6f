// Skiff runtime bootstrap: runs inside a function container with the image's node binary and no
// dependencies. It speaks the Fn `http-stream` contract on FN_LISTENER (a unix socket), so the
// executor drives every function the same way whether it is
//   (a) a module exporting `async (request, context) => response` — served here, or
//   (b) a program using @fnproject/fdk, which opens FN_LISTENER itself when imported.
//
// Environment: FN_LISTENER=unix:/tmp/iofs/lsnr.sock, FN_FORMAT=http-stream,
// SKIFF_HANDLER=/function/<entry file>, SKIFF_FUNCTION_NAME=<name>.
// Readiness: the socket is opened under a temporary name in the listener's directory, made
// world-writable, then a *relative* symlink named like the listener is renamed into place
// (atomic). The executor waits for lsnr.sock to appear; the relative link resolves on the
// host side of the bind mount too.
//
// Stem cell mode (SKIFF_STEMCELL=1, no function yet): the bootstrap opens the function's call
// socket at once and publishes it as stem.sock (same way); until it specializes, that socket
// answers `GET /ready` (the executor connects and warms the connection ahead) and one
// `POST /specialize` with JSON { functionName, handler, cwd, env }, which sets the environment and
// loads the handler (code the executor injected into the iofs directory). For a module it answers
// 200 {style:'served'} once the handler is set, and every later request on that socket is a call,
// on the connection the executor already holds; lsnr.sock is published right after. A program that
// serves FN_LISTENER itself (fdk style) gets 200 {style:'program'} and the socket closes. A load
// error answers 500 and exits. stem.sock goes when it specializes: a stem cell specializes once.

import { AsyncLocalStorage } from 'node:async_hooks';
import { randomBytes } from 'node:crypto';
import diagnostics from 'node:diagnostics_channel';
import { existsSync, promises as fsp } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { createRequire } from 'node:module';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { format } from 'node:util';

const BOOTSTRAP_VERSION = 'skiff-bootstrap/2';
const STEM_FILE = 'stem.sock';
const FN_HTTP_H = 'fn-http-h-';
const NO_DEADLINE = 8.64e15;

let functionName = process.env.SKIFF_FUNCTION_NAME || process.env.FN_FN_NAME || '';

function fail(message, error) {
  process.stderr.write(`skiff-bootstrap: ${message}${error ? `\n${formatError(error)}` : ''}\n`);
  process.exit(1);
}

function formatError(error) {
  if (error instanceof Error) return error.stack || `${error.name}: ${error.message}`;
  try {
    return `non-Error thrown: ${typeof error === 'string' ? error : JSON.stringify(error)}`;
  } catch {
    return `non-Error thrown: ${String(error)}`;
  }
}

function handlerPath() {
  const configured = process.env.SKIFF_HANDLER;
  if (configured) return path.resolve('/function', configured);
  for (const candidate of ['index.js', 'index.mjs', 'index.cjs', 'func.js']) {
    const full = path.join('/function', candidate);
    if (existsSync(full)) return full;
  }
  return fail('SKIFF_HANDLER is not set and /function has no index.js, index.mjs, index.cjs or func.js');
}

function listenerPath() {
  const listener = process.env.FN_LISTENER || '';
  if (!listener.startsWith('unix:') || listener.length <= 'unix:'.length) {
    return fail(`FN_LISTENER must be unix:<socket path>, got "${listener}"`);
  }
  return listener.slice('unix:'.length);
}

/** The callable a module exports, or null for a program (fdk style) that serves itself. */
function pickHandler(mod) {
  const candidates = [mod.default, mod.default && mod.default.default, mod.handler, mod.default && mod.default.handler];
  for (const candidate of candidates) if (typeof candidate === 'function') return candidate;
  return null;
}

// ---------------------------------------------------------------------------------------------
// Output capture
// ---------------------------------------------------------------------------------------------
// What the function writes to process.stdout/stderr (console.*, the fdk's logging) goes to the
// executor over the log socket it listens on in the iofs directory, tagged with the call it was
// written in, instead of through Docker's attach stream (dockerd and containerd copy every byte
// on the way). Writes are gathered until the current synchronous run ends (a microtask), then
// sent in one socket write, consecutive writes of one call and stream as one frame: the executor
// reads and parses one frame per call rather than one per line. Frame (executor/log-capture.ts
// reads it): u32 LE length of what follows, u8 kind (1 stdout, 2 stderr, 3 call ended: the
// executor ends that call's partial lines), u8 call id length, the call id (latin1), the bytes.
// A call's whole lines written before its response head (console.log and the like in a handler
// that answers in the same turn, the usual case) do not take the socket at all: they go in the
// response head (LOG_LINES_HEADER), so the executor has them with the response, exactly
// attributed, with no socket write or read, and nothing to wait for. A call that is still running
// when the turn ends (it awaits I/O) sends what it carried over the socket then, as below, so the
// lines of a call that hangs or times out are not held back.
// A write belongs to the call whose http-stream request it runs under (an AsyncLocalStorage
// entered at `http.server.request.start`, so our server and the fdk's alike) until that call's
// response is over; anything else (module load, timers firing after the response) goes with an
// empty call id, stored under the container with no invocation. With no socket (the bootstrap
// run outside Skiff), while it connects, past LOG_BACKLOG_MAX_BYTES unsent, once it is lost, or
// for a call id too long to frame, writes go to the real stdout/stderr, which the executor still
// reads through Docker's attach stream, as it reads fd 1/2 written by native code or child
// processes (those lines go to the container's latest call). A call's response ends its
// call (see endAfterLines: its lines are on the socket ahead of its response). Lost: what was written in the
// synchronous run during which the process is killed or spins forever (a pipe would have
// delivered it; at most LOG_BATCH_MAX_BYTES), and what is still unsent when it exits (only ever
// the backlog of a full socket).

const LOG_SOCKET_FILE = 'log.sock';
const LOG_FRAME_HEADER_BYTES = 6;
const LOG_FRAME_STDOUT = 1;
const LOG_FRAME_STDERR = 2;
const LOG_FRAME_CALL_END = 3;
/** Response header of a call that printed over the log socket (executor/container-client.ts LOG_END_HEADER). */
const LOG_END_HEADER = 'Skiff-Log-End';
/**
 * Response header that carries a call's lines with its response (executor/container-client.ts
 * LOG_LINES_HEADER): each line a stream letter ('o' stdout, 'e' stderr) and its text as a
 * TabSeparated field (tab and backslash escaped) in UTF-8 bytes (a latin1 string here: header
 * values are bytes), lines joined by tabs, the whole ended by LOG_LINES_END (a parser would trim
 * trailing spaces of the last line).
 */
const LOG_LINES_HEADER = 'Skiff-Log';
const LOG_LINES_END = '|';
/**
 * Bytes of lines a call's response head carries at most (executor/container-client.ts sizes its
 * parser's header limit for it); past it the call's lines take the log socket.
 */
const LOG_LINES_HEADER_MAX_BYTES = 8 * 1024;
/** Characters a header cannot carry (controls other than tab; newlines split lines): a line holding one takes the log socket. */
const HEADER_UNSAFE = /[\x00-\x08\x0b-\x1f\x7f]/;
const TSV_SPECIAL = /[\t\\]/g;
/** A line carried as it is: printable ASCII but the backslash (no escape, no newline, one byte per character). */
const PLAIN_LINE = /^[\x20-\x5b\x5d-\x7e]*$/;
const NON_ASCII = /[^\x00-\x7f]/;
const NEWLINE = 0x0a;
const LOG_MAX_CALL_ID_BYTES = 255;
/** Bytes gathered or unsent on the log socket beyond which writes take the attach path instead. */
const LOG_BACKLOG_MAX_BYTES = 1024 * 1024;
/** A run that writes more than this sends what it gathered at once, not at its end. */
const LOG_BATCH_MAX_BYTES = 64 * 1024;

/**
 * The call output is written in: { callId, ended, partial }; none outside calls. `partial`: the
 * streams (a bit per frame kind) whose last write of this call did not end its line.
 */
const callOutput = new AsyncLocalStorage();

/** Writes gathered for one socket write, as runs of one kind and call: { kind, callId, parts, bytes }. */
class LogBatch {
  runs = [];
  bytes = 0;

  add(kind, callId, part, partBytes) {
    const last = this.runs[this.runs.length - 1];
    if (last !== undefined && last.kind === kind && last.callId === callId) {
      last.parts.push(part);
      last.bytes += partBytes;
    } else {
      this.runs.push({ kind, callId, parts: part === undefined ? [] : [part], bytes: partBytes });
      this.bytes += LOG_FRAME_HEADER_BYTES + callId.length;
    }
    this.bytes += partBytes;
  }

  /** The frames, in one buffer; empties the batch. */
  take() {
    const out = Buffer.allocUnsafe(this.bytes);
    let at = 0;
    for (const { kind, callId, parts, bytes } of this.runs) {
      out.writeUInt32LE(2 + callId.length + bytes, at);
      out[at + 4] = kind;
      out[at + 5] = callId.length;
      at += LOG_FRAME_HEADER_BYTES;
      at += out.write(callId, at, 'latin1');
      for (const part of parts) {
        if (typeof part === 'string') {
          at += out.write(part, at, 'utf8');
        } else {
          out.set(part, at);
          at += part.byteLength;
        }
      }
    }
    this.runs = [];
    this.bytes = 0;
    return out;
  }
}

/** Sends process.stdout/stderr writes over the executor's log socket when it has one. */
function captureOutput(socketFile) {
  if (!existsSync(socketFile)) return;
  const socket = net.connect(socketFile);
  let usable = true;
  socket.on('error', () => {}); // 'close' follows: writes go back to stdout/stderr
  socket.once('close', () => {
    usable = false;
  });
  socket.unref(); // the log socket alone never keeps the process alive
  const batch = new LogBatch();
  let flushQueued = false;
  const flush = () => {
    if (batch.bytes > 0 && usable) socket.write(batch.take());
  };
  const flushQueuedRun = () => {
    flushQueued = false;
    flush();
  };
  const gather = (kind, callId, part, partBytes) => {
    batch.add(kind, callId, part, partBytes);
    if (batch.bytes >= LOG_BATCH_MAX_BYTES) flush();
    else if (!flushQueued) {
      flushQueued = true;
      queueMicrotask(flushQueuedRun);
    }
  };
  // Calls carrying lines for their response head (see LOG_LINES_HEADER). A call still running when
  // the turn ends gives them to the socket (spill), so they leave as promptly as gathered lines.
  const carrying = new Set();
  let spillQueued = false;
  const spill = (call) => {
    carrying.delete(call);
    const { carried } = call;
    if (carried === undefined) return;
    call.carried = undefined;
    call.carriedBytes = 0;
    for (let i = 0; i < carried.length; i += 2) {
      const text = carried[i + 1];
      gather(carried[i], call.callId, text, Buffer.byteLength(text));
    }
    call.wrote = true;
  };
  const spillAll = () => {
    spillQueued = false;
    for (const call of carrying) spill(call);
  };
  /**
   * Carries `text` (whole lines written in the call) for the call's response head; false (nothing
   * carried) when it cannot go there: the head is out, a line holds a control character, or the
   * call's lines would pass LOG_LINES_HEADER_MAX_BYTES.
   */
  const carry = (call, kind, text) => {
    if (call.headSent || call.wrote || text.charCodeAt(text.length - 1) !== NEWLINE) return false;
    let fields = text.slice(0, -1);
    const letter = kind === LOG_FRAME_STDOUT ? 'o' : 'e';
    let segment;
    if (PLAIN_LINE.test(fields)) segment = letter + fields; // the usual line: one check, nothing to escape
    else {
      if (HEADER_UNSAFE.test(fields)) return false;
      if (fields.indexOf('\t') !== -1 || fields.indexOf('\\') !== -1) fields = fields.replace(TSV_SPECIAL, (c) => (c === '\t' ? '\\t' : '\\\\'));
      if (NON_ASCII.test(fields)) fields = Buffer.from(fields, 'utf8').toString('latin1');
      // A multi-line text (a string with newlines) is one line per newline, each with its letter.
      segment = fields.indexOf('\n') === -1 ? letter + fields : fields.split('\n').map((line) => letter + line).join('\t');
    }
    const bytes = call.carriedBytes + segment.length + 1;
    if (bytes > LOG_LINES_HEADER_MAX_BYTES) return false;
    call.carriedBytes = bytes;
    if (call.carried === undefined) {
      call.carried = [kind, text];
      call.segments = segment;
      carrying.add(call);
      if (!spillQueued) {
        spillQueued = true;
        setImmediate(spillAll);
      }
    } else {
      call.carried.push(kind, text);
      call.segments += `\t${segment}`;
    }
    return true;
  };
  /** The call's carried lines as the LOG_LINES_HEADER value, taken (undefined: none). */
  const takeCarried = (call) => {
    if (call === undefined || call.carried === undefined) return undefined;
    const value = call.segments + LOG_LINES_END;
    carrying.delete(call);
    call.carried = undefined;
    call.segments = '';
    call.carriedBytes = 0;
    return value;
  };
  // process.exit() in the middle of a run: what it wrote still leaves (a socket with room takes
  // the write at once), what calls carried too.
  process.on('exit', () => {
    spillAll();
    flush();
  });
  // A call that printed over the socket says so in its response head (LOG_END_HEADER), and its
  // lines and a call-end frame leave before the response's last bytes: the executor sends the
  // call's RESULT only once it has read that frame, so the lines reach the gateway first.
  // A response's call, as a property (a WeakMap entry per response would be GC work per call).
  const kCall = Symbol('skiff.call');
  const marks = (response, call) => call !== undefined && call.wrote && !call.marked && usable && !response.headersSent;
  /**
   * The one header a call's response head gets, taken as the head goes out: its carried lines
   * (LOG_LINES_HEADER), or the mark that its lines took the socket (LOG_END_HEADER); undefined for
   * neither. One at most: carry() stops once a line took the socket, spill() moves carried ones there.
   */
  const headHeader = (response, call) => {
    call.headSent = true;
    if (response.headersSent) return undefined;
    const carried = takeCarried(call);
    if (carried !== undefined) return [LOG_LINES_HEADER, carried];
    if (!marks(response, call)) return undefined;
    call.marked = true;
    return [LOG_END_HEADER, '1'];
  };
  const { writeHead, end } = http.ServerResponse.prototype;
  http.ServerResponse.prototype.writeHead = function writeHeadMarked(statusCode, reason, headers) {
    const call = this[kCall];
    if (call === undefined) return writeHead.apply(this, arguments);
    const header = headHeader(this, call);
    if (header === undefined) return writeHead.apply(this, arguments);
    const [name, value] = header;
    // Added to a copy of the headers given (the caller's stay as they were): setHeader here would
    // send Node's writeHead down its slower merging path.
    if (typeof reason !== 'string') {
      headers = reason;
      reason = undefined;
    }
    if (headers === undefined || headers === null) this.setHeader(name, value);
    else if (!Array.isArray(headers)) headers = { ...headers, [name]: value };
    else if (Array.isArray(headers[0])) headers = [...headers, [name, value]];
    else headers = [...headers, name, value];
    return reason === undefined ? writeHead.call(this, statusCode, headers) : writeHead.call(this, statusCode, reason, headers);
  };
  http.ServerResponse.prototype.end = function endAfterLines(...args) {
    const call = this[kCall];
    if (call !== undefined && !call.ended) {
      // Headers not written yet: end() writes them (implicitly), so the lines or the mark go in now.
      const header = headHeader(this, call);
      if (header !== undefined) this.setHeader(header[0], header[1]);
      call.ended = true; // what runs from now on writes outside the call
      if ((call.marked || call.partial !== 0) && usable) {
        gather(LOG_FRAME_CALL_END, call.callId, undefined, 0);
        call.endSent = true;
      }
    }
    flush();
    return end.apply(this, args);
  };
  const send = (kind, chunk, encoding) => {
    if (!usable || socket.connecting || socket.writableLength + batch.bytes > LOG_BACKLOG_MAX_BYTES) return false;
    let part = chunk;
    if (typeof chunk === 'string') {
      if (encoding !== 'utf8' && encoding !== 'utf-8') {
        if (!Buffer.isEncoding(encoding)) return false; // the real write throws the right error
        part = Buffer.from(chunk, encoding);
      }
    } else if (chunk instanceof Uint8Array) {
      part = Buffer.from(chunk); // a copy: the caller may reuse its buffer before the batch leaves
    } else {
      return false;
    }
    const call = callOutput.getStore();
    const inCall = call !== undefined && !call.ended;
    if (inCall && call.callId.length > LOG_MAX_CALL_ID_BYTES) return false;
    if (inCall && typeof part === 'string' && call.partial === 0 && carry(call, kind, part)) return true;
    // Whatever the call carried leaves first, so its lines stay in order.
    if (inCall && call.carried !== undefined) spill(call);
    const partBytes = typeof part === 'string' ? Buffer.byteLength(part, 'utf8') : part.byteLength;
    if (inCall && partBytes > 0) {
      call.wrote = true;
      const endsLine = typeof part === 'string' ? part.charCodeAt(part.length - 1) === NEWLINE : part[part.length - 1] === NEWLINE;
      call.partial = endsLine ? call.partial & ~kind : call.partial | kind;
    }
    gather(kind, inCall ? call.callId : '', part, partBytes);
    return true;
  };
  const captured = new Map();
  for (const [name, kind] of [['stdout', LOG_FRAME_STDOUT], ['stderr', LOG_FRAME_STDERR]]) {
    const stream = process[name];
    const write = stream.write;
    stream.write = function capturedWrite(chunk, encoding, callback) {
      if (typeof encoding === 'function') {
        callback = encoding;
        encoding = undefined;
      }
      if (!send(kind, chunk, encoding ?? 'utf8')) return write.call(this, chunk, encoding, callback);
      if (typeof callback === 'function') process.nextTick(callback);
      return true;
    };
    captured.set(kind, { stream, capturedWrite: stream.write });
  }
  fastConsole(send, captured);
  diagnostics.subscribe('http.server.request.start', ({ request, response }) => {
    const callId = request.headers['fn-call-id'];
    if (typeof callId !== 'string' || callId === '') {
      callOutput.enterWith(undefined);
      return;
    }
    // wrote: some of its output took the socket; headSent: its response head is out (nothing more
    // can be carried); carried: [kind, text, ...] carried for the head, as `segments` (carry()).
    const call = { callId, ended: false, partial: 0, wrote: false, marked: false, endSent: false, headSent: false, carried: undefined, segments: '', carriedBytes: 0 };
    callOutput.enterWith(call);
    if (callId.length <= LOG_MAX_CALL_ID_BYTES) response[kCall] = call;
    response.once('close', () => {
      // Closed before its head went out (the executor gave up on it): what it carried takes the socket.
      if (call.carried !== undefined) spill(call);
      call.ended = true;
      // Only a call that left a line unended needs telling: the executor holds nothing else of it.
      if (call.partial !== 0 && !call.endSent && usable && callId.length <= LOG_MAX_CALL_ID_BYTES) gather(LOG_FRAME_CALL_END, callId, undefined, 0);
    });
  });
}

/** console methods the fast path serves, and the stream each writes to. */
const FAST_CONSOLE_METHODS = [['log', LOG_FRAME_STDOUT], ['info', LOG_FRAME_STDOUT], ['debug', LOG_FRAME_STDOUT], ['warn', LOG_FRAME_STDERR], ['error', LOG_FRAME_STDERR]];
/** What console.group indents by (Node's default groupIndentation). */
const CONSOLE_GROUP_INDENT = '  ';

/**
 * console.log and its kin, formatted as Node formats them (util.format: the streams are no TTY,
 * so no colours) and gathered directly. Node's Console costs several times the write itself per
 * call (an error listener added and removed around every write, the callback deferred). Each
 * method takes the fast path only while the stream's write is still ours (a function that replaced
 * process.stdout.write sees every console line, as without Skiff), and goes Node's way when the
 * log socket is unusable. console.group/groupEnd keep their indentation here, since Node's own
 * counter is then never used; other methods (dir, table, trace...) stay Node's.
 */
function fastConsole(send, captured) {
  let indent = '';
  for (const [method, kind] of FAST_CONSOLE_METHODS) {
    const original = console[method];
    const { stream, capturedWrite } = captured.get(kind);
    console[method] = function fastConsoleWrite(...args) {
      if (stream.write !== capturedWrite) return original.apply(console, args);
      let text = format(...args);
      if (indent !== '') text = indent + text.replaceAll('\n', `\n${indent}`);
      if (!send(kind, `${text}\n`, 'utf8')) stream.write(`${text}\n`);
    };
  }
  console.group = function group(...label) {
    if (label.length > 0) console.log(...label);
    indent += CONSOLE_GROUP_INDENT;
  };
  console.groupCollapsed = console.group;
  console.groupEnd = function groupEnd() {
    indent = indent.slice(0, Math.max(0, indent.length - CONSOLE_GROUP_INDENT.length));
  };
}

// ---------------------------------------------------------------------------------------------
// Request building
// ---------------------------------------------------------------------------------------------

function parseQuery(rawQuery) {
  const query = {};
  for (const [key, value] of new URLSearchParams(rawQuery)) {
    if (Object.prototype.hasOwnProperty.call(query, key)) {
      const current = query[key];
      if (Array.isArray(current)) current.push(value);
      else query[key] = [current, value];
    } else {
      // defineProperty: a key named __proto__ becomes a plain property, not the prototype.
      Object.defineProperty(query, key, { value, enumerable: true, writable: true, configurable: true });
    }
  }
  return query;
}

/** The path after /function/<name> (or /async-function/<name>); '/' when empty. */
function functionPath(pathname) {
  const names = functionName ? [functionName, encodeURIComponent(functionName)] : [];
  for (const prefix of ['/function/', '/async-function/']) {
    for (const name of names) {
      const base = prefix + name;
      if (pathname === base) return '/';
      if (pathname.startsWith(base + '/')) return pathname.slice(base.length);
    }
  }
  // Unknown prefix: strip a generic /function/<anything> if present, else keep the path.
  const match = /^\/(?:async-)?function\/[^/]+(\/.*)?$/.exec(pathname);
  if (match) return match[1] || '/';
  return pathname || '/';
}

function callerHeaders(rawHeaders) {
  const headers = {};
  let plainContentType;
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i].toLowerCase();
    const value = rawHeaders[i + 1];
    if (name === 'content-type') plainContentType = value;
    if (!name.startsWith(FN_HTTP_H) || name.length === FN_HTTP_H.length) continue;
    const key = name.slice(FN_HTTP_H.length);
    if (Object.prototype.hasOwnProperty.call(headers, key)) {
      headers[key] += key === 'cookie' ? `; ${value}` : `, ${value}`;
    } else {
      Object.defineProperty(headers, key, { value, enumerable: true, writable: true, configurable: true });
    }
  }
  if (headers['content-type'] === undefined && plainContentType !== undefined) headers['content-type'] = plainContentType;
  return headers;
}

function buildRequest(req, body) {
  const method = (req.headers['fn-http-method'] || 'POST').toUpperCase();
  const url = req.headers['fn-http-request-url'] || `/function/${functionName}`;
  let pathname = '/';
  let rawQuery = '';
  try {
    const parsed = new URL(url, 'http://function.invalid');
    pathname = parsed.pathname;
    rawQuery = parsed.search.startsWith('?') ? parsed.search.slice(1) : '';
  } catch {
    const q = url.indexOf('?');
    pathname = q === -1 ? url : url.slice(0, q);
    rawQuery = q === -1 ? '' : url.slice(q + 1);
  }
  return {
    method,
    url,
    path: functionPath(pathname),
    query: parseQuery(rawQuery),
    rawQuery,
    headers: callerHeaders(req.rawHeaders),
    body,
  };
}

/**
 * The call's context. `signal` is made when the function first reads it: on Node 20 every
 * AbortSignal costs ~1.5 µs and outlives two young-generation collections (so it brings
 * mark-compacts), and most functions never look. Read late, it is already aborted if the deadline
 * passed or the executor dropped the call.
 */
function buildContext(req, res) {
  const parsed = Date.parse(req.headers['fn-deadline'] || '');
  const deadline = new Date(Number.isFinite(parsed) ? parsed : NO_DEADLINE);
  let controller;
  const signalOf = () => {
    if (controller !== undefined) return controller.signal;
    controller = new AbortController();
    if (res.closed && !res.writableFinished) {
      controller.abort(new Error('call connection closed'));
      return controller.signal;
    }
    let timer;
    if (Number.isFinite(parsed)) {
      const delay = Math.min(parsed - Date.now(), 2_147_483_647);
      if (delay <= 0) {
        controller.abort(new Error('deadline exceeded'));
        return controller.signal;
      }
      timer = setTimeout(() => controller.abort(new Error('deadline exceeded')), delay);
      timer.unref();
    }
    res.once('close', () => {
      clearTimeout(timer);
      if (!res.writableFinished) controller.abort(new Error('call connection closed'));
    });
    return controller.signal;
  };
  return {
    callId: req.headers['fn-call-id'] || '',
    deadline,
    functionName,
    /** Aborted at the deadline or when the executor drops the call. */
    get signal() {
      return signalOf();
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Response mapping
// ---------------------------------------------------------------------------------------------

const RESPONSE_KEYS = new Set(['status', 'statusCode', 'headers', 'body']);

function isPlainObject(value) {
  if (typeof value !== 'object' || value === null) return false;
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

function isResponseShape(value) {
  if (!isPlainObject(value)) return false;
  if (typeof value.status === 'number' || typeof value.statusCode === 'number') return true;
  const keys = Object.keys(value);
  return keys.includes('body') && keys.every((k) => RESPONSE_KEYS.has(k));
}

function isBinary(value) {
  return Buffer.isBuffer(value) || value instanceof Uint8Array || value instanceof ArrayBuffer;
}

function toBuffer(value) {
  if (Buffer.isBuffer(value)) return value;
  if (value instanceof ArrayBuffer) return Buffer.from(value);
  return Buffer.from(value.buffer, value.byteOffset, value.byteLength);
}

/** A body value → [bytes, default content type or undefined]. */
function encodeBody(body) {
  if (body === undefined || body === null) return [Buffer.alloc(0), undefined];
  if (typeof body === 'string') return [Buffer.from(body, 'utf8'), 'text/plain; charset=utf-8'];
  if (isBinary(body)) return [toBuffer(body), 'application/octet-stream'];
  const json = JSON.stringify(body);
  if (json === undefined) throw new TypeError(`the function returned a body that cannot be sent (${typeof body})`);
  return [Buffer.from(json, 'utf8'), 'application/json'];
}

function normalizeHeaders(headers) {
  const out = new Map(); // lower-case name → { name, value }
  if (headers === undefined || headers === null) return out;
  const entries = headers instanceof Headers || headers instanceof Map ? [...headers.entries()] : Object.entries(headers);
  for (const [name, value] of entries) {
    if (value === undefined || value === null) continue;
    http.validateHeaderName(name);
    const values = (Array.isArray(value) ? value : [value]).map(String);
    for (const v of values) http.validateHeaderValue(name, v);
    out.set(name.toLowerCase(), { name, value: values.length === 1 ? values[0] : values });
  }
  return out;
}

/** Maps whatever the function returned to { status, headers (Map), body (Buffer) }. */
async function mapResult(result) {
  if (typeof Response !== 'undefined' && result instanceof Response) {
    const body = Buffer.from(await result.arrayBuffer());
    return { status: result.status, headers: normalizeHeaders(result.headers), body };
  }
  if (isResponseShape(result)) {
    const status = result.status ?? result.statusCode ?? 200;
    const headers = normalizeHeaders(result.headers);
    const [body, contentType] = encodeBody(result.body);
    if (contentType && !headers.has('content-type')) headers.set('content-type', { name: 'Content-Type', value: contentType });
    return { status, headers, body };
  }
  if (result === undefined || result === null) return { status: 204, headers: new Map(), body: Buffer.alloc(0) };
  const [body, contentType] = encodeBody(result);
  const headers = new Map();
  if (contentType) headers.set('content-type', { name: 'Content-Type', value: contentType });
  return { status: 200, headers, body };
}

function sendMapped(res, mapped) {
  const { status, headers, body } = mapped;
  if (!Number.isInteger(status) || status < 100 || status > 599) {
    throw new RangeError(`the function returned an invalid HTTP status: ${String(status)}`);
  }
  const out = {
    'Fn-Http-Status': String(status),
    'Fn-Fdk-Version': BOOTSTRAP_VERSION,
    'Content-Length': String(body.length),
  };
  for (const { name, value } of headers.values()) {
    if (name.toLowerCase() === 'content-length' || name.toLowerCase() === 'transfer-encoding') continue;
    out[`Fn-Http-H-${name}`] = value;
  }
  const contentType = headers.get('content-type');
  if (contentType) out['Content-Type'] = Array.isArray(contentType.value) ? contentType.value[0] : contentType.value;
  res.writeHead(200, out);
  res.end(body);
}

function sendError(res, callId, error) {
  process.stderr.write(`skiff-bootstrap: call ${callId || '-'} failed: ${formatError(error)}\n`);
  if (res.headersSent || res.destroyed) {
    res.destroy();
    return;
  }
  const message = error instanceof Error ? error.message : String(error);
  const body = Buffer.from(JSON.stringify({ error: { code: 'FUNCTION_ERROR', message } }), 'utf8');
  res.writeHead(200, {
    'Fn-Http-Status': '500',
    'Fn-Http-H-Content-Type': 'application/json',
    'Fn-Fdk-Version': BOOTSTRAP_VERSION,
    'Content-Type': 'application/json',
    'Content-Length': String(body.length),
  });
  res.end(body);
}

// ---------------------------------------------------------------------------------------------
// Serving
// ---------------------------------------------------------------------------------------------

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    req.on('data', (chunk) => chunks.push(chunk));
    req.once('end', () => resolve(chunks.length === 1 ? chunks[0] : Buffer.concat(chunks)));
    req.once('error', reject);
  });
}

/** The http-stream request listener of one handler. */
function callListener(handler) {
  return async (req, res) => {
    if (req.method !== 'POST') {
      const body = Buffer.from(JSON.stringify({ error: { code: 'BAD_REQUEST', message: 'the http-stream contract only takes POST /call' } }));
      res.writeHead(400, { 'Content-Type': 'application/json', 'Content-Length': String(body.length) });
      res.end(body);
      return;
    }
    const callId = req.headers['fn-call-id'] || '';
    let body;
    try {
      body = await readBody(req);
    } catch {
      res.destroy();
      return;
    }
    try {
      const request = buildRequest(req, body);
      const context = buildContext(req, res);
      const result = await handler(request, context);
      sendMapped(res, await mapResult(result));
    } catch (error) {
      sendError(res, callId, error);
    }
  };
}

/** An http-stream server around `onRequest` (no listening yet). */
function callServer(onRequest) {
  const server = http.createServer(onRequest);
  // The executor owns timeouts (Fn-Deadline); never cut a long call or an idle kept-alive socket.
  server.requestTimeout = 0;
  server.keepAliveTimeout = 0;
  server.headersTimeout = 60_000;
  return server;
}

/** Serves `handler` on FN_LISTENER. */
async function serve(handler, listenFile) {
  const listener = await openListener(callServer(callListener(handler)), listenFile, 'skiff');
  stopOnSignals(listener.server);
  await listener.publish();
}

/** SIGTERM/SIGINT: stop taking connections, let calls in flight end (briefly), exit. */
function stopOnSignals(server) {
  let stopping = false;
  const stop = () => {
    if (stopping) return;
    stopping = true;
    server.close(() => process.exit(0));
    server.closeIdleConnections();
    // In-flight calls get a short grace; Docker's stop timeout is the hard bound anyway.
    setTimeout(() => process.exit(0), 5_000).unref();
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

/**
 * Listens on a fresh socket next to `linkFile` (world-writable); `publish(link)` then links it at
 * `link` (default `linkFile`, same directory) as a relative symlink (atomic rename). A failure is fatal.
 */
function openListener(server, linkFile, prefix) {
  const dir = path.dirname(linkFile);
  const token = randomBytes(6).toString('hex');
  const socketName = `${prefix}-${token}.sock`;
  const socketFile = path.join(dir, socketName);
  const publish = async (link = linkFile) => {
    const tmpLink = path.join(dir, `.${path.basename(link)}-${token}.tmp`);
    try {
      await fsp.symlink(socketName, tmpLink);
      await fsp.rename(tmpLink, link);
    } catch (error) {
      fail(`cannot publish the listener at ${link}`, error);
    }
  };
  return new Promise((resolve) => {
    server.once('error', (error) => fail(`cannot listen on ${socketFile}`, error));
    server.listen(socketFile, async () => {
      try {
        await fsp.chmod(socketFile, 0o666);
      } catch (error) {
        fail(`cannot open the listener ${socketFile}`, error);
      }
      resolve({ server, publish });
    });
  });
}

// ---------------------------------------------------------------------------------------------
// Main
// ---------------------------------------------------------------------------------------------

const listenFile = listenerPath();
captureOutput(path.join(path.dirname(listenFile), LOG_SOCKET_FILE));

// Node as PID 1 gets no default signal handling: make `docker stop` work for every style. A
// program that installs its own handler (fdk style) keeps control; ours only exits if alone.
for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => {
    if (process.listenerCount(signal) <= 1) process.exit(0);
  });
}

/** The CommonJS module cache (one live object): tells whether a program loaded @fnproject/fdk. */
const requireCache = createRequire(import.meta.url).cache;

/** Imports the function: its handler, or null for a program (fdk style) that serves FN_LISTENER itself. */
async function importFunction(entry) {
  const mod = await import(pathToFileURL(entry).href);
  // A program that loaded @fnproject/fdk serves FN_LISTENER itself, whatever it exports (fdk.handle
  // returns a closer function, which must not be mistaken for a handler).
  const fdkLoaded = Object.keys(requireCache).some((file) => /[\\/]@fnproject[\\/]fdk[\\/]/.test(file));
  return fdkLoaded ? null : pickHandler(mod);
}

/** Style (b): the program serves FN_LISTENER itself (fdk.handle). Warns if it never does. */
function watchProgram(entry) {
  setTimeout(() => {
    if (!existsSync(listenFile)) {
      process.stderr.write(
        `skiff-bootstrap: ${entry} exports no function and has not opened ${listenFile} after 5s; ` +
          'export a default async (request, context) => response or call fdk.handle(...)\n',
      );
    }
  }, 5_000).unref();
}

/** Loads the function and serves it (a module), or lets it serve itself (a program). */
async function load(entry) {
  const handler = await importFunction(entry);
  if (handler) await serve(handler, listenFile);
  else watchProgram(entry);
}

function replyJson(res, status, value, headers = {}) {
  const body = Buffer.from(JSON.stringify(value), 'utf8');
  res.writeHead(status, { ...headers, 'Content-Type': 'application/json', 'Content-Length': String(body.length) });
  res.end(body);
}

/**
 * Stem cell: the call socket listens from the start; it answers GET /ready and one POST /specialize
 * until a handler is set, then every request on it is a call.
 */
function stemCell() {
  let handler = null;
  let specializing = false;
  const stemLink = path.join(path.dirname(listenFile), STEM_FILE);
  const onCall = callListener((request, context) => handler(request, context));
  const server = callServer((req, res) => (handler ? onCall(req, res) : stemRequest(req, res)));
  const opened = openListener(server, listenFile, 'skiff');

  async function stemRequest(req, res) {
    if (req.method === 'GET' && req.url === '/ready' && !specializing) {
      replyJson(res, 200, { stemCell: true });
      return;
    }
    if (req.method !== 'POST' || req.url !== '/specialize' || specializing) {
      replyJson(res, 400, { error: { code: 'BAD_REQUEST', message: 'a stem cell takes GET /ready and one POST /specialize' } });
      return;
    }
    specializing = true;
    let spec;
    try {
      spec = JSON.parse((await readBody(req)).toString('utf8'));
      for (const [key, value] of Object.entries(spec.env || {})) process.env[key] = String(value);
      functionName = spec.functionName || '';
      process.env.SKIFF_FUNCTION_NAME = functionName;
      process.env.FN_FN_NAME = functionName;
      process.env.SKIFF_HANDLER = spec.handler;
      delete process.env.SKIFF_STEMCELL;
      if (spec.cwd) process.chdir(spec.cwd);
      const loaded = await importFunction(spec.handler);
      const listener = await opened;
      // Specialized once: the stem cell's link goes (a ready stem cell is one with stem.sock).
      await fsp.unlink(stemLink).catch(() => {});
      if (loaded) {
        handler = loaded;
        stopOnSignals(server);
        replyJson(res, 200, { style: 'served' });
        // The executor calls on the connection it holds; the link is for everyone else.
        void listener.publish();
        return;
      }
      // Style (b): this socket is not the function's; the program opens FN_LISTENER itself.
      res.once('finish', () => {
        server.close();
        server.closeAllConnections();
      });
      replyJson(res, 200, { style: 'program' }, { Connection: 'close' });
      watchProgram(spec.handler);
    } catch (error) {
      process.stderr.write(`skiff-bootstrap: cannot load the function ${spec?.handler ?? '(no spec)'}\n${formatError(error)}\n`);
      res.once('finish', () => process.exit(1));
      replyJson(res, 500, { error: { code: 'FUNCTION_START_FAILED', message: formatError(error) } });
    }
  }

  // Warm the paths a specialization and its first call take (ESM loader, HTTP server and parser)
  // before saying ready, so they are not paid on the critical path.
  void warmUp()
    .catch((error) => process.stderr.write(`skiff-bootstrap: stem cell warm-up failed (continuing): ${formatError(error)}\n`))
    .then(() => opened)
    .then((listener) => listener.publish(stemLink));
}

/**
 * One throwaway dynamic import, then a few calls through the real call pipeline (request and
 * context building, response mapping, the HTTP server and client) over a unix socket in /tmp.
 */
async function warmUp() {
  await import('data:text/javascript,export default async () => 0');
  // The file loaders too (resolution, package.json scope lookup, the CommonJS translator).
  const dir = await fsp.mkdtemp('/tmp/.skiff-warmup-');
  await fsp.writeFile(path.join(dir, 'package.json'), '{"type":"commonjs"}');
  await fsp.writeFile(path.join(dir, 'a.js'), 'module.exports = async function a() { return require("node:path").sep; };');
  await fsp.writeFile(path.join(dir, 'b.mjs'), 'export default async function b() { return 0; }');
  for (const file of ['a.js', 'b.mjs']) pickHandler(await import(pathToFileURL(path.join(dir, file)).href));
  await fsp.rm(dir, { recursive: true, force: true });
  // process.stdout/stderr are created lazily; a function's first log line must not pay for it.
  void process.stdout;
  void process.stderr;
  const socketPath = path.join('/tmp', `.skiff-warmup-${randomBytes(4).toString('hex')}.sock`);
  const server = callServer(callListener(async (request) => ({ status: 200, headers: { 'content-type': 'text/plain', 'x-warm': '1' }, body: request.body.toString('utf8') })));
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(socketPath, resolve);
  });
  try {
    for (let i = 0; i < 3; i++) {
      await new Promise((resolve, reject) => {
        const headers = {
          'Fn-Call-Id': 'warmup',
          'Fn-Deadline': new Date(Date.now() + 60_000).toISOString(),
          'Fn-Http-Method': 'POST',
          'Fn-Http-Request-Url': '/function/warmup/path?a=1&b=2',
          'Fn-Http-H-Content-Type': 'text/plain',
          'Content-Type': 'text/plain',
        };
        const req = http.request({ socketPath, path: '/call', method: 'POST', headers }, (res) => {
          res.resume();
          res.once('end', resolve);
        });
        req.once('error', reject);
        req.end(Buffer.from('warm-up'));
      });
    }
  } finally {
    server.close();
    server.closeAllConnections();
    await fsp.unlink(socketPath).catch(() => {});
  }
}

if (process.env.SKIFF_STEMCELL === '1') {
  stemCell();
} else {
  const entry = handlerPath();
  try {
    await load(entry);
  } catch (error) {
    fail(`cannot load the function ${entry}`, error);
  }
}
