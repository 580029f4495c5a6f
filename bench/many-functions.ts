/**
 * Many-functions benchmark: BENCH_MANY_FUNCTIONS (100) distinct functions called round-robin by
 * BENCH_MANY_CONNECTIONS (8) connections, under an executor memory budget that fits
 * BENCH_MANY_FIT (20) of their containers, when the executor has one (SKIFF_MEMORY_BUDGET_MB);
 * without it the run goes unbudgeted and the result says so. This is the case where OpenWhisk
 * falls to tens of requests per second: most calls find no warm container. Reports throughput,
 * p50/p99 and the cold-start share (from the invocation records) per run; baseline: the same load
 * on one warm function.
 * Knobs: BENCH_MANY_FUNCTIONS (100), BENCH_MANY_FIT (20), BENCH_MANY_CONNECTIONS (8),
 * BENCH_MANY_DURATION_S (8), BENCH_RUNS (3).
 */
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { renderTable } from '../cli/table.ts';
import { knobInt } from './knobs.ts';
import { LoadGenerator, type DurationResult } from './load.ts';
import { generatorCpu, writeResult } from './results.ts';
import { deployEcho, findEnvOverride, GatewayClient, logger, ROOT, startSkiff } from './skiff.ts';
import { formatSpread, spreadOf, type Spread } from './stats.ts';

const FUNCTIONS = knobInt('BENCH_MANY_FUNCTIONS', 100);
const FIT = knobInt('BENCH_MANY_FIT', 20);
const CONNECTIONS = knobInt('BENCH_MANY_CONNECTIONS', 8);
const DURATION_S = knobInt('BENCH_MANY_DURATION_S', 8);
const RUNS = knobInt('BENCH_RUNS', 3);
const MEMORY_MB = 128;
const log = logger('many-functions');

export interface ManyFunctionsRow {
  target: string;
  requestsPerSec: Spread;
  p50Us: Spread;
  p99Us: Spread;
  /** Share of calls that started a container, % (median of the runs). */
  coldPercent: Spread;
  errors: number;
  runs: Array<DurationResult & { coldPercent: number; records: number }>;
}

interface TimedRun {
  result: DurationResult;
  fromMs: number;
  toMs: number;
}

interface RecordLike {
  start: string;
  receivedAtMs: number;
}

/** Cold share of the records received inside [fromMs, toMs]. */
function coldShare(records: readonly RecordLike[], fromMs: number, toMs: number): { coldPercent: number; records: number } {
  const inside = records.filter((r) => r.receivedAtMs >= fromMs && r.receivedAtMs <= toMs);
  const cold = inside.filter((r) => r.start !== 'warm').length;
  return { coldPercent: inside.length === 0 ? 0 : Number(((cold / inside.length) * 100).toFixed(1)), records: inside.length };
}

/** Records reach storage in batches after the responses: wait (bounded) until `expected` are there. */
const RECORDS_SETTLE_MS = 30_000;

async function recordsOf(client: GatewayClient, names: readonly string[], expected: number): Promise<RecordLike[]> {
  const deadline = Date.now() + RECORDS_SETTLE_MS;
  for (;;) {
    const all: RecordLike[] = [];
    for (const name of names) all.push(...(await client.json<RecordLike[]>('GET', `/system/invocations?function=${name}&limit=1000`)));
    if (all.length >= expected || Date.now() > deadline) return all;
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
}

const answered = (runs: readonly TimedRun[]) => runs.reduce((n, r) => n + r.result.requests, 0);

function summarize(target: string, runs: TimedRun[], records: readonly RecordLike[]): ManyFunctionsRow {
  const detailed = runs.map((r) => ({ ...r.result, ...coldShare(records, r.fromMs, r.toMs) }));
  return {
    target,
    requestsPerSec: spreadOf(detailed, (r) => Math.round(r.requestsPerSec)),
    p50Us: spreadOf(detailed, (r) => r.latencyUs.p50),
    p99Us: spreadOf(detailed, (r) => r.latencyUs.p99),
    coldPercent: spreadOf(detailed, (r) => r.coldPercent),
    errors: detailed.reduce((n, r) => n + r.errors + r.non2xx, 0),
    runs: detailed,
  };
}

async function main(): Promise<void> {
  const notes: string[] = [];
  const budgetEnv = await findEnvOverride(/memoryBudget/i);
  const budgetMb = FIT * MEMORY_MB;
  const env: Record<string, string> = {};
  if (budgetEnv) {
    env[budgetEnv] = String(budgetMb);
    log(`memory budget ${budgetMb} MB (${budgetEnv}): fits ${FIT} containers of ${MEMORY_MB} MB`);
    const stemCellsEnv = await findEnvOverride(/^executor\.stemCells$/);
    if (stemCellsEnv) notes.push(`The budget of ${budgetMb} MB is the executor's whole budget: prewarmed stem cells (${stemCellsEnv}, executor default) count against it too.`);
  } else {
    notes.push(`This executor has no memory budget option (no SKIFF_*MEMORY_BUDGET* in config.ts ENV_OVERRIDES): ran WITHOUT a budget, so up to ${FUNCTIONS} containers stayed warm instead of ${FIT}.`);
    log(`NOTE: ${notes[0]}`);
  }
  log(`${FUNCTIONS} functions round-robin, ${CONNECTIONS} connections, ${RUNS} runs × ${DURATION_S} s; baseline: one warm function`);
  const skiff = await startSkiff(env);
  const generator = new LoadGenerator();
  const client = new GatewayClient(skiff.url);
  try {
    const names = Array.from({ length: FUNCTIONS }, (_, i) => `bench-many-${String(i).padStart(3, '0')}`);
    for (const name of names) await deployEcho(client, name, { memoryMB: MEMORY_MB, concurrency: 1 });
    const single = 'bench-many-single';
    await deployEcho(client, single, { memoryMB: MEMORY_MB, concurrency: CONNECTIONS });
    const body = randomBytes(100);
    const warm = await client.call('POST', `/function/${single}`, body, { 'content-type': 'application/octet-stream' });
    if (warm.status !== 200) throw new Error(`warm-up call failed: ${warm.status}`);

    const target = { url: `${skiff.url}/function/${single}`, method: 'POST' as const, headers: { 'content-type': 'application/octet-stream' }, body };
    const many: TimedRun[] = [];
    const baseline: TimedRun[] = [];
    const cpu: number[] = [];
    const timed = async (paths: string[]): Promise<TimedRun> => {
      const fromMs = Date.now();
      const result = await generator.run({ kind: 'duration', target, connections: CONNECTIONS, durationS: DURATION_S, roundRobinPaths: paths });
      cpu.push(result.generator.cpuPercent);
      return { result, fromMs, toMs: Date.now() };
    };
    for (let run = 1; run <= RUNS; run++) {
      baseline.push(await timed([`/function/${single}`]));
      many.push(await timed(names.map((n) => `/function/${n}`)));
      log(`run ${run}: ${FUNCTIONS} functions ${Math.round(many[run - 1].result.requestsPerSec)} req/s, one function ${Math.round(baseline[run - 1].result.requestsPerSec)} req/s`);
    }
    const rows = [
      summarize(`${FUNCTIONS} functions round-robin`, many, await recordsOf(client, names, answered(many))),
      summarize('1 warm function (baseline)', baseline, await recordsOf(client, [single], Math.min(answered(baseline), 1000))),
    ];
    const headers = ['target', 'req/s', 'p50 ms', 'p99 ms', 'not warm % (cold+stemcell)', 'errors'];
    const tableRows = rows.map((r) => [r.target, formatSpread(r.requestsPerSec), formatSpread(r.p50Us, 1, 1000), formatSpread(r.p99Us, 1, 1000), formatSpread(r.coldPercent, 1), r.errors]);
    log('');
    process.stdout.write(`${renderTable(headers, tableRows)}\n`);
    for (const note of notes) log(`NOTE: ${note}`);
    const file = writeResult<ManyFunctionsRow>({
      scenario: 'many-functions',
      settings: { functions: FUNCTIONS, fit: FIT, memoryMbPerFunction: MEMORY_MB, memoryBudgetMb: budgetEnv ? budgetMb : null, connections: CONNECTIONS, durationS: DURATION_S, runs: RUNS },
      baseline: 'the same connections on one warm function. Cells are median (min–max) of the runs; not-warm % counts records whose start was cold or stemcell (records are paged at 1000 per function: for the one-function baseline only the newest 1000).',
      generator: generatorCpu(cpu),
      notes,
      table: { headers, rows: tableRows },
      rows,
    });
    log(`wrote ${path.relative(ROOT, file)}`);
  } finally {
    await client.close();
    await generator.close();
    await skiff.stop();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`many-functions: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
