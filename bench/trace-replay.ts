/**
 * Trace replay: a window of the keep-alive trace generator's output (bench/trace/, Azure-2019
 * shaped) replayed against a live Skiff, time-scaled (BENCH_REPLAY_SCALE trace ms per real ms,
 * 60: one trace minute per second), once with the fixed idle TTL (OpenWhisk's 10 minutes, scaled)
 * and once with the adaptive keep-alive policy when the executor has one. Reports cold-start %,
 * latency and GB·s (memory limits of live containers integrated over the replay, sampled from
 * Docker; shown in real seconds and scaled back to trace time). Skipped, with a message, when
 * bench/trace/ is not there.
 * Knobs: BENCH_REPLAY_FUNCTIONS (30), BENCH_REPLAY_MINUTES (10), BENCH_REPLAY_START_MIN (600),
 * BENCH_REPLAY_SCALE (60), BENCH_REPLAY_MAX_PER_MINUTE (20), BENCH_TRACE_SEED (2019), BENCH_RUNS (3).
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import Dockerode from 'dockerode';
import { renderTable } from '../cli/table.ts';
import { knobInt } from './knobs.ts';
import { LoadGenerator, type ScheduleResult } from './load.ts';
import { generatorCpu, writeResult } from './results.ts';
import { echoCode, findEnvOverride, GatewayClient, logger, ROOT, sampleContainers, startSkiff, type ContainerUsage } from './skiff.ts';
import { formatSpread, spreadOf, type Spread } from './stats.ts';

const FUNCTIONS = knobInt('BENCH_REPLAY_FUNCTIONS', 30);
const MINUTES = knobInt('BENCH_REPLAY_MINUTES', 10);
const START_MIN = Number(process.env.BENCH_REPLAY_START_MIN ?? 600);
const SCALE = knobInt('BENCH_REPLAY_SCALE', 60);
const MAX_PER_MINUTE = knobInt('BENCH_REPLAY_MAX_PER_MINUTE', 20);
const SEED = knobInt('BENCH_TRACE_SEED', 2019);
const RUNS = knobInt('BENCH_RUNS', 3);
/** OpenWhisk's fixed idle TTL in trace time. */
const FIXED_TTL_TRACE_MS = 10 * 60_000;
/**
 * Calls one container takes at once. Cold starts do not shrink with the time scale (a 1 s start
 * is a whole trace minute at 1:60), so with 1 the calls that arrive during a start would each
 * start another container; 10 keeps the count of containers about the trace's.
 */
const FUNCTION_CONCURRENCY = 10;
const GENERATOR_FILE = path.join(ROOT, 'bench', 'trace', 'generator.ts');
const log = logger('trace-replay');

/** The part of bench/trace/trace.ts this replay reads. */
interface TraceLike {
  minutes: number;
  functions: Array<{ id: string; memoryMb: number; counts: ArrayLike<number> }>;
}

interface PlannedFunction {
  name: string;
  memoryMb: number;
}

interface Plan {
  functions: PlannedFunction[];
  /** Real-time ms from the replay's start; `fn` indexes `functions`. */
  calls: Array<{ atMs: number; fn: number }>;
  capped: number;
}

export interface TraceReplayRow {
  policy: string;
  coldPercent: Spread;
  p50Us: Spread;
  p99Us: Spread;
  gbSeconds: Spread;
  /** GB·s scaled back to trace time (× BENCH_REPLAY_SCALE). */
  traceGbSeconds: Spread;
  peakContainers: Spread;
  errors: number;
  runs: Array<{ result: ScheduleResult; coldPercent: number; records: number; usage: ContainerUsage }>;
}

/** Calls of the window, evenly spread inside each trace minute, time-scaled. */
function plan(trace: TraceLike): Plan {
  const start = Math.max(0, Math.min(START_MIN, trace.minutes - MINUTES));
  const active = trace.functions.filter((f) => {
    for (let m = start; m < start + MINUTES && m < trace.minutes; m++) if (f.counts[m] > 0) return true;
    return false;
  }).slice(0, FUNCTIONS);
  const calls: Plan['calls'] = [];
  let capped = 0;
  active.forEach((f, fn) => {
    for (let m = 0; m < MINUTES && start + m < trace.minutes; m++) {
      const count = f.counts[start + m];
      const n = Math.min(count, MAX_PER_MINUTE);
      capped += count - n;
      for (let k = 0; k < n; k++) calls.push({ atMs: ((m + (k + 0.5) / n) * 60_000) / SCALE, fn });
    }
  });
  return { functions: active.map((f, i) => ({ name: `tr-${String(i).padStart(3, '0')}`, memoryMb: f.memoryMb })), calls: calls.sort((a, b) => a.atMs - b.atMs), capped };
}

interface RecordLike {
  start: string;
}

async function replayOnce(client: GatewayClient, generator: LoadGenerator, docker: Dockerode, nodeId: string, baseUrl: string, p: Plan, run: number): Promise<TraceReplayRow['runs'][number]> {
  const names = p.functions.map((f) => `${f.name}-r${run}`);
  const code = await echoCode();
  for (const [i, f] of p.functions.entries()) await client.json('PUT', `/system/functions/${names[i]}`, { code, limits: { memoryMB: f.memoryMb, concurrency: FUNCTION_CONCURRENCY } });
  const sampler = sampleContainers(docker, nodeId);
  const result = await generator.run({
    kind: 'schedule',
    baseUrl,
    method: 'POST',
    headers: { 'content-type': 'text/plain' },
    body: Buffer.from('trace'),
    calls: p.calls.map((c) => ({ atMs: c.atMs, path: `/function/${names[c.fn]}` })),
    timeoutMs: 60_000,
  });
  const usage = await sampler.stop();
  // Records reach storage in batches after the responses: wait (bounded) for all of them.
  const expected = Object.values(result.statuses).reduce((a, b) => a + b, 0);
  const deadline = Date.now() + 30_000;
  let records = 0;
  let cold = 0;
  do {
    records = 0;
    cold = 0;
    for (const name of names) {
      const list = await client.json<RecordLike[]>('GET', `/system/invocations?function=${name}&limit=1000`);
      records += list.length;
      cold += list.filter((r) => r.start !== 'warm').length;
    }
    if (records < expected) await new Promise((resolve) => setTimeout(resolve, 500));
  } while (records < expected && Date.now() < deadline);
  for (const name of names) await client.call('DELETE', `/system/functions/${name}`);
  return { result, coldPercent: records === 0 ? 0 : Number(((cold / records) * 100).toFixed(1)), records, usage };
}

function summarize(policy: string, runs: TraceReplayRow['runs']): TraceReplayRow {
  return {
    policy,
    coldPercent: spreadOf(runs, (r) => r.coldPercent),
    p50Us: spreadOf(runs, (r) => r.result.latencyUs.p50),
    p99Us: spreadOf(runs, (r) => r.result.latencyUs.p99),
    gbSeconds: spreadOf(runs, (r) => r.usage.gbSeconds),
    traceGbSeconds: spreadOf(runs, (r) => Math.round(r.usage.gbSeconds * SCALE)),
    peakContainers: spreadOf(runs, (r) => r.usage.peakContainers),
    errors: runs.reduce((n, r) => n + r.result.errors + Object.entries(r.result.statuses).filter(([s]) => !s.startsWith('2')).reduce((m, [, c]) => m + c, 0), 0),
    runs,
  };
}

async function main(): Promise<void> {
  const notes: string[] = [];
  if (!existsSync(GENERATOR_FILE)) {
    const message = 'SKIPPED: bench/trace/generator.ts (the keep-alive trace generator) is not in this tree';
    log(message);
    writeResult({ scenario: 'trace-replay', settings: {}, baseline: 'fixed TTL', notes: [message], table: { headers: ['status'], rows: [['skipped']] }, rows: [] });
    return;
  }
  const generatorModule = (await import(pathToFileURL(GENERATOR_FILE).href)) as { generateTrace(p: { seed: number; functions: number; days: number }): TraceLike };
  // More functions than replayed: only those active in the window are kept.
  const trace = generatorModule.generateTrace({ seed: SEED, functions: FUNCTIONS * 4, days: Math.max(1, Math.ceil((START_MIN + MINUTES) / 1440)) });
  const p = plan(trace);
  if (p.capped > 0) notes.push(`${p.capped} calls above ${MAX_PER_MINUTE} per function-minute were left out (BENCH_REPLAY_MAX_PER_MINUTE).`);
  log(`${p.functions.length} functions, ${p.calls.length} calls over trace minutes ${START_MIN}–${START_MIN + MINUTES} (${((MINUTES * 60) / SCALE).toFixed(0)} s real at 1:${SCALE}), ${RUNS} runs per policy`);

  const ttlMs = Math.round(FIXED_TTL_TRACE_MS / SCALE);
  const policyEnv = await findEnvOverride(/keep-?alive.*polic|polic.*keep-?alive/i);
  const policies: Array<{ label: string; env: Record<string, string> }> = [{ label: `fixed TTL (10 trace-min = ${ttlMs / 1000} s)`, env: { SKIFF_IDLE_TIMEOUT_MS: String(ttlMs), ...(policyEnv ? { [policyEnv]: 'fixed' } : {}) } }];
  if (policyEnv) {
    policies.push({ label: 'adaptive (hybrid histogram)', env: { SKIFF_IDLE_TIMEOUT_MS: String(ttlMs), [policyEnv]: 'adaptive' } });
    notes.push(`The adaptive policy's histogram bins are real-time (1 min by default), not scaled by 1:${SCALE}; at this scale it mostly sees idle times under one bin.`);
  } else {
    notes.push('This executor has no keep-alive policy option (no SKIFF_*KEEPALIVE*POLICY* in config.ts ENV_OVERRIDES): only the fixed TTL ran.');
  }
  for (const note of notes) log(`NOTE: ${note}`);

  const docker = new Dockerode();
  const generator = new LoadGenerator();
  const rows: TraceReplayRow[] = [];
  const cpu: number[] = [];
  try {
    for (const policy of policies) {
      log(`${policy.label}: starting Skiff...`);
      const skiff = await startSkiff(policy.env);
      const client = new GatewayClient(skiff.url);
      try {
        const runs: TraceReplayRow['runs'] = [];
        for (let run = 1; run <= RUNS; run++) {
          const one = await replayOnce(client, generator, docker, skiff.nodeId, skiff.url, p, run);
          cpu.push(one.result.generator.cpuPercent);
          runs.push(one);
          log(`${policy.label} run ${run}: cold ${one.coldPercent}% of ${one.records}, ${one.usage.gbSeconds} GB·s, peak ${one.usage.peakContainers} containers, send lag max ${one.result.maxSendLagMs} ms`);
        }
        rows.push(summarize(policy.label, runs));
      } finally {
        await client.close();
        await skiff.stop();
      }
    }
  } finally {
    await generator.close();
  }
  const headers = ['policy', 'not warm %', 'p50 ms', 'p99 ms', 'GB·s (real)', 'GB·s (trace)', 'peak containers', 'errors'];
  const tableRows = rows.map((r) => [r.policy, formatSpread(r.coldPercent, 1), formatSpread(r.p50Us, 1, 1000), formatSpread(r.p99Us, 1, 1000), formatSpread(r.gbSeconds, 1), formatSpread(r.traceGbSeconds), formatSpread(r.peakContainers), r.errors]);
  log('');
  process.stdout.write(`${renderTable(headers, tableRows)}\n`);
  const file = writeResult<TraceReplayRow>({
    scenario: 'trace-replay',
    settings: { functions: p.functions.length, functionConcurrency: FUNCTION_CONCURRENCY, calls: p.calls.length, traceMinutes: MINUTES, startMinute: START_MIN, scale: SCALE, maxPerMinute: MAX_PER_MINUTE, seed: SEED, runs: RUNS, fixedTtlMs: ttlMs, policyEnv: policyEnv ?? null },
    baseline: 'the fixed 10-minute TTL (OpenWhisk), time-scaled. Cells are median (min–max) of the runs; not-warm % counts cold and stemcell starts.',
    generator: generatorCpu(cpu),
    notes,
    table: { headers, rows: tableRows },
    rows,
  });
  log(`wrote ${path.relative(ROOT, file)}`);
}

main().catch((err: unknown) => {
  process.stderr.write(`trace-replay: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
