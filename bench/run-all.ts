/**
 * `npm run bench`: every scenario in turn, each as its own process (so one's containers and
 * event loop never touch the next), then the report. Scenarios written elsewhere (cold-start,
 * ingest, keepalive) run when their script is in the tree. A failing scenario is reported and
 * the rest still run; the exit code says whether all passed.
 * Knobs: BENCH_ONLY (comma-separated scenario names), BENCH_SCENARIO_TIMEOUT_S (600), and each
 * scenario's own (bench/README.md).
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { renderTable } from '../cli/table.ts';
import { knobInt } from './knobs.ts';
import { renderReport } from './report.ts';
import { ROOT } from './skiff.ts';

/** In run order: the cheap, decisive figures first. */
const SCENARIOS = ['warm-invoke', 'cold-start', 'burst', 'many-functions', 'trace-replay', 'keepalive', 'ingest'] as const;
const TIMEOUT_MS = knobInt('BENCH_SCENARIO_TIMEOUT_S', 600) * 1000;
/**
 * Defaults `npm run bench` gives scenarios written elsewhere so the whole run fits 15 minutes on
 * 2 cores; a value already in the environment wins.
 */
const RUN_ALL_DEFAULTS: Readonly<Record<string, Readonly<Record<string, string>>>> = {
  ingest: { BENCH_INGEST_ROWS: '50000' },
};
/** Knobs whose list form (warm-invoke's) other scenarios read as one number: not passed to them as a list. */
const LIST_KNOBS_OF_WARM_INVOKE = ['BENCH_CONNECTIONS', 'BENCH_PAYLOAD_BYTES'];
const only = (process.env.BENCH_ONLY ?? '').split(',').map((s) => s.trim()).filter(Boolean);

interface Outcome {
  scenario: string;
  status: 'ok' | 'failed' | 'missing' | 'timed out';
  seconds: number;
}

function runScenario(scenario: string, file: string): Promise<{ code: number | null; timedOut: boolean }> {
  const env: NodeJS.ProcessEnv = { ...RUN_ALL_DEFAULTS[scenario], ...process.env };
  if (scenario !== 'warm-invoke') {
    for (const knob of LIST_KNOBS_OF_WARM_INVOKE) if (env[knob]?.includes(',')) delete env[knob];
  }
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', file], { cwd: ROOT, stdio: 'inherit', env });
    let timedOut = false;
    // SIGTERM first: the scenario's finally blocks stop Skiff and remove its containers.
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGTERM');
    }, TIMEOUT_MS);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, timedOut });
    });
  });
}

async function main(): Promise<void> {
  const unknown = only.filter((s) => !(SCENARIOS as readonly string[]).includes(s));
  if (unknown.length > 0) throw new Error(`BENCH_ONLY names unknown scenarios: ${unknown.join(', ')} (known: ${SCENARIOS.join(', ')})`);
  const started = performance.now();
  const outcomes: Outcome[] = [];
  for (const scenario of SCENARIOS) {
    if (only.length > 0 && !only.includes(scenario)) continue;
    const file = path.join(ROOT, 'bench', `${scenario}.ts`);
    if (!existsSync(file)) {
      process.stdout.write(`\nbench: ${scenario}: bench/${scenario}.ts is not in this tree, skipped\n`);
      outcomes.push({ scenario, status: 'missing', seconds: 0 });
      continue;
    }
    process.stdout.write(`\n=== ${scenario} ===\n`);
    const t0 = performance.now();
    const { code, timedOut } = await runScenario(scenario, file);
    outcomes.push({ scenario, status: timedOut ? 'timed out' : code === 0 ? 'ok' : 'failed', seconds: Math.round((performance.now() - t0) / 1000) });
  }
  const reportFile = await renderReport();
  const total = Math.round((performance.now() - started) / 1000);
  process.stdout.write(`\n${renderTable(['scenario', 'status', 'seconds'], outcomes.map((o) => [o.scenario, o.status, o.seconds]))}\n`);
  process.stdout.write(`bench: ${total} s in all; report: ${path.relative(ROOT, reportFile)}\n`);
  if (outcomes.some((o) => o.status === 'failed' || o.status === 'timed out')) process.exitCode = 1;
}

main().catch((err: unknown) => {
  process.stderr.write(`bench: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
