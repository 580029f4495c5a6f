/**
 * Async with status polling: POST /async-function/:name must answer 202 with X-Call-Id (the call
 * is durably queued), then GET /system/invocations/:id is polled every K6_POLL_MS (100) until the
 * status leaves queued/running; it must end `succeeded` with the payload as its result, within
 * K6_ASYNC_TIMEOUT_MS (30000). skiff_async_completion_ms (submit → succeeded) p99 under
 * K6_P99_MS (5000). K6_VUS (4) users for K6_DURATION (30s).
 * Run: k6 run -e SKIFF_URL=... k6/async.ts
 */
import { check, sleep } from 'k6';
import { Rate, Trend } from 'k6/metrics';
import type { Options } from 'k6/options';
import { callId, envNumber, getInvocation, invokeAsync, makePayload, PAYLOAD_BYTES, requireFunction, text } from './lib/skiff.ts';

const body = makePayload(PAYLOAD_BYTES);
const POLL_S = envNumber('K6_POLL_MS', 100) / 1000;
const TIMEOUT_MS = envNumber('K6_ASYNC_TIMEOUT_MS', 30000);
const completion = new Trend('skiff_async_completion_ms', true);
const succeeded = new Rate('skiff_async_succeeded');
/** Statuses an async invocation passes through before it is done. */
const PENDING = ['queued', 'running'];

interface AsyncView {
  status: string;
  result: { status: number; body: string; bodyEncoding: string } | null;
}

export const options: Options = {
  scenarios: {
    async: { executor: 'constant-vus', vus: envNumber('K6_VUS', 4), duration: __ENV.K6_DURATION || '30s' },
  },
  thresholds: {
    skiff_async_succeeded: ['rate==1'],
    skiff_async_completion_ms: [`p(99)<${envNumber('K6_P99_MS', 5000)}`],
    'http_req_duration{name:POST /async-function/:name}': [`p(99)<${envNumber('K6_SUBMIT_P99_MS', 200)}`],
    checks: ['rate==1'],
  },
};

export function setup(): void {
  requireFunction();
}

export default function asyncInvoke(): void {
  const started = Date.now();
  const submitted = invokeAsync(body);
  const id = callId(submitted);
  const accepted = check(submitted, {
    'submit answers 202': (r) => r.status === 202,
    'submit carries X-Call-Id': () => id !== '',
  });
  if (!accepted) {
    succeeded.add(false);
    return;
  }
  let view: AsyncView | undefined;
  while (Date.now() - started < TIMEOUT_MS) {
    const res = getInvocation(id);
    if (res.status === 200) {
      view = JSON.parse(text(res)) as AsyncView;
      if (!PENDING.includes(view.status)) break;
    }
    sleep(POLL_S);
  }
  const ok = check(view, {
    'ends succeeded': (v) => v?.status === 'succeeded',
    'result is the payload': (v) => v?.result?.status === 200 && v.result.body === body,
  });
  succeeded.add(ok);
  if (ok) completion.add(Date.now() - started);
}
