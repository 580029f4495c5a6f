/**
 * Each k6 script run through the adapter against a real Skiff (`skiff up`, examples deployed):
 * every request it makes hits a route the live gateway has (no ROUTE_NOT_FOUND) and that docs/
 * documents, its checks all pass, and it neither fails nor throws. A route still being built
 * (the async API) is skipped while the live gateway does not have it.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSkiff, type SkiffUnderTest } from '../e2e/harness.ts';
import { documentedRoutes, k6Scripts, matchRoute, runK6Script } from './adapter.ts';

/** Small loads: the adapter is one virtual user; this is about routes and payloads, not speed. */
const ENV = { K6_ADAPTER_ITERATIONS: '2', SKIFF_FUNCTION: 'echo', SKIFF_PAYLOAD_BYTES: '1000' };

describe('k6 scripts against the live API', () => {
  let skiff: SkiffUnderTest;

  beforeAll(async () => {
    skiff = await startSkiff({ backend: 'chdb', examples: true });
  });

  afterAll(async () => {
    await skiff?.stop();
  });

  for (const script of k6Scripts()) {
    it(`${script}: every request hits a live, documented route with the payload the API expects, and every check passes`, async (ctx) => {
      const run = await runK6Script(script, { ...ENV, SKIFF_URL: skiff.url });
      const missing = run.requests.filter((r) => r.errorCode === 'ROUTE_NOT_FOUND');
      if (missing.length > 0 && missing.every((r) => new URL(r.url).pathname.startsWith('/async-function/'))) {
        ctx.skip(`the live gateway has no ${missing[0].method} /async-function/:name yet`);
      }
      expect(run.error).toBe('');
      expect(run.failures).toEqual([]);
      expect(missing).toEqual([]);
      expect(run.requests.length).toBeGreaterThan(0);
      const failed = Object.entries(run.checks).filter(([, c]) => c.fails > 0);
      expect(failed).toEqual([]);
      expect(Object.keys(run.checks).length).toBeGreaterThan(0);
      const routes = documentedRoutes();
      expect(run.requests.filter((r) => !matchRoute(routes, r.method, r.url)).map((r) => `${r.method} ${new URL(r.url).pathname}`)).toEqual([]);
    }, 120_000);
  }
});
