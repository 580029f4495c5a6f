/**
 * Ingest benchmark (`npm run bench:ingest`), two parts in one run:
 *
 * 1. Rows per second through storage's whole write path (batcher → encoder worker → insert;
 *    the spool only if ClickHouse falls behind) into chDB and into the ClickHouse server, for
 *    invocation records and for log lines, at batch sizes 1k/10k/100k. The records are built
 *    before the clock starts; the producer pushes while the writer has room in its batch queue
 *    (so the figure is what storage sustains, not how fast the spool fills), and the clock stops
 *    when drain() says every row is in ClickHouse. Storage runs in a child process of its own
 *    per point (`--child`), so one backend's threads never share a process with another's.
 * 2. Warm-invoke p99 with logging on vs off: a real `skiff up` (its own processes), one function
 *    deployed twice — printing 10 lines per call, and printing nothing — loaded in turn by the
 *    load generator (its own process), runs interleaved; medians of the runs.
 *
 * Knobs: BENCH_INGEST_ROWS (500000), BENCH_INGEST_BATCHES (1000,10000,100000),
 * BENCH_INGEST_BACKENDS (chdb,server), BENCH_DURATION_S (5), BENCH_RUNS (3),
 * BENCH_CONNECTIONS (16), BENCH_CLICKHOUSE_URL (http://127.0.0.1:8123).
 * Writes bench/results/ingest.json.
 */
import { execFileSync, fork } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { packFunctionDir } from '../cli/pack.ts';
import { renderTable } from '../cli/table.ts';
import { openStorage, type InvocationRecord, type StorageOptions, type StorageStats } from '../storage/index.ts';
import type { LogLine } from '../bus/messages.ts';
import { knobInt, knobList } from './knobs.ts';
import { LoadGenerator, type DurationResult } from './load.ts';
import { generatorCpu, writeResult } from './results.ts';
import { GatewayClient, logger, ROOT, startSkiff } from './skiff.ts';
import { formatSpread, spreadOf, type Spread } from './stats.ts';

const ROWS = knobInt('BENCH_INGEST_ROWS', 500_000);
const BATCHES = knobList('BENCH_INGEST_BATCHES', [1_000, 10_000, 100_000]);
const BACKENDS = (process.env.BENCH_INGEST_BACKENDS ?? 'chdb,server').split(',').map((s) => s.trim()) as Array<'chdb' | 'server'>;
const DURATION_S = knobInt('BENCH_DURATION_S', 5);
const RUNS = knobInt('BENCH_RUNS', 3);
const CONNECTIONS = knobInt('BENCH_CONNECTIONS', 16);
const CLICKHOUSE_URL = process.env.BENCH_CLICKHOUSE_URL ?? 'http://127.0.0.1:8123';
const LOG_LINES_PER_CALL = 10;
const GOAL_LOG_ROWS_PER_S = 200_000;
const GOAL_P99_RATIO = 1.1;
const THIS_FILE = fileURLToPath(import.meta.url);
const log = logger('ingest');

type Kind = 'invocations' | 'logs';

interface IngestPoint {
  backend: 'chdb' | 'server';
  kind: Kind;
  batchRows: number;
  rows: number;
  seconds: number;
  rowsPerSec: number;
  batchesSpooled: number;
  droppedRows: number;
  /** CPU of the storage process (event loop and worker threads) while ingesting, as a share of one core. */
  cpuPercent: number;
}

// ---------------------------------------------------------------- part 1: the child

function invocationRecords(n: number): InvocationRecord[] {
  const now = Date.now();
  return Array.from({ length: n }, (_, i) => ({
    id: `bench-${now}-${i}`, namespace: 'default', function: `fn-${i % 20}`, version: 1, executor: 'node-bench', containerId: `c-${i % 50}`,
    trigger: 'sync', attempt: 1, status: i % 50 === 0 ? 'error' : 'ok', errorCode: i % 50 === 0 ? 'FUNCTION_ERROR' : '', httpStatus: i % 50 === 0 ? 500 : 200,
    start: i % 100 === 0 ? 'cold' : 'warm', receivedAtMs: now + i, finishedAtMs: now + i + 3, queueUs: 40, initUs: 0, runUs: 2500, totalUs: 3100,
    requestBytes: 100, responseBytes: 250, traceId: '4bf92f3577b34da6a3ce929d0e0e4736',
  }));
}

function logLines(n: number): LogLine[] {
  const now = Date.now();
  return Array.from({ length: n }, (_, i) => ({
    invocationId: `bench-call-${Math.floor(i / LOG_LINES_PER_CALL)}`, function: `fn-${i % 20}`, containerId: `c-${i % 50}`, timeMs: now + Math.floor(i / 100),
    stream: i % 10 === 9 ? 'stderr' : 'stdout', line: `request ${i} handled in 2.5 ms: status=200 path=/api/items/${i % 997} user=${i % 313}`, truncated: false,
  }));
}

/** One point, in this (child) process: prints `result {json}`. */
async function childMain(backend: 'chdb' | 'server', kind: Kind, batchRows: number, rows: number): Promise<void> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'skiff-bench-ingest-'));
  const database = `skiff_bench_ingest_${process.pid}`;
  const options: StorageOptions = {
    backend, clickhouseUrl: CLICKHOUSE_URL, dataDir: path.join(dir, 'chdb'), database, spoolDir: path.join(dir, 'spool'), spoolMaxBytes: 4 * 1024 ** 3,
    maxBatchRows: batchRows, maxBatchBytes: 1024 ** 3, maxQueuedBatches: 4, flushIntervalMs: 1000,
  };
  const storage = await openStorage(options);
  const invocations = kind === 'invocations' ? invocationRecords(rows) : [];
  const lines = kind === 'logs' ? logLines(rows) : [];
  const table = kind === 'invocations' ? 'invocations' : 'logs';
  const hasRoom = (s: StorageStats) => s.tables[table].queuedBatches < options.maxQueuedBatches;
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  for (let at = 0; at < rows; at += batchRows) {
    while (!hasRoom(storage.stats())) await new Promise((resolve) => setTimeout(resolve, 1));
    if (kind === 'invocations') for (const rec of invocations.slice(at, at + batchRows)) storage.recordInvocation(rec);
    else storage.recordLogs(lines.slice(at, at + batchRows));
    await new Promise((resolve) => setImmediate(resolve));
  }
  await storage.drain();
  const seconds = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  const stats = storage.stats();
  const stored = await storage.query(`SELECT count() AS n FROM ${database}.${table}`);
  if (Number(stored[0]?.n) < rows) throw new Error(`only ${stored[0]?.n} of ${rows} rows are in ${table}`);
  if (backend === 'server') await fetch(CLICKHOUSE_URL, { method: 'POST', body: `DROP DATABASE IF EXISTS ${database}` });
  await storage.close();
  await rm(dir, { recursive: true, force: true });
  const point: IngestPoint = {
    backend, kind, batchRows, rows, seconds: Number(seconds.toFixed(3)), rowsPerSec: Math.round(rows / seconds),
    batchesSpooled: stats.batchesSpooled, droppedRows: stats.droppedRows, cpuPercent: Math.round(((cpu.user + cpu.system) / 1000 / (seconds * 1000)) * 100),
  };
  process.stdout.write(`result ${JSON.stringify(point)}\n`);
}

function runChild(backend: 'chdb' | 'server', kind: Kind, batchRows: number): Promise<IngestPoint> {
  return new Promise((resolve, reject) => {
    const child = fork(THIS_FILE, ['--child', backend, kind, String(batchRows), String(ROWS)], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'pipe', 'inherit', 'ipc'] });
    let result: IngestPoint | undefined;
    child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
      for (const line of chunk.split('\n')) if (line.startsWith('result ')) result = JSON.parse(line.slice('result '.length)) as IngestPoint;
    });
    child.once('exit', (code) => (result && code === 0 ? resolve(result) : reject(new Error(`ingest child ${backend}/${kind}/${batchRows} exited ${code}`))));
  });
}

// ---------------------------------------------------------------- part 2: logging on vs off

const LOGGING_FUNCTION = `// Bench fixture: prints LINES lines per call (0: nothing), then answers.
export default async function handler(request, context) {
  const lines = Number(process.env.LINES || 0);
  for (let i = 0; i < lines; i++) console.log(\`line \${i} of call \${context.callId}: some typical log text\`);
  return 'ok';
}
`;

interface LoggingRow {
  logging: 'off' | 'on';
  requestsPerSec: Spread;
  p50Us: Spread;
  p99Us: Spread;
  errors: number;
  /** CPU per 1000 calls (ms) of each part, summed over the runs: where logging's cost goes. */
  cpuMsPer1000Calls: Record<string, number>;
  runs: DurationResult[];
}

const CLOCK_TICKS_PER_S = 100;

/** CPU ms so far of every process, grouped: Skiff's gateway+storage, its executor, dockerd, containerd, the function containers. */
function cpuByPart(skiffPid: number, executorPid: number): Map<string, number> {
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
              : /bootstrap\.mjs/.test(cmdline) ? 'function containers'
                : undefined;
    if (part) parts.set(part, (parts.get(part) ?? 0) + ms);
  }
  return parts;
}

async function loggingOnOff(): Promise<{ rows: LoggingRow[]; logRowsStored: number; cpu: number[] }> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'skiff-bench-logfn-'));
  await writeFile(path.join(dir, 'index.mjs'), LOGGING_FUNCTION);
  const code = (await packFunctionDir(dir)).toString('base64');
  await rm(dir, { recursive: true, force: true });
  log('starting Skiff (gateway + embedded chDB, executor) for logging on/off...');
  const skiff = await startSkiff();
  const generator = new LoadGenerator();
  const client = new GatewayClient(skiff.url);
  try {
    const limits = { concurrency: CONNECTIONS, memoryMB: 256 };
    await client.json('PUT', '/system/functions/log-off', { code, handler: 'index.mjs', env: { LINES: '0' }, limits });
    await client.json('PUT', '/system/functions/log-on', { code, handler: 'index.mjs', env: { LINES: String(LOG_LINES_PER_CALL) }, limits });
    const runs: Record<'off' | 'on', DurationResult[]> = { off: [], on: [] };
    const cpuMs: Record<'off' | 'on', Map<string, number>> = { off: new Map(), on: new Map() };
    const skiffPid = skiff.process.pid ?? -1;
    const target = (name: string) => ({ url: `${skiff.url}/function/${name}`, method: 'POST' as const, headers: { 'content-type': 'text/plain' }, body: Buffer.from('hello') });
    for (const name of ['log-off', 'log-on']) await generator.run({ kind: 'duration', target: target(name), connections: CONNECTIONS, durationS: 1 }); // warm-up: containers up
    for (let run = 0; run < RUNS; run++) {
      for (const mode of run % 2 === 0 ? (['off', 'on'] as const) : (['on', 'off'] as const)) {
        const before = cpuByPart(skiffPid, skiff.executorPid);
        const result = await generator.run({ kind: 'duration', target: target(`log-${mode}`), connections: CONNECTIONS, durationS: DURATION_S });
        for (const [part, ms] of cpuByPart(skiffPid, skiff.executorPid)) cpuMs[mode].set(part, (cpuMs[mode].get(part) ?? 0) + ms - (before.get(part) ?? 0));
        runs[mode].push(result);
        log(`logging ${mode} run ${run + 1}: ${Math.round(result.requestsPerSec)} req/s, p99 ${result.latencyUs.p99} µs`);
      }
    }
    const rows: LoggingRow[] = (['off', 'on'] as const).map((mode) => ({
      logging: mode,
      requestsPerSec: spreadOf(runs[mode], (r) => Math.round(r.requestsPerSec)),
      p50Us: spreadOf(runs[mode], (r) => r.latencyUs.p50),
      p99Us: spreadOf(runs[mode], (r) => r.latencyUs.p99),
      errors: runs[mode].reduce((n, r) => n + r.errors + r.non2xx, 0),
      cpuMsPer1000Calls: Object.fromEntries(
        [...cpuMs[mode]].map(([part, ms]) => [part, Number(((ms * 1000) / Math.max(1, runs[mode].reduce((n, r) => n + r.requests, 0))).toFixed(1))]),
      ),
      runs: runs[mode],
    }));
    const stats = await client.json<{ storage: StorageStats }>('GET', '/system/stats');
    return { rows, logRowsStored: stats.storage.tables.logs.recordsWritten, cpu: [...runs.off, ...runs.on].map((r) => r.generator.cpuPercent) };
  } finally {
    await client.close();
    await generator.close();
    await skiff.stop();
  }
}

// ---------------------------------------------------------------- main

async function main(): Promise<void> {
  const loadBefore = os.loadavg().map((v) => v.toFixed(1)).join(' ');
  if (BACKENDS.includes('server')) execFileSync('bash', [path.join(ROOT, 'scripts/start-clickhouse.sh')], { stdio: 'inherit' });
  const points: IngestPoint[] = [];
  for (const backend of BACKENDS) {
    for (const kind of ['invocations', 'logs'] as const) {
      for (const batchRows of BATCHES) {
        const point = await runChild(backend, kind, batchRows);
        log(`${backend} ${kind} batch ${batchRows}: ${point.rowsPerSec} rows/s (${point.rows} rows in ${point.seconds} s, ${point.batchesSpooled} batches via the spool)`);
        points.push(point);
      }
    }
  }
  const logging = await loggingOnOff();
  const off = logging.rows.find((r) => r.logging === 'off')!;
  const on = logging.rows.find((r) => r.logging === 'on')!;
  const p99Ratio = Number((on.p99Us.median / off.p99Us.median).toFixed(3));
  const bestServerLogs = Math.max(0, ...points.filter((p) => p.backend === 'server' && p.kind === 'logs').map((p) => p.rowsPerSec));

  const headers = ['backend', 'table', 'batch rows', 'rows', 'seconds', 'rows/s', 'spooled batches', 'storage process CPU % (all threads)'];
  const tableRows = points.map((p) => [p.backend, p.kind, p.batchRows, p.rows, p.seconds, p.rowsPerSec, p.batchesSpooled, p.cpuPercent]);
  process.stdout.write(`\n${renderTable(headers, tableRows)}\n\n`);
  const parts = ['gateway+storage', 'executor', 'dockerd', 'containerd', 'function containers'];
  const loggingHeaders = ['logging', 'req/s', 'p50 µs', 'p99 µs', 'errors', ...parts.map((p) => `${p} CPU ms/1k calls`)];
  const loggingRows = logging.rows.map((r) => [r.logging, formatSpread(r.requestsPerSec), formatSpread(r.p50Us), formatSpread(r.p99Us), r.errors, ...parts.map((p) => r.cpuMsPer1000Calls[p] ?? 0)]);
  process.stdout.write(`${renderTable(loggingHeaders, loggingRows)}\n\n`);
  const added = parts.map((p) => `${p} +${((on.cpuMsPer1000Calls[p] ?? 0) - (off.cpuMsPer1000Calls[p] ?? 0)).toFixed(0)}`).join(', ');
  const costNote = `logging on (${LOG_LINES_PER_CALL} lines per call) adds CPU ms per 1000 calls: ${added}`;
  const verdicts = [
    `log rows into the server: best ${bestServerLogs} rows/s (goal ≥ ${GOAL_LOG_ROWS_PER_S}): ${bestServerLogs >= GOAL_LOG_ROWS_PER_S ? 'met' : 'NOT met'}`,
    `warm p99 logging on / off: ${p99Ratio} (goal ≤ ${GOAL_P99_RATIO}): ${p99Ratio <= GOAL_P99_RATIO ? 'met' : 'NOT met'}`,
  ];
  for (const v of [...verdicts, costNote]) process.stdout.write(`${v}\n`);

  const file = writeResult({
    scenario: 'ingest',
    settings: { rows: ROWS, batchRows: BATCHES, backends: BACKENDS, durationS: DURATION_S, runs: RUNS, connections: CONNECTIONS, logLinesPerCall: LOG_LINES_PER_CALL, clickhouseServer: CLICKHOUSE_URL },
    baseline: 'rows/s: none (absolute; goal ≥ 200k log rows/s into the server); logging on: the same function printing nothing',
    generator: generatorCpu(logging.cpu),
    notes: [
      ...verdicts,
      costNote,
      `load average (1/5/15 min) ${loadBefore} at start, ${os.loadavg().map((v) => v.toFixed(1)).join(' ')} at end on ${os.availableParallelism()} cores: figures taken on a busy machine are lower bounds`,
      'rows/s: whole write path (batcher, encoder worker, insert; spool when the queue is full), clock stopped by drain() once every row is in ClickHouse; records built before the clock starts; one child process per point',
      `logging on stored ${logging.logRowsStored} log rows; warm-invoke on embedded chDB (skiff up's default), ${CONNECTIONS} connections, ${RUNS} interleaved runs of ${DURATION_S} s`,
    ],
    table: { headers, rows: tableRows },
    rows: [
      ...points.map((p) => ({ part: 'ingest' as const, ...p })),
      ...logging.rows.map(({ runs: _runs, ...row }) => ({ part: 'warm-invoke' as const, ...row, p99OverLoggingOff: Number((row.p99Us.median / off.p99Us.median).toFixed(3)) })),
    ],
  });
  log(`wrote ${file}`);
}

if (process.argv[2] === '--child') {
  const [, , , backend, kind, batchRows, rows] = process.argv;
  childMain(backend as 'chdb' | 'server', kind as Kind, Number(batchRows), Number(rows)).then(
    () => process.exit(0),
    (err: unknown) => {
      process.stderr.write(`ingest child failed: ${(err as Error).stack ?? String(err)}\n`);
      process.exit(1);
    },
  );
} else {
  main().catch((err: unknown) => {
    process.stderr.write(`bench:ingest failed: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  });
}
