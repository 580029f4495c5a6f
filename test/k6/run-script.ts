/**
 * The k6 adapter: runs a k6 script under Node against a live gateway, with `k6`, `k6/http` and
 * `k6/metrics` replaced by shims (hooks.mjs) that really send its requests. Runs setup(), the
 * default function K6_ADAPTER_ITERATIONS (2) times as one virtual user, then teardown(), and
 * prints one line `K6_ADAPTER_RESULT <json>` with the options, requests, checks and metrics.
 * Usage: node --import tsx test/k6/run-script.ts k6/smoke.ts   (SKIFF_URL in the environment)
 */
import { readFileSync } from 'node:fs';
import { register } from 'node:module';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

register('./hooks.mjs', import.meta.url);

interface K6Script {
  options?: unknown;
  setup?: () => unknown;
  default?: (data: unknown) => void;
  teardown?: (data: unknown) => void;
}

const scriptFile = process.argv[2];
if (!scriptFile) throw new Error('usage: run-script.ts <k6 script>');
const iterations = Number(process.env.K6_ADAPTER_ITERATIONS ?? 2);

const globals = globalThis as Record<string, unknown>;
globals.__ENV = Object.fromEntries(Object.entries(process.env).filter((e): e is [string, string] => e[1] !== undefined));
globals.__VU = 1;
globals.__ITER = 0;
globals.open = (file: string, mode?: string) => (mode === 'b' ? readFileSync(path.resolve(path.dirname(scriptFile), file)).buffer : readFileSync(path.resolve(path.dirname(scriptFile), file), 'utf8'));

const { state } = await import('./shim/state.ts');
const script = (await import(pathToFileURL(path.resolve(scriptFile)).href)) as K6Script;
let error = '';
try {
  if (typeof script.default !== 'function') throw new Error('the script has no default function');
  const data = script.setup?.();
  for (let i = 0; i < iterations; i++) {
    globals.__ITER = i;
    try {
      script.default(data);
    } catch (err) {
      // As in k6: an exception ends the iteration, not the test.
      state.failures.push(`iteration ${i}: ${(err as Error).message}`);
    }
  }
  script.teardown?.(data);
} catch (err) {
  error = (err as Error).message;
}
process.stdout.write(`K6_ADAPTER_RESULT ${JSON.stringify({ options: script.options ?? null, error, ...state })}\n`);
process.exit(0);
