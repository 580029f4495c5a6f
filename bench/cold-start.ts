/**
 * Cold-start benchmark: for examples/echo, N starts each of
 *  - cold: a fresh function whose memory (256 MB) matches no stem cell → docker create + start;
 *  - stemcell: a fresh function of the stem cells' size (128 MB) → a ready stem cell specializes;
 *  - warm: calls to a function with a warm container;
 * through the full chain (gateway → bus → executor → container), Skiff in its own processes.
 * Per type: end-to-end latency p50/p99 (this process's clock) and the executor's init time
 * (initUs of the invocation record: create+start, or specialize), its queue time (a new
 * function's first call: the code bundle fetched and unpacked) and run time, and the
 * cold/stemcell ratio of init and of end-to-end p50s.
 * Every start is measured on a quiet node: a stemcell run waits until all BENCH_STEM_CELLS stem
 * cells are ready (the replacement of the previous one included), as a cold run has no container
 * starting beside it. The load average is recorded: other work on the machine shows in p99s.
 * Writes bench/results/cold-start.json with the machine and commit.
 * Knobs: BENCH_STARTS (30), BENCH_STEM_CELLS (2).
 */
import { promises as fsp, mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import Dockerode from 'dockerode';
import { GatewayClient } from '../cli/client.ts';
import { packFunctionDir } from '../cli/pack.ts';
import { spawnSkiff, type SpawnedSkiff } from '../cli/spawn.ts';
import { renderTable } from '../cli/table.ts';
import { describeCommit, describeMachine } from './machine.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const STARTS = Number(process.env.BENCH_STARTS ?? 30);
const STEM_CELLS = Number(process.env.BENCH_STEM_CELLS ?? 2);
const RESULT_FILE = path.join(ROOT, 'bench', 'results', 'cold-start.json');
/** Stem cells are started with executor.stemCellMemoryMb (128 by default); cold functions avoid it. */
const STEM_MEMORY_MB = 128;
const COLD_MEMORY_MB = 256;
/** Waits for a ready stem cell or a stored record poll this often, at most this long. */
const POLL_MS = 10;
const WAIT_MAX_MS = 30_000;

type StartKind = 'cold' | 'stemcell' | 'warm';
interface Sample {
  kind: StartKind;
  e2eUs: number;
  initUs: number;
  runUs: number;
  /** Executor time before the container was asked for (a new function's first call: its code bundle fetched and unpacked). */
  queueUs: number;
  recordedStart: string;
}

function log(line: string): void {
  process.stdout.write(`${line}\n`);
}

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted.length === 0 ? 0 : sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
}

async function until<T>(what: string, probe: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + WAIT_MAX_MS;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await delay(POLL_MS);
  }
}

/** True once `count` stem cells of the node have published their control socket (unlinked when used). */
async function stemCellsReady(docker: Dockerode, nodeId: string, count: number): Promise<true | undefined> {
  const list = await docker.listContainers({ filters: { label: [`skiff.node=${nodeId}`, 'skiff.stemcell=node20'] } });
  let ready = 0;
  for (const c of list) {
    const iofs = c.Mounts.find((m) => m.Destination === '/tmp/iofs');
    if (iofs && (await fsp.lstat(path.join(iofs.Source, 'stem.sock')).then(() => true, () => false))) ready++;
  }
  return ready >= count ? true : undefined;
}

interface StoredRecord {
  start?: string;
  initUs?: number;
  runUs?: number;
  queueUs?: number;
}

async function recordOf(client: GatewayClient, id: string): Promise<StoredRecord> {
  return until(`the record of ${id}`, async () => {
    const res = await client.call('GET', `/system/invocations/${id}`);
    if (res.status !== 200) return undefined;
    const parsed = JSON.parse(res.body.toString('utf8')) as StoredRecord & { invocation?: StoredRecord; record?: StoredRecord };
    const record = parsed.invocation ?? parsed.record ?? parsed;
    return record.start ? record : undefined;
  });
}

async function deploy(client: GatewayClient, name: string, code: string, memoryMB: number): Promise<void> {
  await client.json('PUT', `/system/functions/${name}`, { code, handler: 'index.js', limits: { memoryMB, timeoutMs: 30_000, concurrency: 1 } });
}

async function callOnce(client: GatewayClient, name: string, kind: StartKind): Promise<Sample> {
  const started = process.hrtime.bigint();
  const res = await client.call('POST', `/function/${name}`, 'cold-start bench', { 'content-type': 'text/plain' });
  const e2eUs = Number((process.hrtime.bigint() - started) / 1000n);
  if (res.status !== 200) throw new Error(`${name}: HTTP ${res.status} ${res.body.toString('utf8')}`);
  const id = String(res.headers['x-call-id'] ?? '');
  const record = id ? await recordOf(client, id) : {};
  return { kind, e2eUs, initUs: record.initUs ?? 0, runUs: record.runUs ?? 0, queueUs: record.queueUs ?? 0, recordedStart: record.start ?? 'unknown' };
}

async function measure(skiff: SpawnedSkiff, docker: Dockerode): Promise<Sample[]> {
  const client = new GatewayClient(skiff.url);
  const code = (await packFunctionDir(path.join(ROOT, 'examples', 'echo'))).toString('base64');
  const samples: Sample[] = [];
  try {
    for (let i = 0; i < STARTS; i++) {
      await deploy(client, `cold-${i}`, code, COLD_MEMORY_MB);
      samples.push(await callOnce(client, `cold-${i}`, 'cold'));
      await client.call('DELETE', `/system/functions/cold-${i}`);
    }
    for (let i = 0; i < STARTS; i++) {
      await deploy(client, `stem-${i}`, code, STEM_MEMORY_MB);
      await until('the stem cells to be ready', () => stemCellsReady(docker, skiff.nodeId, STEM_CELLS));
      samples.push(await callOnce(client, `stem-${i}`, 'stemcell'));
      await client.call('DELETE', `/system/functions/stem-${i}`);
    }
    await deploy(client, 'warm', code, COLD_MEMORY_MB);
    await callOnce(client, 'warm', 'cold');
    for (let i = 0; i < STARTS; i++) samples.push(await callOnce(client, 'warm', 'warm'));
  } finally {
    await client.close();
  }
  return samples;
}

async function main(): Promise<void> {
  log(`cold-start: ${STARTS} starts each of cold, stemcell and warm (examples/echo), ${STEM_CELLS} stem cells`);
  const loadBefore = os.loadavg();
  // A fixed number of stem cells (no reactive growth) keeps every run on a quiet node.
  const skiff = await spawnSkiff({ examples: false, env: { SKIFF_STEM_CELLS: String(STEM_CELLS), SKIFF_MAX_STEM_CELLS: String(STEM_CELLS) } });
  const docker = new Dockerode();
  let samples: Sample[];
  try {
    samples = await measure(skiff, docker);
  } finally {
    await skiff.stop();
  }
  const kinds: StartKind[] = ['cold', 'stemcell', 'warm'];
  const rows = kinds.map((kind) => {
    const of = samples.filter((s) => s.kind === kind);
    const e2e = of.map((s) => s.e2eUs);
    const init = of.map((s) => s.initUs);
    const run = of.map((s) => s.runUs);
    const queue = of.map((s) => s.queueUs);
    return {
      kind,
      n: of.length,
      recordedAs: [...new Set(of.map((s) => s.recordedStart))],
      e2eUs: { p50: percentile(e2e, 50), p99: percentile(e2e, 99) },
      initUs: { p50: percentile(init, 50), p99: percentile(init, 99) },
      runUs: { p50: percentile(run, 50), p99: percentile(run, 99) },
      queueUs: { p50: percentile(queue, 50), p99: percentile(queue, 99) },
    };
  });
  const cold = rows[0];
  const stem = rows[1];
  const ratio = {
    initP50: Number((cold.initUs.p50 / Math.max(1, stem.initUs.p50)).toFixed(1)),
    e2eP50: Number((cold.e2eUs.p50 / Math.max(1, stem.e2eUs.p50)).toFixed(1)),
  };
  const ms = (us: number) => (us / 1000).toFixed(2);
  log('');
  log(renderTable(
    ['start', 'n', 'recorded as', 'e2e p50 ms', 'e2e p99 ms', 'init p50 ms', 'init p99 ms', 'queue p50 ms', 'run p50 ms'],
    rows.map((r) => [r.kind, r.n, r.recordedAs.join(','), ms(r.e2eUs.p50), ms(r.e2eUs.p99), ms(r.initUs.p50), ms(r.initUs.p99), ms(r.queueUs.p50), ms(r.runUs.p50)]),
  ));
  log(`\ncold/stemcell: init p50 ${ratio.initP50}x, end-to-end p50 ${ratio.e2eP50}x (load average ${loadBefore[0].toFixed(1)} before, ${os.loadavg()[0].toFixed(1)} after, ${os.cpus().length} cores)`);
  mkdirSync(path.dirname(RESULT_FILE), { recursive: true });
  writeFileSync(RESULT_FILE, `${JSON.stringify({
    scenario: 'cold-start',
    date: new Date().toISOString(),
    machine: describeMachine(),
    ...describeCommit(),
    settings: { starts: STARTS, stemCells: STEM_CELLS, function: 'examples/echo', coldMemoryMb: COLD_MEMORY_MB, stemMemoryMb: STEM_MEMORY_MB },
    loadAverage: { before: loadBefore.map((x) => Number(x.toFixed(2))), after: os.loadavg().map((x) => Number(x.toFixed(2))) },
    rows,
    ratioColdOverStemcell: ratio,
    samples,
  }, null, 2)}\n`);
  log(`cold-start: wrote ${path.relative(ROOT, RESULT_FILE)}`);
}

main().catch((err: unknown) => {
  process.stderr.write(`cold-start: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
