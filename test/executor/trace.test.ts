/** The trace generator, the Azure CSV loader and the keep-alive simulator (bench/trace/). */
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadAzureTrace } from '../../bench/trace/azure.ts';
import { generateTrace } from '../../bench/trace/generator.ts';
import { simulate } from '../../bench/trace/simulator.ts';
import { totalInvocations, type Trace } from '../../bench/trace/trace.ts';
import { createKeepAlive, FixedTtlPolicy, LruPriority } from '../../executor/keepalive.ts';

describe('trace generator', () => {
  it('gives the same trace for the same seed and a different one for another', () => {
    const a = generateTrace({ seed: 7, functions: 50, days: 1 });
    const b = generateTrace({ seed: 7, functions: 50, days: 1 });
    const c = generateTrace({ seed: 8, functions: 50, days: 1 });
    expect(a.functions.map((f) => [f.id, [...f.counts]])).toEqual(b.functions.map((f) => [f.id, [...f.counts]]));
    expect(totalInvocations(a)).not.toBe(totalInvocations(c));
    expect(a.minutes).toBe(1440);
  });

  it('mixes periodic timers, bursty HTTP and rare functions', () => {
    const trace = generateTrace({ seed: 1, functions: 300, days: 1 });
    const triggers = new Set(trace.functions.map((f) => f.trigger));
    expect(triggers).toEqual(new Set(['timer', 'http', 'rare']));
    const timer = trace.functions.find((f) => f.trigger === 'timer' && f.counts.filter((n) => n > 0).length > 10)!;
    const fires = [...timer.counts.keys()].filter((m) => timer.counts[m] > 0);
    const gaps = new Set(fires.slice(1).map((m, i) => m - fires[i]));
    expect(gaps.size).toBeLessThanOrEqual(3);
  });
});

describe('Azure trace loader', () => {
  it('reads invocation counts per minute, durations and memory from the public CSV format', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'azure-'));
    const minutes = Array.from({ length: 1440 }, (_, i) => String(i + 1)).join(',');
    const counts = (f: (m: number) => number) => Array.from({ length: 1440 }, (_, m) => f(m)).join(',');
    writeFileSync(path.join(dir, 'inv.csv'), `HashOwner,HashApp,HashFunction,Trigger,${minutes}\no1,app1,fn1,http,${counts((m) => (m % 10 === 0 ? 2 : 0))}\no1,app1,fn2,timer,${counts(() => 0)}\n`);
    writeFileSync(path.join(dir, 'dur.csv'), 'HashOwner,HashApp,HashFunction,Average,Count,Minimum,Maximum\no1,app1,fn1,250,288,1,900\n');
    writeFileSync(path.join(dir, 'mem.csv'), 'HashOwner,HashApp,SampleCount,AverageAllocatedMb\no1,app1,10,170\n');
    const trace = await loadAzureTrace({ invocations: [path.join(dir, 'inv.csv')], durations: path.join(dir, 'dur.csv'), memory: path.join(dir, 'mem.csv') });
    expect(trace.minutes).toBe(1440);
    expect(trace.functions).toHaveLength(1);
    expect(trace.functions[0]).toMatchObject({ id: 'app1/fn1', trigger: 'http', durationMs: 250, memoryMb: 170 });
    expect(totalInvocations(trace)).toBe(144 * 2);
  });
});

describe('keep-alive simulator', () => {
  const periodic = (periodMin: number, minutes: number): Trace => ({
    source: {},
    minutes,
    functions: [{ id: 'p', trigger: 'timer', memoryMb: 1024, durationMs: 100, coldStartMs: 500, counts: Uint32Array.from({ length: minutes }, (_, m) => (m % periodMin === 0 ? 1 : 0)) }],
  });

  it('counts a cold start per call when the period is longer than the fixed TTL, and the TTL as wasted memory', () => {
    const r = simulate(periodic(20, 200), { policy: new FixedTtlPolicy(10 * 60_000), eviction: new LruPriority(), memoryBudgetMb: Infinity });
    expect(r).toMatchObject({ invocations: 10, coldStarts: 10, coldStartPct: 100, evictions: 0 });
    // 10 minutes idle per call, 1 GB.
    expect(r.wastedGbS).toBeGreaterThanOrEqual(9 * 600);
    expect(r.wastedGbS).toBeLessThanOrEqual(10 * 600);
  });

  it('learns a period with the adaptive policy: fewer cold starts and less idle memory than the fixed TTL', () => {
    const trace = periodic(20, 24 * 60);
    const fixed = simulate(trace, { ...createKeepAlive('fixed', 10 * 60_000), memoryBudgetMb: Infinity });
    const adaptive = simulate(trace, { ...createKeepAlive('adaptive', 10 * 60_000), memoryBudgetMb: Infinity });
    expect(adaptive.coldStarts).toBeLessThan(fixed.coldStarts / 4);
    expect(adaptive.wastedGbS).toBeLessThan(fixed.wastedGbS);
    expect(adaptive.preWarms).toBeGreaterThan(0);
  });

  it('evicts under a memory budget', () => {
    const trace: Trace = {
      source: {},
      minutes: 60,
      functions: ['a', 'b', 'c'].map((id, i) => ({ id, trigger: 'http', memoryMb: 512, durationMs: 10, coldStartMs: 500, counts: Uint32Array.from({ length: 60 }, (_, m) => (m % 3 === i ? 1 : 0)) })),
    };
    const r = simulate(trace, { ...createKeepAlive('fixed', 10 * 60_000), memoryBudgetMb: 1024 });
    expect(r.evictions).toBeGreaterThan(0);
    expect(r.peakMemoryMb).toBeLessThanOrEqual(1024);
    expect(r.overBudgetStarts).toBe(0);
  });
});
