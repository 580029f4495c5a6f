/** WarmPool policy with a fake launcher (no Docker): which container a call gets, and when. */
import { describe, expect, it } from 'vitest';
import type { FunctionSpec } from '../../bus/index.ts';
import { SkiffError } from '../../errors.ts';
import type { FunctionContainer, InvocationRef, RemovalReason } from '../../executor/container.ts';
import { FixedTtlPolicy, GreedyDualSizeFrequency, LruPriority } from '../../executor/keepalive.ts';
import { MemoryBudget } from '../../executor/memory-budget.ts';
import { WarmPool, type ContainerLauncher, type PoolOptions } from '../../executor/pool.ts';
import type { DeployedFunction } from '../../executor/registry.ts';
import { StemCellSizer } from '../../executor/stemcells.ts';

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
  readonly specializations: Array<{ container: FunctionContainer; deployed: DeployedFunction; done: ReturnType<typeof deferred> }> = [];
  readonly destroyed: Array<{ container: FunctionContainer; reason: RemovalReason }> = [];
  #next = 0;

  #onLaunch: (() => void) | undefined;

  launch(container: FunctionContainer): Promise<void> {
    container.id = `c${++this.#next}`;
    const done = deferred();
    this.launches.push({ container, done });
    this.#onLaunch?.();
    return done.promise;
  }

  /** Resolves when launch number `n` (1-based) has happened. */
  launched(n: number): Promise<void> {
    if (this.launches.length >= n) return Promise.resolve();
    return new Promise((resolve) => {
      this.#onLaunch = () => {
        if (this.launches.length < n) return;
        this.#onLaunch = undefined;
        resolve();
      };
    });
  }

  specialize(container: FunctionContainer, deployed: DeployedFunction): Promise<void> {
    const done = deferred();
    this.specializations.push({ container, deployed, done });
    return done.promise;
  }

  async destroy(container: FunctionContainer, reason: RemovalReason): Promise<void> {
    this.destroyed.push({ container, reason });
  }
}

function deployed(concurrency: number, name = 'fn', memoryMB = 64): DeployedFunction {
  const spec: FunctionSpec = { name, namespace: '', version: 1, runtime: 'node20', image: '', codeHash: '', handler: 'index.js', env: {}, limits: { memoryMB, timeoutMs: 1000, concurrency } };
  return { key: `${name}@1`, spec, codeDir: '/code' };
}

const hardening = { pidsLimit: 128, tmpfsMb: 64, defaultCpus: 1, functionNetwork: 'bridge' };

/** A pool without stem cells, a large budget and a fixed TTL, unless told otherwise. */
function poolWith(launcher: ContainerLauncher, options: Partial<PoolOptions> = {}): WarmPool {
  return new WarmPool({
    launcher,
    budget: new MemoryBudget(100_000),
    policy: new FixedTtlPolicy(60_000),
    eviction: new LruPriority(),
    maxContainersPerFunction: 10,
    maxQueuedPerFunction: 10,
    maxCallsInFlight: 1_000,
    stemCells: { min: 0, max: 0, shape: { runtime: 'node20', memoryMb: 128, cpus: 1 } },
    hardening,
    ...options,
  });
}

/** Resolves once queued microtasks (the stem cell refill) have run. */
const tick = () => new Promise<void>((resolve) => setImmediate(resolve));

const route = { send: () => true };
const inv = (id: string): InvocationRef => ({ id, route });
const never = new AbortController().signal;

describe('warm pool', () => {
  it('starts one container for concurrent cold calls up to its concurrency, then another', async () => {
    const launcher = new FakeLauncher();
    const pool = poolWith(launcher);
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
    const pool = poolWith(launcher);
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
    const pool = poolWith(launcher);
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
    const pool = poolWith(launcher);
    const fn = deployed(2);
    const waits = [pool.acquire(fn, inv('a'), never), pool.acquire(fn, inv('b'), never)];
    launcher.launches[0].done.reject(new SkiffError('FUNCTION_START_FAILED', 'boom'));
    for (const w of waits) await expect(w).rejects.toMatchObject({ code: 'FUNCTION_START_FAILED' });
    expect(pool.all()).toEqual([]);
    expect(pool.counts()).toEqual({ starting: 0, idle: 0, busy: 0, removing: 0 });
  });

  it('never hands out a removed container and fails its calls with the removal error', async () => {
    const launcher = new FakeLauncher();
    const pool = poolWith(launcher);
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
    const pool = poolWith(launcher);
    const leases = await Promise.all(
      ['x', 'y'].map((name) => {
        const p = pool.acquire(deployed(1, name), inv(name), never);
        launcher.launches.at(-1)?.done.resolve();
        return p;
      }),
    );
    for (const l of leases) pool.release(l.container);
    leases[0].container.lastUsedMs -= 60_000;
    expect(pool.reapIdle()).toBe(1);
    expect(launcher.destroyed.map((d) => [d.container.key, d.reason.kind])).toEqual([['x@1', 'evicted']]);
  });

  it('removes a retired container once its last call ends', async () => {
    const launcher = new FakeLauncher();
    const pool = poolWith(launcher);
    const fn = deployed(1);
    const p = pool.acquire(fn, inv('a'), never);
    launcher.launches[0].done.resolve();
    const lease = await p;
    pool.retire(fn.key, 'superseded');
    expect(launcher.destroyed).toHaveLength(0);
    pool.release(lease.container);
    expect(launcher.destroyed.map((d) => d.reason.kind)).toEqual(['removed']);
  });

  it('specializes a ready stem cell for a fitting function, reports it, and replaces the stem cell after the call', async () => {
    const launcher = new FakeLauncher();
    const budget = new MemoryBudget(1_000);
    const pool = poolWith(launcher, { budget, stemCells: { min: 1, max: 2, shape: { runtime: 'node20', memoryMb: 128, cpus: 1 } } });
    pool.start();
    await tick();
    expect(launcher.launches.map((l) => l.container.stemCell)).toEqual([true]);
    launcher.launches[0].done.resolve();
    await launcher.launches[0].container.ready;
    expect(pool.capacity().stemCells).toEqual({ node20: 1 });
    expect(budget.usedMb).toBe(128);

    const fn = deployed(1, 'fits', 128);
    const lease = pool.acquire(fn, inv('a'), never);
    expect(launcher.specializations).toHaveLength(1);
    expect(launcher.specializations[0].container).toBe(launcher.launches[0].container);
    launcher.specializations[0].done.resolve();
    const got = await lease;
    expect(got.start).toBe('stemcell');
    expect(got.container.key).toBe('fits@1');
    expect(got.container.stemCell).toBe(false);
    // The replacement starts once the first call is over (not competing with it), in free memory.
    await tick();
    expect(launcher.launches).toHaveLength(1);
    pool.release(got.container);
    await tick();
    expect(launcher.launches).toHaveLength(2);
    expect(launcher.launches[1].container.stemCell).toBe(true);
    expect(budget.usedMb).toBe(256);
  });

  it('cold-starts a function that does not fit the stem cells (other memory size)', async () => {
    const launcher = new FakeLauncher();
    const pool = poolWith(launcher, { stemCells: { min: 1, max: 1, shape: { runtime: 'node20', memoryMb: 128, cpus: 1 } } });
    pool.start();
    await tick();
    launcher.launches[0].done.resolve();
    await launcher.launches[0].container.ready;
    const lease = pool.acquire(deployed(1, 'big', 512), inv('a'), never);
    expect(launcher.specializations).toHaveLength(0);
    launcher.launches[1].done.resolve();
    expect((await lease).start).toBe('cold');
  });

  it('never starts past the memory budget: evicts the lowest-priority idle container, else queues the call', async () => {
    const launcher = new FakeLauncher();
    const budget = new MemoryBudget(200);
    const pool = poolWith(launcher, { budget, eviction: new GreedyDualSizeFrequency() });
    const start = async (name: string) => {
      const p = pool.acquire(deployed(1, name, 100), inv(name), never);
      launcher.launches.at(-1)?.done.resolve();
      return p;
    };
    const hot = await start('hot');
    pool.release(hot.container);
    for (let i = 0; i < 3; i++) pool.release((await pool.acquire(hot.container.deployed, inv(`hot${i}`), never)).container);
    const cold = await start('cold');
    pool.release(cold.container);
    expect(budget.usedMb).toBe(200);
    // A third function: the idle one used least (GDSF) goes.
    const third = await start('third');
    expect(launcher.destroyed.map((d) => [d.container.key, d.reason.kind])).toEqual([['cold@1', 'evicted']]);
    expect(budget.usedMb).toBe(200);
    // Everything busy or idle-but-needed: a fourth function waits for memory, then runs.
    const busyHot = await pool.acquire(hot.container.deployed, inv('h'), never);
    const fourth = pool.acquire(deployed(1, 'fourth', 100), inv('f'), never);
    await tick();
    expect(launcher.launches).toHaveLength(3);
    pool.release(third.container);
    await tick();
    expect(launcher.launches).toHaveLength(4);
    launcher.launches[3].done.resolve();
    expect((await fourth).start).toBe('cold');
    pool.release(busyHot.container);
  });

  it('queues calls beyond the function container cap, serves them as slots free, and refuses them when the queue is full', async () => {
    const launcher = new FakeLauncher();
    const pool = poolWith(launcher, { maxContainersPerFunction: 1, maxQueuedPerFunction: 1 });
    const fn = deployed(1);
    const first = pool.acquire(fn, inv('a'), never);
    launcher.launches[0].done.resolve();
    const a = await first;
    const queued = pool.acquire(fn, inv('b'), never);
    await expect(pool.acquire(fn, inv('c'), never)).rejects.toMatchObject({ code: 'FUNCTION_QUEUE_FULL', statusCode: 429 });
    pool.release(a.container);
    const b = await queued;
    expect(b).toMatchObject({ start: 'warm', container: a.container });
    expect(launcher.launches).toHaveLength(1);
  });

  it('lets a queued call leave at its deadline', async () => {
    const launcher = new FakeLauncher();
    const pool = poolWith(launcher, { maxContainersPerFunction: 1 });
    const fn = deployed(1);
    const first = pool.acquire(fn, inv('a'), never);
    launcher.launches[0].done.resolve();
    const a = await first;
    const abort = new AbortController();
    const queued = pool.acquire(fn, inv('b'), abort.signal);
    abort.abort(new SkiffError('FUNCTION_TIMEOUT', 'deadline'));
    await expect(queued).rejects.toMatchObject({ code: 'FUNCTION_TIMEOUT' });
    pool.release(a.container);
    expect(pool.counts()).toMatchObject({ idle: 1, busy: 0 });
  });

  it('reaps idle containers by the keep-alive policy of their function', async () => {
    const launcher = new FakeLauncher();
    const windows: Record<string, number> = { short: 1_000, long: 100_000 };
    const policy = { name: 'test', onCallStart() {}, onCallsDone() {}, forget() {}, decide: (fn: string) => ({ preWarmMs: 0, keepAliveMs: windows[fn], basis: 'test' }) };
    const pool = poolWith(launcher, { policy });
    const leases = await Promise.all(
      ['short', 'long'].map((name) => {
        const p = pool.acquire(deployed(1, name), inv(name), never);
        launcher.launches.at(-1)?.done.resolve();
        return p;
      }),
    );
    for (const l of leases) pool.release(l.container);
    expect(pool.reapIdle(Date.now() + 5_000)).toBe(1);
    expect(launcher.destroyed.map((d) => d.container.key)).toEqual(['short@1']);
  });

  it('unloads an idle function at once when the policy pre-warms it, and loads it again at the pre-warm time', async () => {
    const launcher = new FakeLauncher();
    const policy = { name: 'test', onCallStart() {}, onCallsDone() {}, forget() {}, decide: () => ({ preWarmMs: 5, keepAliveMs: 60_000, basis: 'test' }) };
    const pool = poolWith(launcher, { policy });
    const fn = deployed(1);
    const first = pool.acquire(fn, inv('a'), never);
    launcher.launches[0].done.resolve();
    const lease = await first;
    pool.release(lease.container);
    expect(launcher.destroyed.map((d) => [d.container.id, d.reason.kind])).toEqual([['c1', 'evicted']]);
    expect(launcher.destroyed[0].reason.detail).toContain('pre-warm');
    await launcher.launched(2);
    launcher.launches[1].done.resolve();
    await launcher.launches[1].container.ready;
    expect(pool.counts()).toMatchObject({ idle: 1 });
    const next = await pool.acquire(fn, inv('b'), never);
    expect(next).toMatchObject({ start: 'warm', container: launcher.launches[1].container });
  });
});

describe('a burst against a cold function', () => {
  it('starts only the containers its calls in flight need and no stem cells while calls wait for starts', async () => {
    const launcher = new FakeLauncher();
    const budget = new MemoryBudget(100_000);
    const pool = poolWith(launcher, {
      budget,
      maxContainersPerFunction: 32,
      maxQueuedPerFunction: 1_000,
      maxCallsInFlight: 64,
      stemCells: { min: 1, max: 8, shape: { runtime: 'node20', memoryMb: 128, cpus: 1 } },
    });
    pool.start();
    await tick();
    launcher.launches[0].done.resolve();
    await launcher.launches[0].container.ready;
    // Launched as stem cells (specialized since, or not): the rest are cold starts.
    const launchedAsStemCell = (c: FunctionContainer) => c.stemCell || c.startKind === 'stemcell';
    const stemLaunches = () => launcher.launches.filter((l) => launchedAsStemCell(l.container));
    const functionLaunches = () => launcher.launches.filter((l) => !launchedAsStemCell(l.container));

    // 500 calls at once (more than the 64 the executor advertised: a stale credit), concurrency 10.
    const fn = deployed(10, 'burst', 128);
    const leases = Array.from({ length: 500 }, (_, i) => pool.acquire(fn, inv(`b${i}`), never));
    await tick();
    // 64 calls in flight need ceil(64 / 10) = 7 containers: the stem cell and 6 cold starts.
    expect(launcher.specializations).toHaveLength(1);
    expect(functionLaunches()).toHaveLength(6);
    expect(stemLaunches()).toHaveLength(1);
    expect(pool.counts()).toMatchObject({ starting: 7 });

    launcher.specializations[0].done.resolve();
    for (const l of functionLaunches()) l.done.resolve();
    const starts: Record<string, number> = {};
    for (const pending of leases) {
      const lease = await pending;
      starts[lease.start] = (starts[lease.start] ?? 0) + 1;
      pool.release(lease.container);
    }
    expect(starts).toEqual({ stemcell: 10, cold: 54, warm: 436 });
    expect(functionLaunches()).toHaveLength(6);
    expect(launcher.specializations).toHaveLength(1);
    // With no call waiting for a start any more, the stem cells are refilled (the rate asks for more).
    await tick();
    expect(stemLaunches().length).toBeGreaterThan(1);
  });

  it('lets a call waiting past the calls-in-flight limit leave at its deadline', async () => {
    const launcher = new FakeLauncher();
    const pool = poolWith(launcher, { maxCallsInFlight: 1 });
    const fn = deployed(2);
    const first = pool.acquire(fn, inv('a'), never);
    const abort = new AbortController();
    const waiting = pool.acquire(fn, inv('b'), abort.signal);
    abort.abort(new SkiffError('FUNCTION_TIMEOUT', 'deadline'));
    await expect(waiting).rejects.toMatchObject({ code: 'FUNCTION_TIMEOUT' });
    launcher.launches[0].done.resolve();
    const a = await first;
    // The slot the second call would have joined stayed free; the limit admits the next call when the first ends.
    expect(a.container.active).toBe(1);
    const third = pool.acquire(fn, inv('c'), never);
    pool.release(a.container);
    expect(await third).toMatchObject({ start: 'warm', container: a.container });
  });
});

describe('stem cell sizer', () => {
  it('keeps the minimum, grows with the recent rate of eligible starts up to the maximum, and shrinks back', () => {
    const sizer = new StemCellSizer(2, 5, 60_000);
    expect(sizer.target(0)).toBe(2);
    for (let i = 0; i < 4; i++) sizer.recordStart(1_000 + i);
    expect(sizer.target(2_000)).toBe(4);
    for (let i = 0; i < 10; i++) sizer.recordStart(3_000 + i);
    expect(sizer.target(4_000)).toBe(5);
    expect(sizer.target(120_000)).toBe(2);
    expect(new StemCellSizer(0, 0).target(0)).toBe(0);
  });
});
