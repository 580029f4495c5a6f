/**
 * Burst: K6_BURST_CALLS (500) calls at once, one per virtual user, to a function with no warm
 * container (deploy a fresh one first: skiff deploy examples/echo --name burst-echo, then
 * -e SKIFF_FUNCTION=burst-echo). Every answer must be 200 or 429 (queue full, with Retry-After);
 * anything else fails the run. p99 of the 200s under K6_P99_MS (30000).
 * Run: k6 run -e SKIFF_URL=... -e SKIFF_FUNCTION=burst-echo k6/burst.ts
 */
import { check } from 'k6';
import http from 'k6/http';
import { Counter, Rate } from 'k6/metrics';
import type { Options } from 'k6/options';
import { envNumber, invoke, makePayload, PAYLOAD_BYTES, requireFunction, text } from './lib/skiff.ts';

const CALLS = envNumber('K6_BURST_CALLS', 500);
const body = makePayload(PAYLOAD_BYTES);
/** Answers other than 200 and 429: must stay at 0. */
const unexpected = new Rate('skiff_unexpected_answers');
const rejected = new Counter('skiff_rejected_429');

// 429 is an expected answer to a burst; only other statuses count as failed requests.
http.setResponseCallback(http.expectedStatuses(200, 429));

export const options: Options = {
  scenarios: {
    burst: { executor: 'per-vu-iterations', vus: CALLS, iterations: 1, maxDuration: __ENV.K6_MAX_DURATION || '120s' },
  },
  thresholds: {
    skiff_unexpected_answers: ['rate==0'],
    'http_req_duration{name:POST /function/:name,expected_response:true}': [`p(99)<${envNumber('K6_P99_MS', 30000)}`],
    checks: ['rate==1'],
  },
};

export function setup(): void {
  requireFunction();
}

export default function burst(): void {
  const res = invoke(body);
  const ok = res.status === 200 || res.status === 429;
  unexpected.add(!ok);
  if (res.status === 429) rejected.add(1);
  check(res, {
    'answered 200 or 429': () => ok,
    '200s echo the payload': (r) => r.status !== 200 || text(r) === body,
    '429s carry Retry-After': (r) => r.status !== 429 || Object.keys(r.headers).some((h) => h.toLowerCase() === 'retry-after'),
  });
}
