/**
 * The adapter's `k6/http`: get, post, request, expectedStatuses and setResponseCallback, made
 * synchronous like k6's by handing each request to a worker thread and blocking until it answers.
 * Every request and its answer are recorded (state.ts).
 */
import { MessageChannel, receiveMessageOnPort, Worker } from 'node:worker_threads';
import { state } from './state.ts';

const REQUEST_TIMEOUT_MS = 120_000;

interface Params {
  headers?: Record<string, string>;
  tags?: Record<string, string>;
}

interface WireReply {
  status: number;
  headers: Record<string, string>;
  body: string | null;
  error: string;
}

export interface AdapterResponse extends WireReply {
  url: string;
  json(): unknown;
}

const signal = new Int32Array(new SharedArrayBuffer(4));
const { port1, port2 } = new MessageChannel();
const worker = new Worker(new URL('./sync-http-worker.mjs', import.meta.url), { execArgv: [] });
worker.postMessage({ signal, port: port2 }, [port2]);
worker.unref();
port1.unref();

function errorCode(body: string | null): string {
  if (!body || !body.startsWith('{')) return '';
  try {
    const parsed = JSON.parse(body) as { error?: { code?: string } };
    return parsed.error?.code ?? '';
  } catch {
    return '';
  }
}

/** k6's http.request: blocks until the answer is in; status 0 and `error` on a network failure. */
export function request(method: string, url: string, body?: string | null, params: Params = {}): AdapterResponse {
  Atomics.store(signal, 0, 0);
  port1.postMessage({ method, url, headers: params.headers ?? {}, body: body ?? null });
  if (Atomics.wait(signal, 0, 0, REQUEST_TIMEOUT_MS) === 'timed-out') throw new Error(`${method} ${url}: no answer in ${REQUEST_TIMEOUT_MS} ms`);
  const reply = receiveMessageOnPort(port1)?.message as WireReply | undefined;
  if (!reply) throw new Error(`${method} ${url}: the HTTP worker answered nothing`);
  state.requests.push({ method, url, status: reply.status, errorCode: errorCode(reply.body), name: params.tags?.name ?? '' });
  return {
    ...reply,
    url,
    json() {
      return JSON.parse(reply.body ?? 'null');
    },
  };
}

/** k6's http.get. */
export function get(url: string, params?: Params): AdapterResponse {
  return request('GET', url, null, params);
}

/** k6's http.post. */
export function post(url: string, body?: string | null, params?: Params): AdapterResponse {
  return request('POST', url, body, params);
}

/** k6's http.put. */
export function put(url: string, body?: string | null, params?: Params): AdapterResponse {
  return request('PUT', url, body, params);
}

/** k6's http.del. */
export function del(url: string, body?: string | null, params?: Params): AdapterResponse {
  return request('DELETE', url, body, params);
}

/** k6's http.expectedStatuses (plain numbers only). */
export function expectedStatuses(...statuses: number[]): { statuses: number[] } {
  return { statuses };
}

/** k6's http.setResponseCallback: recorded, so a test can see what a script expects. */
export function setResponseCallback(callback: { statuses: number[] }): void {
  state.expectedStatuses = callback.statuses;
}

export default { request, get, post, put, del, expectedStatuses, setResponseCallback };
