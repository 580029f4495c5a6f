/**
 * Smoke: one virtual user checks every route the other scripts use, a few times: health,
 * readiness, the function's definition, a sync call echoed back, its record listed.
 * Run: k6 run -e SKIFF_URL=http://127.0.0.1:8080 k6/smoke.ts
 */
import { check, sleep } from 'k6';
import type { Options } from 'k6/options';
import { health, invokeAndCheck, listInvocations, makePayload, PAYLOAD_BYTES, requireFunction } from './lib/skiff.ts';

export const options: Options = {
  vus: 1,
  iterations: 5,
  thresholds: {
    checks: ['rate==1'],
    http_req_failed: ['rate==0'],
    'http_req_duration{name:POST /function/:name}': ['p(99)<1000'],
  },
};

export function setup(): void {
  requireFunction();
}

export default function smoke(): void {
  const { healthz, readyz } = health();
  check(healthz, { 'healthz is 200': (r) => r.status === 200 });
  check(readyz, { 'readyz is 200': (r) => r.status === 200 });
  invokeAndCheck(makePayload(PAYLOAD_BYTES));
  check(listInvocations(), { 'invocations list is 200': (r) => r.status === 200 });
  sleep(0.1);
}
