/**
 * What every k6 script shares: where Skiff is, which function to call, the requests the scripts
 * make (one function per route of docs/api.md), and thresholds read from the environment.
 * Environment: SKIFF_URL (http://127.0.0.1:8080), SKIFF_FUNCTION (echo: `skiff up` deploys it),
 * SKIFF_PAYLOAD_BYTES (100).
 */
import { check, fail } from 'k6';
import http, { type RefinedResponse, type ResponseType } from 'k6/http';

export const BASE_URL = (__ENV.SKIFF_URL || 'http://127.0.0.1:8080').replace(/\/+$/, '');
export const FUNCTION = __ENV.SKIFF_FUNCTION || 'echo';
export const PAYLOAD_BYTES = Number(__ENV.SKIFF_PAYLOAD_BYTES || 100);

/** A number from the environment, else the default: thresholds and loads are knobs. */
export function envNumber(name: string, fallback: number): number {
  const raw = __ENV[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value)) fail(`${name} must be a number, got "${raw}"`);
  return value;
}

/** A printable payload of `bytes` bytes (the echo function sends it back unchanged). */
export function makePayload(bytes: number): string {
  const unit = 'skiff-k6-payload-';
  let out = '';
  while (out.length < bytes) out += unit;
  return out.slice(0, bytes);
}

const OCTETS = { 'content-type': 'application/octet-stream' };

/** POST /function/:name: the sync call. */
export function invoke(body: string, name: string = FUNCTION): RefinedResponse<ResponseType | undefined> {
  return http.post(`${BASE_URL}/function/${name}`, body, { headers: OCTETS, tags: { name: 'POST /function/:name' } });
}

/** POST /async-function/:name: 202 with X-Call-Id once the call is durably queued. */
export function invokeAsync(body: string, name: string = FUNCTION): RefinedResponse<ResponseType | undefined> {
  return http.post(`${BASE_URL}/async-function/${name}`, body, { headers: OCTETS, tags: { name: 'POST /async-function/:name' } });
}

/** GET /system/invocations/:id: an invocation's status (async: queued → running → succeeded). */
export function getInvocation(id: string): RefinedResponse<ResponseType | undefined> {
  return http.get(`${BASE_URL}/system/invocations/${encodeURIComponent(id)}`, { tags: { name: 'GET /system/invocations/:id' } });
}

/** GET /system/invocations?function=&limit=: newest records first. */
export function listInvocations(name: string = FUNCTION, limit = 5): RefinedResponse<ResponseType | undefined> {
  return http.get(`${BASE_URL}/system/invocations?function=${encodeURIComponent(name)}&limit=${limit}`, { tags: { name: 'GET /system/invocations' } });
}

/** GET /system/functions/:name. */
export function getFunction(name: string = FUNCTION): RefinedResponse<ResponseType | undefined> {
  return http.get(`${BASE_URL}/system/functions/${name}`, { tags: { name: 'GET /system/functions/:name' } });
}

/** GET /healthz and GET /readyz. */
export function health(): { healthz: RefinedResponse<ResponseType | undefined>; readyz: RefinedResponse<ResponseType | undefined> } {
  return { healthz: http.get(`${BASE_URL}/healthz`, { tags: { name: 'GET /healthz' } }), readyz: http.get(`${BASE_URL}/readyz`, { tags: { name: 'GET /readyz' } }) };
}

/** The response body as text ('' when there is none). */
export function text(res: { body: string | ArrayBuffer | null }): string {
  if (typeof res.body === 'string') return res.body;
  return res.body === null ? '' : String.fromCharCode(...new Uint8Array(res.body));
}

/** The X-Call-Id response header, case-insensitively. */
export function callId(res: { headers: Record<string, string> }): string {
  for (const [name, value] of Object.entries(res.headers)) if (name.toLowerCase() === 'x-call-id') return value;
  return '';
}

/** setup(): stops the test with a clear message when Skiff is down or the function is missing. */
export function requireFunction(name: string = FUNCTION): void {
  const res = getFunction(name);
  if (res.status === 0) fail(`Skiff is not reachable at ${BASE_URL} (set SKIFF_URL)`);
  if (res.status !== 200) fail(`function "${name}" is not deployed at ${BASE_URL}: GET /system/functions/${name} answered ${res.status}. Deploy it: skiff deploy examples/echo --name ${name}`);
}

/** One sync call whose answer must be the payload echoed back. */
export function invokeAndCheck(body: string, name: string = FUNCTION): boolean {
  const res = invoke(body, name);
  return check(res, {
    'status is 200': (r) => r.status === 200,
    'echoes the payload': (r) => text(r) === body,
    'has X-Call-Id': (r) => callId(r) !== '',
  });
}
