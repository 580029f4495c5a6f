/**
 * The k6 scripts parse and load (their init code runs under the adapter) and their thresholds
 * are ones k6 accepts; no gateway needed (setup() fails on the unreachable URL, after init).
 */
import { describe, expect, it } from 'vitest';
import { k6Scripts, runK6Script } from './adapter.ts';
import { thresholdProblems } from './thresholds.ts';

const UNREACHABLE = 'http://127.0.0.1:9';

describe('k6 scripts', () => {
  it('has the scenarios the issue names: smoke, warm-invoke, burst, soak, async', () => {
    expect(k6Scripts().map((s) => s.replace(/^k6\/|\.ts$/g, ''))).toEqual(expect.arrayContaining(['smoke', 'warm-invoke', 'burst', 'soak', 'async']));
  });

  for (const script of k6Scripts()) {
    it(`${script} loads, declares thresholds k6 accepts, and stops with a clear message when Skiff is unreachable`, async () => {
      const run = await runK6Script(script, { SKIFF_URL: UNREACHABLE, K6_ADAPTER_ITERATIONS: '0' });
      const thresholds = run.options?.thresholds ?? {};
      expect(Object.keys(thresholds).length).toBeGreaterThan(0);
      const custom = Object.fromEntries(Object.entries(run.metrics).map(([name, m]) => [name, m.type]));
      expect(thresholdProblems(thresholds, custom)).toEqual([]);
      // Every script bounds latency (a p-threshold) and failures (a rate threshold).
      expect(Object.values(thresholds).flat().some((t) => typeof t === 'string' && t.startsWith('p('))).toBe(true);
      expect(Object.values(thresholds).flat().some((t) => typeof t === 'string' && t.startsWith('rate'))).toBe(true);
      expect(run.error).toContain(`Skiff is not reachable at ${UNREACHABLE}`);
    }, 60_000);
  }
});

describe('thresholdProblems', () => {
  it.each([
    [{ http_req_duration: ['p(99)<50'] }, []],
    [{ 'http_req_duration{name:POST /function/:name}': ['p(99.9)<=50'] }, []],
    [{ checks: ['rate==1'] }, []],
    [{ nope: ['p(99)<50'] }, ['nope: nope is neither a k6 metric nor one the script declares']],
    [{ http_req_duration: ['p99<50'] }, ['http_req_duration: "p99<50" is not <aggregation> <op> <number>']],
    [{ http_req_failed: ['p(99)<1'] }, ['http_req_failed: "p(99)<1" does not fit a rate metric']],
  ])('judges %j as k6 would', (thresholds, problems) => {
    expect(thresholdProblems(thresholds, {})).toEqual(problems);
  });
});
