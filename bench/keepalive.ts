/**
 * Keep-alive comparison: replays one trace through OpenWhisk's fixed 10-minute TTL (LRU eviction)
 * and Skiff's adaptive policy (hybrid histogram + GDSF eviction), both as the executor runs them
 * (executor/keepalive.ts), with no memory limit and under a memory budget. Prints a table and
 * writes bench/results/keepalive.json with the machine and commit.
 *
 * Knobs: BENCH_TRACE_SEED (2019), BENCH_TRACE_FUNCTIONS (400), BENCH_TRACE_DAYS (3),
 * BENCH_TTL_MS (600000), BENCH_BUDGET_FRACTION (0.5: the budget is this share of the fixed
 * policy's unconstrained peak). With BENCH_AZURE_INVOCATIONS=d01.csv,d02.csv (and optionally
 * BENCH_AZURE_DURATIONS, BENCH_AZURE_MEMORY, BENCH_AZURE_MAX_FUNCTIONS) the public Azure trace
 * is replayed instead of a generated one.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { renderTable } from '../cli/table.ts';
import { createKeepAlive, GreedyDualSizeFrequency, HybridHistogramPolicy, OPENWHISK_TTL_MS, type KeepAlivePolicyName } from '../executor/index.ts';
import { describeCommit, describeMachine } from './machine.ts';
import { loadAzureTrace } from './trace/azure.ts';
import { generateTrace } from './trace/generator.ts';
import { simulate, type SimulationResult } from './trace/simulator.ts';
import { totalInvocations, type Trace } from './trace/trace.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const RESULT_FILE = path.join(ROOT, 'bench', 'results', 'keepalive.json');
const env = process.env;
const TTL_MS = Number(env.BENCH_TTL_MS ?? OPENWHISK_TTL_MS);
const BUDGET_FRACTION = Number(env.BENCH_BUDGET_FRACTION ?? 0.5);

function log(line: string): void {
  process.stdout.write(`${line}\n`);
}

async function loadTrace(): Promise<Trace> {
  if (env.BENCH_AZURE_INVOCATIONS) {
    return loadAzureTrace({
      invocations: env.BENCH_AZURE_INVOCATIONS.split(',').map((f) => f.trim()).filter(Boolean),
      durations: env.BENCH_AZURE_DURATIONS || undefined,
      memory: env.BENCH_AZURE_MEMORY || undefined,
      maxFunctions: Number(env.BENCH_AZURE_MAX_FUNCTIONS ?? 0),
    });
  }
  const int = (name: string) => (env[name] === undefined ? undefined : Number(env[name]));
  const overrides = { seed: int('BENCH_TRACE_SEED'), functions: int('BENCH_TRACE_FUNCTIONS'), days: int('BENCH_TRACE_DAYS') };
  return generateTrace(Object.fromEntries(Object.entries(overrides).filter(([, v]) => v !== undefined)));
}

/** 'paper': the hybrid histogram exactly as published (no cost cap), for reference. */
function run(trace: Trace, name: KeepAlivePolicyName | 'paper', memoryBudgetMb: number): SimulationResult {
  const pair = name === 'paper'
    ? { policy: new HybridHistogramPolicy({ fallbackTtlMs: TTL_MS, costAware: false }), eviction: new GreedyDualSizeFrequency() }
    : createKeepAlive(name, TTL_MS);
  return simulate(trace, { ...pair, memoryBudgetMb });
}

async function main(): Promise<void> {
  const trace = await loadTrace();
  log(`keepalive: ${trace.functions.length} functions, ${trace.minutes} minutes, ${totalInvocations(trace)} invocations`);
  const unconstrained = [run(trace, 'fixed', Infinity), run(trace, 'adaptive', Infinity), run(trace, 'paper', Infinity)];
  const budgetMb = Math.max(1024, Math.round(unconstrained[0].peakMemoryMb * BUDGET_FRACTION));
  const constrained = [run(trace, 'fixed', budgetMb), run(trace, 'adaptive', budgetMb), run(trace, 'paper', budgetMb)];
  const rows = [...unconstrained, ...constrained];
  log('');
  log(renderTable(
    ['policy', 'eviction', 'budget MB', 'cold %', 'timer cold %', 'http cold %', 'rare cold %', 'wasted GB·s', 'evictions', 'pre-warms', 'peak MB'],
    rows.map((r) => [
      r.policy,
      r.eviction,
      String(r.memoryBudgetMb),
      r.coldStartPct.toFixed(3),
      ...['timer', 'http', 'rare'].map((t) => (r.coldStartPctByTrigger[t] === undefined ? '-' : r.coldStartPctByTrigger[t].toFixed(2))),
      r.wastedGbS,
      r.evictions,
      r.preWarms,
      r.peakMemoryMb,
    ]),
  ));
  const verdict = (fixed: SimulationResult, adaptive: SimulationResult) => ({
    coldStartPctReduction: Number((fixed.coldStartPct - adaptive.coldStartPct).toFixed(3)),
    wastedGbSReductionPct: Number(((100 * (fixed.wastedGbS - adaptive.wastedGbS)) / Math.max(1, fixed.wastedGbS)).toFixed(1)),
    adaptiveWinsBoth: adaptive.coldStartPct < fixed.coldStartPct && adaptive.wastedGbS < fixed.wastedGbS,
  });
  const comparison = { unconstrained: verdict(unconstrained[0], unconstrained[1]), budget: verdict(constrained[0], constrained[1]) };
  log('');
  log(`adaptive vs fixed, no budget: cold starts ${comparison.unconstrained.coldStartPctReduction} points lower, wasted memory ${comparison.unconstrained.wastedGbSReductionPct}% lower`);
  log(`adaptive vs fixed, ${budgetMb} MB budget: cold starts ${comparison.budget.coldStartPctReduction} points lower, wasted memory ${comparison.budget.wastedGbSReductionPct}% lower`);
  mkdirSync(path.dirname(RESULT_FILE), { recursive: true });
  writeFileSync(RESULT_FILE, `${JSON.stringify({
    scenario: 'keepalive',
    date: new Date().toISOString(),
    machine: describeMachine(),
    ...describeCommit(),
    trace: { ...trace.source, functions: trace.functions.length, minutes: trace.minutes, invocations: totalInvocations(trace), byTrigger: countBy(trace) },
    settings: { fixedTtlMs: TTL_MS, budgetFraction: BUDGET_FRACTION, budgetMb },
    results: rows,
    comparison,
  }, null, 2)}\n`);
  log(`\nkeepalive: wrote ${path.relative(ROOT, RESULT_FILE)}`);
}

function countBy(trace: Trace): Record<string, number> {
  const out: Record<string, number> = {};
  for (const f of trace.functions) out[f.trigger] = (out[f.trigger] ?? 0) + 1;
  return out;
}

main().catch((err: unknown) => {
  process.stderr.write(`keepalive: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
