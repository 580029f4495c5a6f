/**
 * Logging overhead benchmark (`npm run bench:logging`): warm-invoke p99 with logging on vs off.
 * A real `skiff up` (its own processes), one function deployed twice — printing
 * LOG_LINES_PER_CALL lines per call, and printing nothing — loaded in turn by the load generator
 * (its own process), in two ways:
 * - saturated: closed loop on BENCH_CONNECTIONS connections, as fast as the machine goes. Every
 *   part shares the same cores, so p99 here follows the CPU a call costs: it measures what
 *   logging takes from capacity. CPU of every part (gateway+storage, executor, dockerd,
 *   containerd, the function containers) is read from /proc around each run: where a line's cost goes.
 * - fixed rate: open loop at each of BENCH_FIXED_RATE_PERCENTS of the logging-off saturated
 *   throughput, each call sent at its time: the latency a call sees at that load. The load
 *   generator shares the 2 cores, so 50 % of the saturated rate already keeps them well busy,
 *   and there the added CPU of logging shows in the tail as queueing.
 * Each round runs three deployments of the function in turn: logging off, logging on, and logging
 * off again (an A/A control: a second, identical deployment), each round in another order
 * (ROUND_ORDERS) so machine load hits all alike. The verdict's ratio is the median over rounds
 * of (on p99 / off p99) of the same round (on a machine whose speed drifts, a round's runs share
 * its conditions, and one round a stall spoiled moves a median little), with a bootstrap interval
 * over rounds; the control's off / off ratio and interval, measured the same way, show how far
 * this machine's noise alone moves the figure. The pooled ratio (the p99 of every call of a mode over all
 * rounds) is printed too. The table's figures are medians of the runs.
 * GC pauses of the gateway's and the executor's main threads (GET /system/stats, read RUNTIME_SETTLE_MS
 * after each run so the executor's heartbeat has brought its own) are summed per mode: a pause
 * stops every call in flight, so at a fixed rate they are most of the p99, and what logging adds
 * to them shows how it reaches the tail.
 * After the runs it waits until storage holds every line printed, so a path that drops lines fails.
 *
 * Knobs: BENCH_DURATION_S (3), BENCH_RUNS (12), BENCH_CONNECTIONS (16), BENCH_FIXED_RATE_PERCENTS (25,50).
 * Writes bench/results/logging-overhead.json. bench/ingest.ts runs the same part (loggingOnOff).
 */
import { readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import Dockerode from 'dockerode';
import { packFunctionDir } from '../cli/pack.ts';
import { renderTable } from '../cli/table.ts';
import { gcPausesBetween, type RuntimeStats } from '../runtime-stats.ts';
import type { StorageStats } from '../storage/index.ts';
import { knobInt, knobList } from './knobs.ts';
import { LoadGenerator, type DurationResult, type ScheduleResult } from './load.ts';
import { generatorCpu, writeResult } from './results.ts';
import { GatewayClient, logger, startSkiff } from './skiff.ts';
import { formatSpread, medianRatioInterval, pooledRatioInterval, spreadOf, type Distribution, type RatioInterval, type Spread } from './stats.ts';

const DURATION_S = knobInt('BENCH_DURATION_S', 3);
/** Rounds: a multiple of ROUND_ORDERS' 6 balances the orders. More, shorter rounds steady a median of per-round ratios. */
const RUNS = knobInt('BENCH_RUNS', 12);
const CONNECTIONS = knobInt('BENCH_CONNECTIONS', 16);
const FIXED_RATE_PERCENTS = knobList('BENCH_FIXED_RATE_PERCENTS', [25, 50]);
/** Calls one container of the bench functions takes at once (limits.concurrency). */
const CONTAINER_CONCURRENCY = 64;
/** A fixed-rate call that takes longer than this counts as an error. */
const FIXED_RATE_TIMEOUT_MS = 10_000;
export const LOG_LINES_PER_CALL = 10;
/** The knobs this run took, for result files. */
export const LOGGING_SETTINGS = { durationS: DURATION_S, runs: RUNS, connections: CONNECTIONS, fixedRatePercents: FIXED_RATE_PERCENTS, logLinesPerCall: LOG_LINES_PER_CALL } as const;
export const GOAL_P99_RATIO = 1.1;
const WARM_UP_S = 1;
/** Warm-up at each fixed rate, not measured: the first seconds of an open loop still pay for the switch (connections, containers' sockets). */
const FIXED_RATE_WARM_UP_S = 3;
/** How long storage may take to hold every printed line after the last run (batched writes). */
const LINES_SETTLE_MS = 30_000;
const CLOCK_TICKS_PER_S = 100;
/** Wait after each run before reading GC pauses: an executor's come with its heartbeats (bus.heartbeatIntervalMs, 500). */
const RUNTIME_SETTLE_MS = 600;
const log = logger('logging-overhead');

const LOGGING_FUNCTION = `// Bench fixture: prints LINES lines per call (0: nothing), then answers.
export default async function handler(request, context) {
  const lines = Number(process.env.LINES || 0);
  for (let i = 0; i < lines; i++) console.log(\`line \${i} of call \${context.callId}: some typical log text\`);
  return 'ok';
}
`;

export const CPU_PARTS = ['gateway+storage', 'executor', 'dockerd', 'containerd', 'function containers'] as const;

/** The three deployments a round runs: logging off, on, and off again (the A/A control). */
const MODES = ['off', 'on', 'control'] as const;
export type LoggingMode = (typeof MODES)[number];
const FUNCTION_OF: Record<LoggingMode, string> = { off: 'log-off', on: 'log-on', control: 'log-off-control' };
/**
 * Every order of the three modes, one per round in turn: over a multiple of 6 rounds each mode runs
 * equally often in each place and right after each other mode, so neither a place in the round
 * nor what ran just before (storage still writing the last run's lines) favours one.
 */
const ROUND_ORDERS: readonly LoggingMode[][] = [
  ['off', 'on', 'control'],
  ['off', 'control', 'on'],
  ['on', 'off', 'control'],
  ['on', 'control', 'off'],
  ['control', 'off', 'on'],
  ['control', 'on', 'off'],
];
const roundOrder = (round: number): LoggingMode[] => ROUND_ORDERS[round % ROUND_ORDERS.length];
/** The bootstrap interval's confidence. */
const CONFIDENCE = 0.9;

/** GC pause time per 1000 calls (ms) of the gateway's and the executor's main threads; major counts incremental marking steps too. */
export interface GcPauses {
  gateway: { minor: number; major: number };
  executor: { minor: number; major: number };
}

export interface LoggingRow {
  logging: LoggingMode;
  requestsPerSec: Spread;
  p50Us: Spread;
  p99Us: Spread;
  errors: number;
  /** CPU per 1000 calls (ms) of each part, summed over the runs: where logging's cost goes. */
  cpuMsPer1000Calls: Record<string, number>;
  /** GC pauses over its runs (each read up to RUNTIME_SETTLE_MS after the run ended). */
  gcPauseMsPer1000Calls: GcPauses;
  runs: DurationResult[];
}

/** The fixed-rate runs of one mode at one rate. */
export interface FixedRateRow {
  logging: LoggingMode;
  /** The rate as a share of the logging-off saturated throughput. */
  percentOfSaturated: number;
  requestsPerSec: number;
  p50Us: Spread;
  p99Us: Spread;
  errors: number;
  gcPauseMsPer1000Calls: GcPauses;
  runs: ScheduleResult[];
}

/** How p99 with logging on compares with logging off, and what noise alone does to the figure. */
export interface P99Verdict {
  /** Median over rounds of (on p99 / off p99) of the same round, with its bootstrap interval: the verdict. */
  onOff: RatioInterval;
  /** The A/A control: the same for the second logging-off deployment over the first. */
  control: RatioInterval;
  /** p99 of every on call over p99 of every off call, with its interval. */
  pooledOnOff: RatioInterval;
}

export interface LoggingResult {
  rows: LoggingRow[];
  /** Saturated. */
  p99: P99Verdict;
  /** Per fixed rate: the rows of each mode and the verdict. */
  fixedRates: Array<{ percentOfSaturated: number; rows: FixedRateRow[]; p99: P99Verdict }>;
  /** Log rows storage wrote, and how many the calls with logging on printed. */
  logRowsStored: number;
  logRowsPrinted: number;
  /** Storage's counters once every line was stored: batches that had to wait in the disk spool, rows dropped. */
  storage: { batchesWritten: number; batchesSpooled: number; droppedRows: number };
  /** Load generator CPU of every run. */
  cpu: number[];
}

/**
 * CPU ms so far of every process, grouped: Skiff's gateway+storage, its executor, dockerd,
 * containerd (both shared with anything else using Docker), the function containers of this Skiff
 * (`containerIds`, told apart from other containers by their cgroup).
 */
function cpuByPart(skiffPid: number, executorPid: number, containerIds: readonly string[]): Map<string, number> {
  const parts = new Map<string, number>();
  for (const pid of readdirSync('/proc').filter((name) => /^\d+$/.test(name))) {
    let stat: string;
    let cmdline: string;
    try {
      stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ');
    } catch {
      continue; // exited meanwhile
    }
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ms = ((Number(fields[11]) + Number(fields[12])) * 1000) / CLOCK_TICKS_PER_S;
    const id = Number(pid);
    const part =
      id === skiffPid ? 'gateway+storage'
        : id === executorPid ? 'executor'
          : /(^|\/)dockerd /.test(cmdline) ? 'dockerd'
            : /containerd/.test(cmdline) ? 'containerd'
              : /bootstrap\.mjs/.test(cmdline) && inContainers(pid, containerIds) ? 'function containers'
                : undefined;
    if (part) parts.set(part, (parts.get(part) ?? 0) + ms);
  }
  return parts;
}

function inContainers(pid: string, containerIds: readonly string[]): boolean {
  try {
    const cgroup = readFileSync(`/proc/${pid}/cgroup`, 'utf8');
    return containerIds.some((id) => cgroup.includes(id));
  } catch {
    return false;
  }
}

/** Full ids of the containers of one Skiff node. */
async function containersOf(docker: Dockerode, nodeId: string): Promise<string[]> {
  return (await docker.listContainers({ all: true, filters: { label: [`skiff.node=${nodeId}`] } })).map((c) => c.Id);
}

/** The gateway's and the (one) executor's runtime figures at one moment. */
export interface Runtimes {
  gateway: RuntimeStats;
  executor?: RuntimeStats;
}

/** Runtimes as GET /system/stats gives them. */
async function runtimes(client: GatewayClient): Promise<Runtimes> {
  const stats = await client.json<{ gateway: { runtime: RuntimeStats }; executors: Array<{ runtime?: RuntimeStats }> }>('GET', '/system/stats');
  return { gateway: stats.gateway.runtime, executor: stats.executors[0]?.runtime };
}

/** GC pauses summed per process and kind over windows, then put per 1000 calls. */
export class GcPauseTally {
  readonly #ms = { gateway: { minor: 0, major: 0 }, executor: { minor: 0, major: 0 } };
  #calls = 0;

  add(before: Runtimes, after: Runtimes, calls: number): void {
    this.#calls += calls;
    for (const part of ['gateway', 'executor'] as const) {
      const [b, a] = [before[part], after[part]];
      if (!b || !a) continue;
      const window = gcPausesBetween(b, a);
      this.#ms[part].minor += window.minor.totalMs;
      this.#ms[part].major += window.major.totalMs + window.incremental.totalMs;
    }
  }

  per1000Calls(): GcPauses {
    const per = (ms: number) => Number(((ms * 1000) / Math.max(1, this.#calls)).toFixed(2));
    return {
      gateway: { minor: per(this.#ms.gateway.minor), major: per(this.#ms.gateway.major) },
      executor: { minor: per(this.#ms.executor.minor), major: per(this.#ms.executor.major) },
    };
  }
}

/**
 * GC pauses per mode over consecutive runs: a run's window goes from the last reading to one taken
 * RUNTIME_SETTLE_MS after the run ended (by then the executor's heartbeat has brought its own).
 */
async function gcPauseWindows(client: GatewayClient): Promise<{ tallies: Record<LoggingMode, GcPauseTally>; runEnded(mode: LoggingMode, calls: number): Promise<void> }> {
  const settle = () => new Promise((resolve) => setTimeout(resolve, RUNTIME_SETTLE_MS));
  const tallies: Record<LoggingMode, GcPauseTally> = { off: new GcPauseTally(), on: new GcPauseTally(), control: new GcPauseTally() };
  await settle();
  let last = await runtimes(client);
  return {
    tallies,
    async runEnded(mode, calls) {
      await settle();
      const now = await runtimes(client);
      tallies[mode].add(last, now, calls);
      last = now;
    },
  };
}

/** Runs the logging on/off comparison on a fresh `skiff up`. */
export async function loggingOnOff(): Promise<LoggingResult> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'skiff-bench-logfn-'));
  await writeFile(path.join(dir, 'index.mjs'), LOGGING_FUNCTION);
  const code = (await packFunctionDir(dir)).toString('base64');
  await rm(dir, { recursive: true, force: true });
  log('starting Skiff (gateway + embedded chDB, executor) for logging on/off...');
  const skiff = await startSkiff();
  const generator = new LoadGenerator();
  const client = new GatewayClient(skiff.url);
  const docker = new Dockerode();
  try {
    // One container takes every call: an open loop can briefly hold more calls in flight than the
    // closed loop's connections, and a scale-up (cold starts on these 2 cores) would be measured
    // instead of logging.
    const limits = { concurrency: Math.max(CONNECTIONS, CONTAINER_CONCURRENCY), memoryMB: 256 };
    const lines: Record<LoggingMode, number> = { off: 0, on: LOG_LINES_PER_CALL, control: 0 };
    for (const mode of MODES) await client.json('PUT', `/system/functions/${FUNCTION_OF[mode]}`, { code, handler: 'index.mjs', env: { LINES: String(lines[mode]) }, limits });
    const runs: Record<LoggingMode, DurationResult[]> = { off: [], on: [], control: [] };
    const cpuMs: Record<LoggingMode, Map<string, number>> = { off: new Map(), on: new Map(), control: new Map() };
    const skiffPid = skiff.process.pid ?? -1;
    const target = (mode: LoggingMode) => ({ url: `${skiff.url}/function/${FUNCTION_OF[mode]}`, method: 'POST' as const, headers: { 'content-type': 'text/plain' }, body: Buffer.from('hello') });
    let okCallsOn = 0;
    for (const mode of MODES) {
      // Warm-up: containers up, JIT warm.
      const warm = await generator.run({ kind: 'duration', target: target(mode), connections: CONNECTIONS, durationS: WARM_UP_S });
      if (mode === 'on') okCallsOn += warm.requests - warm.errors - warm.non2xx;
    }
    const gcPauses = await gcPauseWindows(client);
    for (let run = 0; run < RUNS; run++) {
      for (const mode of roundOrder(run)) {
        const containers = await containersOf(docker, skiff.nodeId);
        const before = cpuByPart(skiffPid, skiff.executorPid, containers);
        const result = await generator.run({ kind: 'duration', target: target(mode), connections: CONNECTIONS, durationS: DURATION_S, keepDistribution: true });
        for (const [part, ms] of cpuByPart(skiffPid, skiff.executorPid, containers)) cpuMs[mode].set(part, (cpuMs[mode].get(part) ?? 0) + ms - (before.get(part) ?? 0));
        runs[mode].push(result);
        await gcPauses.runEnded(mode, result.requests);
        if (mode === 'on') okCallsOn += result.requests - result.errors - result.non2xx;
        log(`logging ${mode} run ${run + 1}: ${Math.round(result.requestsPerSec)} req/s, p99 ${result.latencyUs.p99} µs`);
      }
    }
    const rows: LoggingRow[] = MODES.map((mode) => ({
      logging: mode,
      requestsPerSec: spreadOf(runs[mode], (r) => Math.round(r.requestsPerSec)),
      p50Us: spreadOf(runs[mode], (r) => r.latencyUs.p50),
      p99Us: spreadOf(runs[mode], (r) => r.latencyUs.p99),
      errors: runs[mode].reduce((n, r) => n + r.errors + r.non2xx, 0),
      cpuMsPer1000Calls: Object.fromEntries(
        [...cpuMs[mode]].map(([part, ms]) => [part, Number(((ms * 1000) / Math.max(1, runs[mode].reduce((n, r) => n + r.requests, 0))).toFixed(1))]),
      ),
      gcPauseMsPer1000Calls: gcPauses.tallies[mode].per1000Calls(),
      runs: runs[mode],
    }));
    // Open loop at shares of what the platform sustains with logging off.
    const fixedRates: LoggingResult['fixedRates'] = [];
    const fixedCpu: number[] = [];
    for (const percent of FIXED_RATE_PERCENTS) {
      const rate = Math.max(1, Math.round((rows[0].requestsPerSec.median * percent) / 100));
      const calls = Array.from({ length: rate * DURATION_S }, (_, i) => ({ atMs: (i * 1000) / rate, path: '' }));
      const schedule = (mode: LoggingMode, at: typeof calls) => {
        const { url, headers, body } = target(mode);
        return generator.run({ kind: 'schedule', baseUrl: url, method: 'POST', headers, body, calls: at, timeoutMs: FIXED_RATE_TIMEOUT_MS, keepDistribution: true });
      };
      const okCalls = (result: ScheduleResult) => Object.entries(result.statuses).reduce((n, [status, count]) => n + (status.startsWith('2') ? count : 0), 0);
      const fixedRuns: Record<LoggingMode, ScheduleResult[]> = { off: [], on: [], control: [] };
      for (const mode of MODES) {
        const warm = await schedule(mode, Array.from({ length: rate * FIXED_RATE_WARM_UP_S }, (_, i) => ({ atMs: (i * 1000) / rate, path: '' })));
        if (mode === 'on') okCallsOn += okCalls(warm);
      }
      const fixedGcPauses = await gcPauseWindows(client);
      for (let run = 0; run < RUNS; run++) {
        for (const mode of roundOrder(run)) {
          const result = await schedule(mode, calls);
          fixedRuns[mode].push(result);
          await fixedGcPauses.runEnded(mode, calls.length);
          fixedCpu.push(result.generator.cpuPercent);
          if (mode === 'on') okCallsOn += okCalls(result);
          log(`logging ${mode} at ${rate} calls/s (${percent} %), run ${run + 1}: p50 ${result.latencyUs.p50} µs, p99 ${result.latencyUs.p99} µs, sent up to ${result.maxSendLagMs} ms late`);
        }
      }
      fixedRates.push({
        percentOfSaturated: percent,
        rows: MODES.map((mode) => ({
          logging: mode,
          percentOfSaturated: percent,
          requestsPerSec: rate,
          p50Us: spreadOf(fixedRuns[mode], (r) => r.latencyUs.p50),
          p99Us: spreadOf(fixedRuns[mode], (r) => r.latencyUs.p99),
          errors: fixedRuns[mode].reduce((n, r) => n + r.errors + Object.entries(r.statuses).reduce((m, [status, count]) => m + (status.startsWith('2') ? 0 : count), 0), 0),
          gcPauseMsPer1000Calls: fixedGcPauses.tallies[mode].per1000Calls(),
          runs: fixedRuns[mode],
        })),
        p99: p99Verdict(fixedRuns),
      });
    }
    const logRowsPrinted = okCallsOn * LOG_LINES_PER_CALL;
    const { written: logRowsStored, storage } = await storedLogRows(client, logRowsPrinted);
    return {
      rows,
      p99: p99Verdict(runs),
      fixedRates,
      logRowsStored,
      logRowsPrinted,
      storage: { batchesWritten: storage.batchesWritten, batchesSpooled: storage.batchesSpooled, droppedRows: storage.droppedRows },
      cpu: [...MODES.flatMap((mode) => runs[mode].map((r) => r.generator.cpuPercent)), ...fixedCpu],
    };
  } finally {
    await client.close();
    await generator.close();
    await skiff.stop();
  }
}

/** Log rows written so far, once they reach `expected` or stop growing within LINES_SETTLE_MS. */
async function storedLogRows(client: GatewayClient, expected: number): Promise<{ written: number; storage: StorageStats }> {
  const deadline = Date.now() + LINES_SETTLE_MS;
  for (;;) {
    const { storage } = await client.json<{ storage: StorageStats }>('GET', '/system/stats');
    const written = storage.tables.logs.recordsWritten;
    if (written >= expected || Date.now() > deadline) return { written, storage };
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
}

/** on / off of two medians (3 decimals). */
function medianRatio(off: Spread, on: Spread): number {
  return Number((on.median / off.median).toFixed(3));
}

/** The p99 verdict of one load's runs (every run kept its latency distribution). */
function p99Verdict(runs: Record<LoggingMode, ReadonlyArray<{ latencyUs: { p99: number }; latencyDistribution?: Distribution }>>): P99Verdict {
  const distributions = (mode: LoggingMode) => runs[mode].map((r) => r.latencyDistribution ?? []);
  const p99s = (mode: LoggingMode) => runs[mode].map((r) => r.latencyUs.p99);
  return {
    onOff: medianRatioInterval(p99s('off'), p99s('on'), undefined, CONFIDENCE),
    control: medianRatioInterval(p99s('off'), p99s('control'), undefined, CONFIDENCE),
    pooledOnOff: pooledRatioInterval(distributions('off'), distributions('on'), 99, undefined, CONFIDENCE),
  };
}

const formatInterval = (r: RatioInterval) => `${r.ratio} (${Math.round(r.confidence * 100)} % interval ${r.low}–${r.high})`;

/** One verdict line: the ratio against the goal, beside the control's and the pooled ratio. */
function describeVerdict(load: string, v: P99Verdict): string {
  const met = v.onOff.ratio <= GOAL_P99_RATIO ? 'met' : 'NOT met';
  const spans = v.onOff.low <= GOAL_P99_RATIO && v.onOff.high > GOAL_P99_RATIO ? ' (its interval spans the goal)' : '';
  return (
    `warm p99 logging on / off ${load}: ${formatInterval(v.onOff)} (median of per-round ratios; goal ≤ ${GOAL_P99_RATIO}): ${met}${spans}; ` +
    `A/A control off / off ${formatInterval(v.control)}; pooled p99 on / off ${formatInterval(v.pooledOnOff)}`
  );
}

/** The table (saturated and fixed-rate rows) and the notes (verdicts, CPU added per part, lines stored) of a result. */
export function describeLogging(result: LoggingResult): { headers: string[]; rows: Array<Array<string | number>>; notes: string[] } {
  const off = result.rows.find((r) => r.logging === 'off')!;
  const on = result.rows.find((r) => r.logging === 'on')!;
  const headers = ['load', 'logging', 'req/s', 'p50 µs', 'p99 µs', 'errors', 'gateway GC pause ms/1k calls (minor / major)', 'executor GC pause ms/1k calls (minor / major)', ...CPU_PARTS.map((p) => `${p} CPU ms/1k calls`)];
  const gc = (g: GcPauses, part: keyof GcPauses) => `${g[part].minor} / ${g[part].major}`;
  const modeName = (mode: LoggingMode) => (mode === 'control' ? 'off (A/A control)' : mode);
  const rows = [
    ...result.rows.map((r) => [`saturated, ${CONNECTIONS} connections`, modeName(r.logging), formatSpread(r.requestsPerSec), formatSpread(r.p50Us), formatSpread(r.p99Us), r.errors, gc(r.gcPauseMsPer1000Calls, 'gateway'), gc(r.gcPauseMsPer1000Calls, 'executor'), ...CPU_PARTS.map((p) => r.cpuMsPer1000Calls[p] ?? 0)]),
    ...result.fixedRates.flatMap((f) => f.rows.map((r) => [`fixed rate, ${r.percentOfSaturated} % of saturated`, modeName(r.logging), r.requestsPerSec, formatSpread(r.p50Us), formatSpread(r.p99Us), r.errors, gc(r.gcPauseMsPer1000Calls, 'gateway'), gc(r.gcPauseMsPer1000Calls, 'executor'), ...CPU_PARTS.map(() => '')])),
  ];
  const added = CPU_PARTS.map((p) => `${p} +${((on.cpuMsPer1000Calls[p] ?? 0) - (off.cpuMsPer1000Calls[p] ?? 0)).toFixed(0)}`).join(', ');
  const notes = [
    ...result.fixedRates.map((f) => describeVerdict(`at a fixed ${f.rows[0].requestsPerSec} calls/s (${f.percentOfSaturated} % of saturated throughput)`, f.p99)),
    `${describeVerdict(`saturated (closed loop, ${CONNECTIONS} connections)`, result.p99)}; throughput on / off ${medianRatio(off.requestsPerSec, on.requestsPerSec)}`,
    `logging on (${LOG_LINES_PER_CALL} lines per call) adds CPU ms per 1000 calls: ${added}`,
    ...[{ load: 'saturated', rows: result.rows }, ...result.fixedRates.map((f) => ({ load: `at ${f.percentOfSaturated} %`, rows: f.rows }))].map(({ load, rows: modeRows }) => {
      const total = (mode: LoggingMode, part: keyof GcPauses) => {
        const g = modeRows.find((r) => r.logging === mode)!.gcPauseMsPer1000Calls[part];
        return g.minor + g.major;
      };
      const delta = (part: keyof GcPauses) => `${part} ${total('off', part).toFixed(1)} → ${total('on', part).toFixed(1)} (A/A ${total('control', part).toFixed(1)})`;
      return `GC pause ms per 1000 calls ${load}, logging off → on: ${delta('gateway')}, ${delta('executor')}`;
    }),
    `logging on printed ${result.logRowsPrinted} lines (successful calls × ${LOG_LINES_PER_CALL}); storage wrote ${result.logRowsStored} log rows` +
      (result.logRowsStored >= result.logRowsPrinted ? '' : ' — LINES MISSING') +
      `; storage batches written ${result.storage.batchesWritten}, of them through the disk spool ${result.storage.batchesSpooled}, rows dropped ${result.storage.droppedRows}`,
  ];
  return { headers, rows, notes };
}

/** The rows a result file keeps of a result (runs left out), each tagged by `part`. */
export function loggingResultRows(result: LoggingResult, part: { saturated: string; fixedRate: string }): Array<Record<string, unknown>> {
  const off = result.rows.find((r) => r.logging === 'off')!;
  return [
    ...result.rows.map(({ runs: _runs, ...row }) => ({ part: part.saturated, ...row, p99OverLoggingOff: medianRatio(off.p99Us, row.p99Us), p99: result.p99 })),
    ...result.fixedRates.flatMap((f) => f.rows.map(({ runs: _runs, ...row }) => ({ part: part.fixedRate, ...row, p99OverLoggingOff: medianRatio(f.rows[0].p99Us, row.p99Us), p99: f.p99 }))),
  ];
}

async function main(): Promise<void> {
  const loadBefore = os.loadavg().map((v) => v.toFixed(1)).join(' ');
  const result = await loggingOnOff();
  const { headers, rows, notes } = describeLogging(result);
  process.stdout.write(`\n${renderTable(headers, rows)}\n\n`);
  for (const note of notes) process.stdout.write(`${note}\n`);
  const file = writeResult({
    scenario: 'logging-overhead',
    settings: LOGGING_SETTINGS,
    baseline: 'logging off: the same function, deployed with LINES=0, printing nothing; a second such deployment is the A/A control; runs interleaved in rotating order',
    generator: generatorCpu(result.cpu),
    notes: [
      ...notes,
      `load average (1/5/15 min) ${loadBefore} at start, ${os.loadavg().map((v) => v.toFixed(1)).join(' ')} at end on ${os.availableParallelism()} cores`,
      `warm-invoke on embedded chDB (skiff up's default); ${RUNS} interleaved rounds of ${DURATION_S} s saturated (${CONNECTIONS} connections), then ${RUNS} at each fixed rate (${result.fixedRates.map((f) => `${f.rows[0].requestsPerSec} calls/s`).join(', ')})`,
    ],
    table: { headers, rows },
    rows: loggingResultRows(result, { saturated: 'saturated', fixedRate: 'fixed-rate' }),
  });
  log(`wrote ${file}`);
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().catch((err: unknown) => {
    process.stderr.write(`bench:logging failed: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  });
}
