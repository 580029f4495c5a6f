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

import { randomBytes } from 'node:crypto';
import { existsSync, promises as fsp } from 'node:fs';
import http from 'node:http';
import { createRequire } from 'node:module';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

const BOOTSTRAP_VERSION = 'skiff-bootstrap/1';
const FN_HTTP_H = 'fn-http-h-';
const NO_DEADLINE = 8.64e15;

const functionName = process.env.SKIFF_FUNCTION_NAME || process.env.FN_FN_NAME || '';

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

function buildContext(req, res) {
  const parsed = Date.parse(req.headers['fn-deadline'] || '');
  const deadline = new Date(Number.isFinite(parsed) ? parsed : NO_DEADLINE);
  const controller = new AbortController();
  let timer;
  if (Number.isFinite(parsed)) {
    const delay = Math.max(0, Math.min(parsed - Date.now(), 2_147_483_647));
    timer = setTimeout(() => controller.abort(new Error('deadline exceeded')), delay);
    timer.unref();
  }
  const onClose = () => {
    clearTimeout(timer);
    if (!res.writableFinished) controller.abort(new Error('call connection closed'));
  };
  res.once('close', onClose);
  return {
    callId: req.headers['fn-call-id'] || '',
    deadline,
    functionName,
    /** Aborted at the deadline or when the executor drops the call. */
    signal: controller.signal,
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

function serve(handler, listenFile) {
  const server = http.createServer(async (req, res) => {
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
  });
  // The executor owns timeouts (Fn-Deadline); never cut a long call or an idle kept-alive socket.
  server.requestTimeout = 0;
  server.keepAliveTimeout = 0;
  server.headersTimeout = 60_000;

  const dir = path.dirname(listenFile);
  const token = randomBytes(6).toString('hex');
  const socketName = `skiff-${token}.sock`;
  const socketFile = path.join(dir, socketName);
  const tmpLink = path.join(dir, `.lsnr-${token}.tmp`);

  server.once('error', (error) => fail(`cannot listen on ${socketFile}`, error));
  server.listen(socketFile, async () => {
    try {
      await fsp.chmod(socketFile, 0o666);
      await fsp.symlink(socketName, tmpLink);
      await fsp.rename(tmpLink, listenFile);
    } catch (error) {
      fail(`cannot publish the listener at ${listenFile}`, error);
    }
  });

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

// ---------------------------------------------------------------------------------------------
// Main
// ---------------------------------------------------------------------------------------------

const listenFile = listenerPath();
const entry = handlerPath();

// Node as PID 1 gets no default signal handling: make `docker stop` work for every style. A
// program that installs its own handler (fdk style) keeps control; ours only exits if alone.
for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => {
    if (process.listenerCount(signal) <= 1) process.exit(0);
  });
}

let mod;
try {
  mod = await import(pathToFileURL(entry).href);
} catch (error) {
  fail(`cannot load the function ${entry}`, error);
}

// A program that loaded @fnproject/fdk serves FN_LISTENER itself, whatever it exports (fdk.handle
// returns a closer function, which must not be mistaken for a handler).
const fdkLoaded = Object.keys(createRequire(import.meta.url).cache).some((file) => /[\\/]@fnproject[\\/]fdk[\\/]/.test(file));
const handler = fdkLoaded ? null : pickHandler(mod);
if (handler) {
  serve(handler, listenFile);
} else {
  // Style (b): the program serves FN_LISTENER itself (fdk.handle). Warn if it never does.
  setTimeout(() => {
    if (!existsSync(listenFile)) {
      process.stderr.write(
        `skiff-bootstrap: ${entry} exports no function and has not opened ${listenFile} after 5s; ` +
          'export a default async (request, context) => response or call fdk.handle(...)\n',
      );
    }
  }, 5_000).unref();
}
