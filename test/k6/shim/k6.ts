/**
 * The adapter's `k6` module: check, fail, group and sleep, as k6 defines them, recording checks.
 */
import { state } from './state.ts';

const sleeper = new Int32Array(new SharedArrayBuffer(4));

/** Runs each named test on the value, records it, and answers whether all passed. */
export function check<T>(value: T, sets: Record<string, (v: T) => boolean>): boolean {
  let all = true;
  for (const [name, test] of Object.entries(sets)) {
    let ok = false;
    try {
      ok = Boolean(test(value));
    } catch {
      ok = false;
    }
    const entry = (state.checks[name] ??= { passes: 0, fails: 0 });
    if (ok) entry.passes++;
    else entry.fails++;
    all &&= ok;
  }
  return all;
}

/** k6's fail(): throws, which ends the iteration (or the test in setup). */
export function fail(message?: string): never {
  state.failures.push(message ?? 'fail()');
  throw new Error(message ?? 'fail()');
}

/** k6's group(): runs `fn` (groups only tag metrics in k6). */
export function group<T>(_name: string, fn: () => T): T {
  return fn();
}

/** Blocks like k6's sleep (k6 code is synchronous), capped so a test does not wait long. */
export function sleep(seconds: number): void {
  Atomics.wait(sleeper, 0, 0, Math.min(seconds, 1) * 1000);
}

export default { check, fail, group, sleep };
