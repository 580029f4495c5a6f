/**
 * Soak: an open-model constant arrival rate, K6_RATE (50) calls per second for K6_DURATION
 * (30m), so a slow Skiff builds up a backlog instead of hiding it. Thresholds: p99 under
 * K6_P99_MS (100), failures under K6_MAX_ERROR_RATE (0.001), and no call dropped for lack of VUs.
 * Run: k6 run -e SKIFF_URL=... -e K6_RATE=200 -e K6_DURATION=2h k6/soak.ts
 */
import type { Options } from 'k6/options';
import { envNumber, invokeAndCheck, makePayload, PAYLOAD_BYTES, requireFunction } from './lib/skiff.ts';

const body = makePayload(PAYLOAD_BYTES);
const rate = envNumber('K6_RATE', 50);

export const options: Options = {
  scenarios: {
    soak: {
      executor: 'constant-arrival-rate',
      rate,
      timeUnit: '1s',
      duration: __ENV.K6_DURATION || '30m',
      preAllocatedVUs: Math.max(4, Math.ceil(rate / 10)),
      maxVUs: Math.max(50, rate * 2),
    },
  },
  thresholds: {
    'http_req_duration{name:POST /function/:name}': [`p(99)<${envNumber('K6_P99_MS', 100)}`],
    http_req_failed: [`rate<${envNumber('K6_MAX_ERROR_RATE', 0.001)}`],
    dropped_iterations: ['count==0'],
    checks: ['rate>0.999'],
  },
};

export function setup(): void {
  requireFunction();
}

export default function soak(): void {
  invokeAndCheck(body);
}
