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
 * 2. Warm-invoke p99 with logging on vs off, saturated and at a fixed rate: bench/logging-overhead.ts
 *    (its knobs: BENCH_DURATION_S, BENCH_RUNS, BENCH_CONNECTIONS, BENCH_FIXED_RATE_PERCENTS).
 *
 * Knobs: BENCH_INGEST_ROWS (500000), BENCH_INGEST_BATCHES (1000,10000,100000),
 * BENCH_INGEST_BACKENDS (chdb,server), BENCH_CLICKHOUSE_URL (http://127.0.0.1:8123).
 * Writes bench/results/ingest.json.
 */
import { execFileSync, fork } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { renderTable } from '../cli/table.ts';
import { openStorage, type InvocationRecord, type StorageOptions, type StorageStats } from '../storage/index.ts';
import { LOG_ROW_COLUMNS, LogRowEncoder } from '../bus/index.ts';
import { knobInt, knobList } from './knobs.ts';
import { generatorCpu, writeResult } from './results.ts';
import { logger, ROOT } from './skiff.ts';
import { describeLogging, LOGGING_SETTINGS, loggingOnOff, loggingResultRows } from './logging-overhead.ts';

const ROWS = knobInt('BENCH_INGEST_ROWS', 500_000);
const BATCHES = knobList('BENCH_INGEST_BATCHES', [1_000, 10_000, 100_000]);
const BACKENDS = (process.env.BENCH_INGEST_BACKENDS ?? 'chdb,server').split(',').map((s) => s.trim()) as Array<'chdb' | 'server'>;
const CLICKHOUSE_URL = process.env.BENCH_CLICKHOUSE_URL ?? 'http://127.0.0.1:8123';
const LOG_LINES_PER_CALL = 10;
/** Rows per LOGS body: what an executor's telemetry batch holds at most (executor/telemetry.ts MAX_BATCH_LINES). */
const LOGS_BODY_ROWS = 500;
const GOAL_LOG_ROWS_PER_S = 200_000;
const THIS_FILE = fileURLToPath(import.meta.url);
/** /proc/<pid>/stat counts CPU in clock ticks (USER_HZ, 100 on Linux). */
const CLOCK_TICKS_PER_S = 100;
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
  /** CPU of the ClickHouse server (scripts/start-clickhouse.sh's, on this machine) meanwhile, as a share of one core; null for chDB. */
  clickhouseCpuPercent: number | null;
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

/** Log lines as executors send them: LOGS bodies of LOGS_BODY_ROWS rows each (bus/log-rows.ts). */
function logBodies(n: number): Buffer[] {
  const now = Date.now();
  const encoder = new LogRowEncoder(`bench${process.pid}`);
  const bodies: Buffer[] = [];
  for (let at = 0; at < n; at += LOGS_BODY_ROWS) {
    const rows: string[] = [];
    for (let i = at; i < Math.min(n, at + LOGS_BODY_ROWS); i++) {
      rows.push(encoder.encode({
        invocationId: `bench-call-${Math.floor(i / LOG_LINES_PER_CALL)}`, function: `fn-${i % 20}`, containerId: `c-${i % 50}`, timeMs: now + Math.floor(i / 100),
        stream: i % 10 === 9 ? 'stderr' : 'stdout', line: `request ${i} handled in 2.5 ms: status=200 path=/api/items/${i % 997} user=${i % 313}`, truncated: false,
      }));
    }
    bodies.push(Buffer.from(rows.join('')));
  }
  return bodies;
}

/** CPU ms so far of the local ClickHouse server that scripts/start-clickhouse.sh runs (undefined if none): the other half of an insert's cost. */
function clickhouseServerCpuMs(): number | undefined {
  for (const pid of readdirSync('/proc').filter((name) => /^\d+$/.test(name))) {
    try {
      if (!readFileSync(`/proc/${pid}/cmdline`, 'utf8').startsWith('clickhouse-server\0--config-file=/etc/clickhouse-server/config.xml')) continue;
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      return ((Number(fields[11]) + Number(fields[12])) * 1000) / CLOCK_TICKS_PER_S;
    } catch {
      // exited meanwhile
    }
  }
  return undefined;
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
  const bodies = kind === 'logs' ? logBodies(rows) : [];
  const table = kind === 'invocations' ? 'invocations' : 'logs';
  const hasRoom = (s: StorageStats) => s.tables[table].queuedBatches < options.maxQueuedBatches;
  const clickhouseCpu0 = backend === 'server' ? clickhouseServerCpuMs() : undefined;
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  for (let at = 0; at < rows; at += batchRows) {
    while (!hasRoom(storage.stats())) await new Promise((resolve) => setTimeout(resolve, 1));
    if (kind === 'invocations') for (const rec of invocations.slice(at, at + batchRows)) storage.recordInvocation(rec);
    else for (const body of bodies.slice(at / LOGS_BODY_ROWS, (at + batchRows) / LOGS_BODY_ROWS)) storage.recordLogRows(LOG_ROW_COLUMNS, body);
    await new Promise((resolve) => setImmediate(resolve));
  }
  await storage.drain();
  const seconds = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  const clickhouseCpu1 = clickhouseCpu0 === undefined ? undefined : clickhouseServerCpuMs();
  const stats = storage.stats();
  const stored = await storage.query(`SELECT count() AS n FROM ${database}.${table}`);
  if (Number(stored[0]?.n) < rows) throw new Error(`only ${stored[0]?.n} of ${rows} rows are in ${table}`);
  if (backend === 'server') await fetch(CLICKHOUSE_URL, { method: 'POST', body: `DROP DATABASE IF EXISTS ${database}` });
  await storage.close();
  await rm(dir, { recursive: true, force: true });
  const point: IngestPoint = {
    backend, kind, batchRows, rows, seconds: Number(seconds.toFixed(3)), rowsPerSec: Math.round(rows / seconds),
    batchesSpooled: stats.batchesSpooled, droppedRows: stats.droppedRows, cpuPercent: Math.round(((cpu.user + cpu.system) / 1000 / (seconds * 1000)) * 100),
    clickhouseCpuPercent: clickhouseCpu0 === undefined || clickhouseCpu1 === undefined ? null : Math.round(((clickhouseCpu1 - clickhouseCpu0) / (seconds * 1000)) * 100),
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
// In bench/logging-overhead.ts (`npm run bench:logging` runs it alone).

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
  const bestServerLogs = Math.max(0, ...points.filter((p) => p.backend === 'server' && p.kind === 'logs').map((p) => p.rowsPerSec));

  const headers = ['backend', 'table', 'batch rows', 'rows', 'seconds', 'rows/s', 'spooled batches', 'storage process CPU % (all threads)', 'ClickHouse server CPU %'];
  const tableRows = points.map((p) => [p.backend, p.kind, p.batchRows, p.rows, p.seconds, p.rowsPerSec, p.batchesSpooled, p.cpuPercent, p.clickhouseCpuPercent ?? '']);
  process.stdout.write(`\n${renderTable(headers, tableRows)}\n\n`);
  const loggingTable = describeLogging(logging);
  process.stdout.write(`${renderTable(loggingTable.headers, loggingTable.rows)}\n\n`);
  // What each log row costs in CPU (storage process + ClickHouse server): on a busy machine the
  // rate measures the share of the cores this run got, the CPU per row what storage needs.
  const cpuPerRow = points
    .filter((p) => p.backend === 'server' && p.kind === 'logs' && p.clickhouseCpuPercent !== null)
    .map((p) => {
      const storageUs = (p.cpuPercent / 100) * p.seconds * 1e6 / p.rows;
      const clickhouseUs = ((p.clickhouseCpuPercent ?? 0) / 100) * p.seconds * 1e6 / p.rows;
      return `batch ${p.batchRows}: ${storageUs.toFixed(1)} µs storage + ${clickhouseUs.toFixed(1)} µs ClickHouse`;
    });
  const cpuNote = `CPU per log row into the server (all threads, both processes): ${cpuPerRow.join('; ')}`;
  const verdicts = [`log rows into the server: best ${bestServerLogs} rows/s (goal ≥ ${GOAL_LOG_ROWS_PER_S}): ${bestServerLogs >= GOAL_LOG_ROWS_PER_S ? 'met' : 'NOT met'}`, ...loggingTable.notes];
  for (const v of [...verdicts, cpuNote]) process.stdout.write(`${v}\n`);

  const file = writeResult({
    scenario: 'ingest',
    settings: { rows: ROWS, batchRows: BATCHES, backends: BACKENDS, ...LOGGING_SETTINGS, clickhouseServer: CLICKHOUSE_URL },
    baseline: 'rows/s: none (absolute; goal ≥ 200k log rows/s into the server); logging on: the same function printing nothing',
    generator: generatorCpu(logging.cpu),
    notes: [
      ...verdicts,
      cpuNote,
      `load average (1/5/15 min) ${loadBefore} at start, ${os.loadavg().map((v) => v.toFixed(1)).join(' ')} at end on ${os.availableParallelism()} cores: figures taken on a busy machine are lower bounds`,
      'rows/s: whole write path (batcher, encoder worker, insert; spool when the queue is full), clock stopped by drain() once every row is in ClickHouse; records (invocations) and LOGS bodies as executors send them (logs) built before the clock starts; one child process per point',
    ],
    table: { headers, rows: tableRows },
    rows: [
      ...points.map((p) => ({ part: 'ingest' as const, ...p })),
      ...loggingResultRows(logging, { saturated: 'warm-invoke saturated', fixedRate: 'warm-invoke fixed rate' }),
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
