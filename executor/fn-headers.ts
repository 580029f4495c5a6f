/**
 * The Fn http-stream header mapping, as pure functions. In: the caller's request becomes
 * Fn-Call-Id, Fn-Deadline, Fn-Http-Method, Fn-Http-Request-Url and one Fn-Http-H-<name> per
 * caller header. Out: Fn-Http-Status and Fn-Http-H-<name> become the caller's status and headers.
 * Hot path: called once per invocation each way; plain loops, no regex per header.
 */
import type { InvokeHeader } from '../bus/index.ts';
import { SkiffError } from '../errors.ts';

const FN_HTTP_H = 'fn-http-h-';
const FN_PREFIX = 'fn-';

/** Connection-level request headers that describe the caller's hop, not the request. */
const HOP_BY_HOP_REQUEST = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'content-length',
  'expect',
]);

/** Response headers the gateway sets itself; a function's values for them are dropped. */
const DROPPED_RESPONSE = new Set(['content-length', 'connection', 'date', 'keep-alive', 'transfer-encoding']);

/** Header names must be HTTP tokens; values must not carry CR, LF or NUL (undici would throw). */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
function isSafeValue(value: string): boolean {
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if (c === 0x0a || c === 0x0d || c === 0x00) return false;
  }
  return true;
}

/** `/function/<name><path>?<query>`, the URL the function sees in Fn-Http-Request-Url. */
export function fnRequestUrl(functionName: string, path: string, query: string): string {
  const p = path === '' ? '/' : path.startsWith('/') ? path : `/${path}`;
  return `/function/${functionName}${p}${query === '' ? '' : `?${query}`}`;
}

/** The request headers of the container call for one invocation. */
export function toFnRequestHeaders(invoke: InvokeHeader, functionName: string): Record<string, string> {
  const headers: Record<string, string> = {
    'fn-call-id': invoke.id,
    'fn-deadline': new Date(invoke.deadlineMs).toISOString(),
    'fn-http-method': invoke.method.toUpperCase(),
    'fn-http-request-url': fnRequestUrl(functionName, invoke.path, invoke.query),
  };
  for (const [rawName, value] of Object.entries(invoke.headers)) {
    const name = rawName.toLowerCase();
    if (HOP_BY_HOP_REQUEST.has(name) || !TOKEN.test(name) || typeof value !== 'string' || !isSafeValue(value)) continue;
    headers[`${FN_HTTP_H}${name}`] = value;
    if (name === 'content-type') headers['content-type'] = value;
  }
  return headers;
}

/** What the function answered, mapped for the caller. */
export interface FnResponseHead {
  status: number;
  headers: Record<string, string>;
}

type RawHeaders = Record<string, string | string[] | undefined>;

function single(value: string | string[] | undefined): string | undefined {
  if (value === undefined) return undefined;
  return Array.isArray(value) ? value.join(', ') : value;
}

/**
 * Maps the container's response head: status from Fn-Http-Status (else the HTTP status), headers
 * from every Fn-Http-H-<name>, plus Content-Type. Throws FUNCTION_BAD_RESPONSE on a bad status.
 */
export function fromFnResponseHeaders(httpStatus: number, raw: RawHeaders): FnResponseHead {
  const fnStatus = single(raw['fn-http-status']);
  let status = httpStatus;
  if (fnStatus !== undefined) {
    status = Number(fnStatus.trim());
    if (!Number.isInteger(status) || status < 100 || status > 599) {
      throw new SkiffError('FUNCTION_BAD_RESPONSE', `the function answered an invalid Fn-Http-Status: ${JSON.stringify(fnStatus)}`);
    }
  }
  const headers: Record<string, string> = {};
  for (const [rawName, rawValue] of Object.entries(raw)) {
    const value = single(rawValue);
    if (value === undefined) continue;
    const lower = rawName.toLowerCase();
    if (!lower.startsWith(FN_HTTP_H)) continue;
    const name = lower.slice(FN_HTTP_H.length);
    if (name === '' || DROPPED_RESPONSE.has(name) || name.startsWith(FN_PREFIX)) continue;
    headers[name] = value;
  }
  const contentType = single(raw['content-type']);
  if (headers['content-type'] === undefined && contentType !== undefined) headers['content-type'] = contentType;
  return { status, headers };
}
