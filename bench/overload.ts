/**
 * Overload benchmark: drives far more sync and async calls than the executor can run, for
 * BENCH_DURATION_S (default 120), and samples the gateway's and the executor's RSS every second.
 * Every bound should hold: sync calls over capacity get 429 QUEUE_FULL with Retry-After, async
 * submits get 429 once a function's queue is full (or 507 when the journal is), and memory stays
 * flat. Skiff runs in its own processes (gateway and executor apart, embedded chDB).
 * Knobs: BENCH_DURATION_S, BENCH_SYNC_CONNECTIONS (default 128), BENCH_ASYNC_CONNECTIONS
 * (default 32), BENCH_WORK_MS (the function's sleep per call, default 50), BENCH_CLICKHOUSE_URL
 * (a ClickHouse server instead of embedded chDB, so the gateway's RSS is the gateway's alone).
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import autocannon from 'autocannon';
import Dockerode from 'dockerode';
import { GatewayClient } from '../cli/client.ts';
import { packFunctionDir } from '../cli/pack.ts';
import { spawnExecutor, spawnGateway } from '../cli/spawn-parts.ts';
import { renderTable } from '../cli/table.ts';
import { ensureRuntimeImage } from '../executor/index.ts';
import { describeCommit, describeMachine } from './machine.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const DURATION_S = Number(process.env.BENCH_DURATION_S ?? 120);
const SYNC_CONNECTIONS = Number(process.env.BENCH_SYNC_CONNECTIONS ?? 128);
const ASYNC_CONNECTIONS = Number(process.env.BENCH_ASYNC_CONNECTIONS ?? 32);
const WORK_MS = Number(process.env.BENCH_WORK_MS ?? 50);
const CLICKHOUSE_URL = process.env.BENCH_CLICKHOUSE_URL ?? '';
const SAMPLE_MS = 1000;
const FUNCTION_NAME = 'overload';
const FUNCTION_DIR = path.join(ROOT, 'test', 'async', 'functions', 'exec-log');
const RESULT_FILE = path.join(ROOT, 'bench', 'results', process.env.BENCH_CLICKHOUSE_URL ? 'overload-server.json' : 'overload.json');

/** Limits set low so that every bound is reached within seconds. */
const GATEWAY_ENV = {
  SKIFF_MAX_QUEUED_PER_FUNCTION: '64',
  SKIFF_ASYNC_MAX_QUEUED_PER_FUNCTION: '5000',
  SKIFF_ASYNC_MAX_JOURNAL_ENTRIES: '20000',
  SKIFF_ASYNC_MAX_IN_FLIGHT: '32',
  SKIFF_LOG_LEVEL: 'error',
};
const EXECUTOR_ENV = { SKIFF_EXECUTOR_MAX_IN_FLIGHT: '32', SKIFF_LOG_LEVEL: 'error' };

interface Sample {
  tS: number;
  gatewayRssMb: number;
  executorRssMb: number;
  journalEntries: number;
  asyncQueued: number;
  syncInFlight: number;
}

function log(line: string): void {
  process.stdout.write(`${line}\n`);
}

/** Resident set size of a process in MB, from /proc (0 when gone). */
function rssMb(pid: number): number {
  try {
    const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match ? Number(match[1]) / 1024 : 0;
  } catch {
    return 0;
  }
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted.length === 0 ? 0 : sorted[Math.floor(sorted.length / 2)];
}

/** Least-squares slope of RSS over time, in MB per minute. */
function slopeMbPerMin(points: Sample[]): number {
  const n = points.length;
  if (n < 2) return 0;
  const meanT = points.reduce((sum, p) => sum + p.tS, 0) / n;
  const meanR = points.reduce((sum, p) => sum + p.gatewayRssMb, 0) / n;
  let num = 0;
  let den = 0;
  for (const p of points) {
    num += (p.tS - meanT) * (p.gatewayRssMb - meanR);
    den += (p.tS - meanT) ** 2;
  }
  return den === 0 ? 0 : (num / den) * 60;
}

function statusCounts(result: autocannon.Result): Record<string, number> {
  const stats = (result as unknown as { statusCodeStats?: Record<string, { count: number }> }).statusCodeStats ?? {};
  const counts: Record<string, number> = {};
  for (const [code, s] of Object.entries(stats)) counts[code] = s.count;
  return counts;
}

async function main(): Promise<void> {
  log(`overload: ${DURATION_S} s, ${SYNC_CONNECTIONS} sync + ${ASYNC_CONNECTIONS} async connections, ${WORK_MS} ms of work per call, storage ${CLICKHOUSE_URL || 'embedded chDB'}`);
  const image = await ensureRuntimeImage(new Dockerode());
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'skiff-overload-'));
  const suffix = randomBytes(4).toString('hex');
  const gateway = await spawnGateway({ dataDir, clickhouseUrl: CLICKHOUSE_URL || undefined, env: { ...GATEWAY_ENV, SKIFF_CLICKHOUSE_DATABASE: `skiff_${suffix}` } });
  const executor = spawnExecutor({ bus: gateway.bus, nodeId: `overload-${suffix}`, runtimeImage: image, dataDir, env: EXECUTOR_ENV });
  const client = new GatewayClient(gateway.url);
  try {
    for (let i = 0; ; i++) {
      const ready = (await client.call('GET', '/readyz')).status === 200;
      if (ready) break;
      if (i > 600) throw new Error('the executor did not connect');
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    const code = (await packFunctionDir(FUNCTION_DIR)).toString('base64');
    await client.json('PUT', `/system/functions/${FUNCTION_NAME}`, { code, handler: 'index.mjs', limits: { concurrency: 8, timeoutMs: 10_000 } });
    const warm = await client.call('POST', `/function/${FUNCTION_NAME}`, 'warm');
    if (warm.status !== 200) throw new Error(`warm-up call failed: ${warm.status}`);

    const samples: Sample[] = [];
    const startedAt = Date.now();
    const sampler = setInterval(() => {
      void (async () => {
        const stats = JSON.parse((await client.call('GET', '/system/async')).body.toString()) as { journalEntries: number; queued: number };
        const ready = JSON.parse((await client.call('GET', '/readyz')).body.toString()) as { inFlight: number };
        samples.push({
          tS: Math.round((Date.now() - startedAt) / 1000),
          gatewayRssMb: rssMb(gateway.pid),
          executorRssMb: rssMb(executor.pid),
          journalEntries: stats.journalEntries,
          asyncQueued: stats.queued,
          syncInFlight: ready.inFlight,
        });
      })().catch(() => undefined);
    }, SAMPLE_MS);

    const body = 'x'.repeat(100);
    const run = (url: string, connections: number) =>
      autocannon({ url, method: 'POST', body, connections, duration: DURATION_S, headers: { 'content-type': 'text/plain' } });
    const [sync, asyncRun] = await Promise.all([
      run(`${gateway.url}/function/${FUNCTION_NAME}?ms=${WORK_MS}`, SYNC_CONNECTIONS),
      run(`${gateway.url}/async-function/${FUNCTION_NAME}?ms=${WORK_MS}`, ASYNC_CONNECTIONS),
    ]);
    clearInterval(sampler);

    const gatewayRss = samples.map((s) => s.gatewayRssMb);
    const quarter = Math.max(1, Math.floor(samples.length / 4));
    const secondQuarter = median(gatewayRss.slice(quarter, 2 * quarter));
    const lastQuarter = median(gatewayRss.slice(-quarter));
    const summary = {
      gatewayRssMb: { start: gatewayRss[0] ?? 0, max: Math.max(...gatewayRss), secondQuarterMedian: secondQuarter, lastQuarterMedian: lastQuarter, growthPercent: secondQuarter ? ((lastQuarter - secondQuarter) / secondQuarter) * 100 : 0, lastHalfSlopeMbPerMin: slopeMbPerMin(samples.filter((p) => p.tS >= DURATION_S / 2)), lastHalfMin: Math.min(...samples.filter((p) => p.tS >= DURATION_S / 2).map((p) => p.gatewayRssMb)), lastHalfMax: Math.max(...samples.filter((p) => p.tS >= DURATION_S / 2).map((p) => p.gatewayRssMb)) },
      executorRssMb: { max: Math.max(...samples.map((s) => s.executorRssMb)) },
      journalEntriesMax: Math.max(...samples.map((s) => s.journalEntries)),
      asyncQueuedMax: Math.max(...samples.map((s) => s.asyncQueued)),
      sync: { requests: sync.requests.total, statusCodes: statusCounts(sync), errors: sync.errors, timeouts: sync.timeouts },
      async: { requests: asyncRun.requests.total, statusCodes: statusCounts(asyncRun), errors: asyncRun.errors, timeouts: asyncRun.timeouts },
    };

    const every = Math.max(1, Math.floor(samples.length / 12));
    const tableRows = samples
      .filter((_, i) => i % every === 0 || i === samples.length - 1)
      .map((s) => [s.tS, s.gatewayRssMb.toFixed(1), s.executorRssMb.toFixed(1), s.journalEntries, s.asyncQueued, s.syncInFlight]);
    const headers = ['t (s)', 'gateway RSS MB', 'executor RSS MB', 'journal entries', 'async queued', 'sync in flight'];
    log(renderTable(headers, tableRows));
    log(`sync status codes: ${JSON.stringify(summary.sync.statusCodes)}; async status codes: ${JSON.stringify(summary.async.statusCodes)}`);
    log(`gateway RSS: median ${secondQuarter.toFixed(1)} MB in the 2nd quarter, ${lastQuarter.toFixed(1)} MB in the last (${summary.gatewayRssMb.growthPercent.toFixed(1)} %), max ${summary.gatewayRssMb.max.toFixed(1)} MB; last half ${summary.gatewayRssMb.lastHalfMin.toFixed(1)}–${summary.gatewayRssMb.lastHalfMax.toFixed(1)} MB, trend ${summary.gatewayRssMb.lastHalfSlopeMbPerMin.toFixed(1)} MB/min`);

    mkdirSync(path.dirname(RESULT_FILE), { recursive: true });
    writeFileSync(
      RESULT_FILE,
      `${JSON.stringify(
        {
          scenario: 'overload',
          date: new Date().toISOString(),
          machine: describeMachine(),
          ...describeCommit(),
          settings: { storage: CLICKHOUSE_URL ? 'ClickHouse server' : 'embedded chDB (in the gateway process: its memory is in the gateway RSS)', durationS: DURATION_S, syncConnections: SYNC_CONNECTIONS, asyncConnections: ASYNC_CONNECTIONS, workMs: WORK_MS, gatewayEnv: GATEWAY_ENV, executorEnv: EXECUTOR_ENV },
          notes: [
            'RSS from /proc/<pid>/status VmRSS once a second; growthPercent compares the median of the last quarter with the second quarter (the first is warm-up); lastHalfSlopeMbPerMin is the least-squares trend over the second half.',
            'The journal fills to async.maxQueuedPerFunction queued calls within the first ~30 s; after that every bound holds and RSS moves with garbage collection.',
          ],
          summary,
          table: { headers, rows: tableRows },
          samples,
        },
        null,
        2,
      )}\n`,
    );
    log(`overload: wrote ${path.relative(ROOT, RESULT_FILE)}`);
  } finally {
    await client.close();
    await executor.stop();
    await gateway.stop();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`overload: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
