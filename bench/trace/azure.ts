/**
 * Loads the public Azure Functions 2019 trace (https://github.com/Azure/AzurePublicDataset,
 * AzureFunctionsDataset2019) for users who have downloaded it:
 *  - invocations_per_function_md.anon.dNN.csv: HashOwner,HashApp,HashFunction,Trigger,1,…,1440
 *    (required; several days' files are concatenated in the order given);
 *  - function_durations_percentiles.anon.dNN.csv: …,HashFunction,Average,… (optional: run time);
 *  - app_memory_percentiles.anon.dNN.csv: HashOwner,HashApp,SampleCount,AverageAllocatedMb,… (optional).
 * Missing durations/memory take the defaults below.
 */
import { createReadStream } from 'node:fs';
import { createInterface } from 'node:readline';
import type { Trace, TraceFunction } from './trace.ts';

export interface AzureFiles {
  /** One invocations file per day, in day order. */
  invocations: string[];
  durations?: string;
  memory?: string;
  /** Keep at most this many functions (the first ones met); 0: all. */
  maxFunctions?: number;
}

const DEFAULT_MEMORY_MB = 256;
const DEFAULT_DURATION_MS = 1000;
const DEFAULT_COLD_START_MS = 600;
const MINUTES_PER_DAY = 1440;

async function* csvRows(file: string): AsyncGenerator<{ header: string[]; row: string[] }> {
  let header: string[] | undefined;
  for await (const line of createInterface({ input: createReadStream(file), crlfDelay: Infinity })) {
    if (line.trim() === '') continue;
    const cells = line.split(',');
    if (!header) header = cells;
    else yield { header, row: cells };
  }
}

function column(header: string[], name: string, file: string): number {
  const i = header.indexOf(name);
  if (i === -1) throw new Error(`${file}: no ${name} column (is this an Azure Functions 2019 trace file?)`);
  return i;
}

/** Reads the trace files into a Trace (one minute per count). */
export async function loadAzureTrace(files: AzureFiles): Promise<Trace> {
  if (files.invocations.length === 0) throw new Error('loadAzureTrace: give at least one invocations_per_function file');
  const minutes = files.invocations.length * MINUTES_PER_DAY;
  const byId = new Map<string, TraceFunction & { app: string }>();
  for (const [day, file] of files.invocations.entries()) {
    for await (const { header, row } of csvRows(file)) {
      const app = row[column(header, 'HashApp', file)];
      const id = `${app}/${row[column(header, 'HashFunction', file)]}`;
      let fn = byId.get(id);
      if (!fn) {
        if (files.maxFunctions && byId.size >= files.maxFunctions) continue;
        fn = { id, app, trigger: row[column(header, 'Trigger', file)], memoryMb: DEFAULT_MEMORY_MB, durationMs: DEFAULT_DURATION_MS, coldStartMs: DEFAULT_COLD_START_MS, counts: new Uint32Array(minutes) };
        byId.set(id, fn);
      }
      const first = column(header, '1', file);
      for (let m = 0; m < MINUTES_PER_DAY; m++) fn.counts[day * MINUTES_PER_DAY + m] = Number(row[first + m] ?? 0) || 0;
    }
  }
  if (files.durations) {
    for await (const { header, row } of csvRows(files.durations)) {
      const fn = byId.get(`${row[column(header, 'HashApp', files.durations)]}/${row[column(header, 'HashFunction', files.durations)]}`);
      const average = Number(row[column(header, 'Average', files.durations)]);
      if (fn && Number.isFinite(average) && average > 0) fn.durationMs = average;
    }
  }
  if (files.memory) {
    const byApp = new Map<string, number>();
    for await (const { header, row } of csvRows(files.memory)) {
      const mb = Number(row[column(header, 'AverageAllocatedMb', files.memory)]);
      if (Number.isFinite(mb) && mb > 0) byApp.set(row[column(header, 'HashApp', files.memory)], mb);
    }
    for (const fn of byId.values()) fn.memoryMb = byApp.get(fn.app) ?? fn.memoryMb;
  }
  const functions: TraceFunction[] = [...byId.values()].map(({ app: _app, ...fn }) => fn).filter((f) => f.counts.some((c) => c > 0));
  return { source: { azure: files }, minutes, functions };
}
