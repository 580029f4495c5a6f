/**
 * Warm invoke: K6_VUS (16) virtual users call the function back to back for K6_DURATION (30s);
 * the first call in setup() warms a container. Thresholds: p99 under K6_P99_MS (50) and failed
 * requests under K6_MAX_ERROR_RATE (0.001).
 * Run: k6 run -e SKIFF_URL=http://127.0.0.1:8080 -e K6_VUS=64 k6/warm-invoke.ts
 */
import type { Options } from 'k6/options';
import { envNumber, invoke, invokeAndCheck, makePayload, PAYLOAD_BYTES, requireFunction } from './lib/skiff.ts';

const body = makePayload(PAYLOAD_BYTES);

export const options: Options = {
  scenarios: {
    warm: { executor: 'constant-vus', vus: envNumber('K6_VUS', 16), duration: __ENV.K6_DURATION || '30s' },
  },
  thresholds: {
    'http_req_duration{name:POST /function/:name}': [`p(99)<${envNumber('K6_P99_MS', 50)}`],
    http_req_failed: [`rate<${envNumber('K6_MAX_ERROR_RATE', 0.001)}`],
    checks: ['rate>0.999'],
  },
};

export function setup(): void {
  requireFunction();
  invoke(body);
}

export default function warmInvoke(): void {
  invokeAndCheck(body);
}
