/**
 * The one shape of a benchmark result file in bench/results/: the scenario, when, the machine
 * and the commit, the knobs it ran with, the load generator's own CPU use, the table it printed
 * (so a report can show any scenario), and the scenario's own rows for charts.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describeCommit, describeMachine, type MachineInfo } from './machine.ts';
import { ROOT } from './skiff.ts';

/** BENCH_RESULTS_DIR, default bench/results. */
export const RESULTS_DIR = process.env.BENCH_RESULTS_DIR ? path.resolve(process.env.BENCH_RESULTS_DIR) : path.join(ROOT, 'bench', 'results');

export interface PrintedTable {
  headers: string[];
  rows: Array<Array<string | number>>;
}

export interface ResultFile<Row> {
  scenario: string;
  date: string;
  machine: MachineInfo;
  commit: string;
  dirty: boolean;
  settings: Record<string, unknown>;
  /** What each figure is compared with. */
  baseline: string;
  /** Load generator CPU: the highest share of one core it used in any run, and the mean. */
  generator?: { maxCpuPercent: number; meanCpuPercent: number };
  /** Things a reader must know (a feature missing, a step skipped, a busy machine). */
  notes: string[];
  /** The machine's 1/5/15-minute load averages when the result was written. */
  loadAverage?: number[];
  table: PrintedTable;
  rows: Row[];
}

/** Writes `<RESULTS_DIR>/<scenario>.json`; returns its path. */
export function writeResult<Row>(result: Omit<ResultFile<Row>, 'date' | 'machine' | 'commit' | 'dirty'>): string {
  const machine = describeMachine();
  const loadAverage = os.loadavg().map((l) => Number(l.toFixed(1)));
  const notes = [...result.notes];
  // Over one runnable task per core for the last 5 minutes: something else shared the machine.
  if (loadAverage[1] > machine.cores) notes.push(`Load average ${loadAverage.join(' / ')} (1/5/15 min) on ${machine.cores} cores when this was written: the machine was busy, so these figures are pessimistic.`);
  const full: ResultFile<Row> = { ...result, notes, loadAverage, date: new Date().toISOString(), machine, ...describeCommit() };
  mkdirSync(RESULTS_DIR, { recursive: true });
  const file = path.join(RESULTS_DIR, `${result.scenario}.json`);
  writeFileSync(file, `${JSON.stringify(full, null, 2)}\n`);
  return file;
}

/** Sums up the load generator's CPU use over its runs. */
export function generatorCpu(percents: readonly number[]): { maxCpuPercent: number; meanCpuPercent: number } {
  if (percents.length === 0) return { maxCpuPercent: 0, meanCpuPercent: 0 };
  const mean = percents.reduce((a, b) => a + b, 0) / percents.length;
  return { maxCpuPercent: Math.max(...percents), meanCpuPercent: Number(mean.toFixed(1)) };
}
