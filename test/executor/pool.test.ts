/** WarmPool policy with a fake launcher (no Docker): which container a call gets, and when. */
import { describe, expect, it } from 'vitest';
import type { FunctionSpec } from '../../bus/index.ts';
import { SkiffError } from '../../errors.ts';
import type { FunctionContainer, InvocationRef, RemovalReason } from '../../executor/container.ts';
import { WarmPool, type ContainerLauncher } from '../../executor/pool.ts';
import type { DeployedFunction } from '../../executor/registry.ts';

function deferred(): { promise: Promise<void>; resolve: () => void; reject: (err: Error) => void } {
  let resolve!: () => void;
  let reject!: (err: Error) => void;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

class FakeLauncher implements ContainerLauncher {
  readonly launches: Array<{ container: FunctionContainer; done: ReturnType<typeof deferred> }> = [];
  readonly destroyed: Array<{ container: FunctionContainer; reason: RemovalReason }> = [];
  #next = 0;

  launch(container: FunctionContainer): Promise<void> {
    container.id = `c${++this.#next}`;
    const done = deferred();
    this.launches.push({ container, done });
    return done.promise;
  }

  async destroy(container: FunctionContainer, reason: RemovalReason): Promise<void> {
    this.destroyed.push({ container, reason });
  }
}

function deployed(concurrency: number, name = 'fn'): DeployedFunction {
  const spec: FunctionSpec = { name, namespace: '', version: 1, runtime: 'node20', image: '', codeHash: '', handler: 'index.js', env: {}, limits: { memoryMB: 64, timeoutMs: 1000, concurrency } };
  return { key: `${name}@1`, spec, codeDir: '/code' };
}

const route = { send: () => true };
const inv = (id: string): InvocationRef => ({ id, route });
const never = new AbortController().signal;

describe('warm pool', () => {
  it('starts one container for concurrent cold calls up to its concurrency, then another', async () => {
    const launcher = new FakeLauncher();
    const pool = new WarmPool(launcher);
    const fn = deployed(2);
    const leases = [pool.acquire(fn, inv('a'), never), pool.acquire(fn, inv('b'), never), pool.acquire(fn, inv('c'), never)];
    expect(launcher.launches).toHaveLength(2);
    expect(pool.counts()).toMatchObject({ starting: 2 });
    for (const l of launcher.launches) l.done.resolve();
    const [a, b, c] = await Promise.all(leases);
    expect(a.container).toBe(b.container);
    expect(c.container).not.toBe(a.container);
    expect([a.start, b.start, c.start]).toEqual(['cold', 'cold', 'cold']);
    expect(pool.counts()).toMatchObject({ starting: 0, busy: 2 });
  });

  it('hands an idle container to the next call as warm', async () => {
    const launcher = new FakeLauncher();
    const pool = new WarmPool(launcher);
    const fn = deployed(1);
    const first = pool.acquire(fn, inv('a'), never);
    launcher.launches[0].done.resolve();
    const lease = await first;
    pool.release(lease.container);
    expect(pool.counts()).toMatchObject({ idle: 1, busy: 0 });
    const again = await pool.acquire(fn, inv('b'), never);
    expect(again).toMatchObject({ start: 'warm', initUs: 0 });
    expect(again.container).toBe(lease.container);
    expect(again.container.invocation?.id).toBe('b');
  });

  it('lets a caller give up on a slow start without stopping it for the others', async () => {
    const launcher = new FakeLauncher();
    const pool = new WarmPool(launcher);
    const fn = deployed(1);
    const abort = new AbortController();
    const gaveUp = pool.acquire(fn, inv('a'), abort.signal);
    abort.abort(new SkiffError('FUNCTION_TIMEOUT', 'deadline'));
    await expect(gaveUp).rejects.toMatchObject({ code: 'FUNCTION_TIMEOUT' });
    launcher.launches[0].done.resolve();
    await launcher.launches[0].container.ready;
    expect(pool.counts()).toMatchObject({ starting: 0, idle: 1 });
    const next = await pool.acquire(fn, inv('b'), never);
    expect(next.start).toBe('warm');
    expect(launcher.launches).toHaveLength(1);
  });

  it('fails every caller waiting on a start that fails and forgets the container', async () => {
    const launcher = new FakeLauncher();
    const pool = new WarmPool(launcher);
    const fn = deployed(2);
    const waits = [pool.acquire(fn, inv('a'), never), pool.acquire(fn, inv('b'), never)];
    launcher.launches[0].done.reject(new SkiffError('FUNCTION_START_FAILED', 'boom'));
    for (const w of waits) await expect(w).rejects.toMatchObject({ code: 'FUNCTION_START_FAILED' });
    expect(pool.all()).toEqual([]);
    expect(pool.counts()).toEqual({ starting: 0, idle: 0, busy: 0, removing: 0 });
  });

  it('never hands out a removed container and fails its calls with the removal error', async () => {
    const launcher = new FakeLauncher();
    const pool = new WarmPool(launcher);
    const fn = deployed(1);
    const first = pool.acquire(fn, inv('a'), never);
    launcher.launches[0].done.resolve();
    const lease = await first;
    const error = new SkiffError('FUNCTION_CRASHED', 'gone');
    await pool.remove(lease.container, { kind: 'crashed', detail: 'test', error });
    expect(lease.container.signal.reason).toBe(error);
    pool.release(lease.container);
    const next = pool.acquire(fn, inv('b'), never);
    expect(launcher.launches).toHaveLength(2);
    launcher.launches[1].done.resolve();
    expect((await next).container).not.toBe(lease.container);
    expect(pool.counts()).toMatchObject({ busy: 1, removing: 0 });
  });

  it('evicts only containers idle for at least the idle timeout', async () => {
    const launcher = new FakeLauncher();
    const pool = new WarmPool(launcher);
    const leases = await Promise.all(
      ['x', 'y'].map((name) => {
        const p = pool.acquire(deployed(1, name), inv(name), never);
        launcher.launches.at(-1)?.done.resolve();
        return p;
      }),
    );
    for (const l of leases) pool.release(l.container);
    leases[0].container.lastUsedMs -= 1_000;
    expect(pool.reapIdle(500)).toBe(1);
    expect(launcher.destroyed.map((d) => [d.container.key, d.reason.kind])).toEqual([['x@1', 'evicted']]);
  });

  it('removes a retired container once its last call ends', async () => {
    const launcher = new FakeLauncher();
    const pool = new WarmPool(launcher);
    const fn = deployed(1);
    const p = pool.acquire(fn, inv('a'), never);
    launcher.launches[0].done.resolve();
    const lease = await p;
    pool.retire(fn.key, 'superseded');
    expect(launcher.destroyed).toHaveLength(0);
    pool.release(lease.container);
    expect(launcher.destroyed.map((d) => d.reason.kind)).toEqual(['removed']);
  });
});
