/**
 * Burst benchmark: 0 → BENCH_BURST_CALLS (500) concurrent calls to a function with no warm
 * container. Measures time to the first and the last response, the containers the cold burst
 * started (Docker create events of the node, and the distinct containers its records name) next to
 * the fewest that can serve it (ceil(calls in flight / concurrency), bounded by the executor's
 * executor.maxInFlight), cold starts taken (invocation records) and errors, which must be none or
 * 429s only. Baseline: the same burst
 * again right after, when the containers the first one started are warm. Each run deploys a
 * fresh function (so nothing is warm) and deletes it after.
 * Knobs: BENCH_BURST_CALLS (500), BENCH_RUNS (3), BENCH_BURST_CONCURRENCY (the function's
 * limits.concurrency, 10: 500 calls need at least 50 containers), BENCH_BURST_TIMEOUT_S (60),
 * BENCH_PAYLOAD_BYTES (first value, 100).
 */
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import Dockerode from 'dockerode';
import { renderTable } from '../cli/table.ts';
import { knobInt, knobList } from './knobs.ts';
import { LoadGenerator, type BurstResult } from './load.ts';
import { generatorCpu, writeResult } from './results.ts';
import { deployEcho, GatewayClient, logger, ROOT, startSkiff, summarizeInvocations, type InvocationSummary } from './skiff.ts';
import { formatSpread, spreadOf, type Spread } from './stats.ts';

const CALLS = knobInt('BENCH_BURST_CALLS', 500);
const RUNS = knobInt('BENCH_RUNS', 3);
const CONCURRENCY = knobInt('BENCH_BURST_CONCURRENCY', 10);
const TIMEOUT_MS = knobInt('BENCH_BURST_TIMEOUT_S', 60) * 1000;
const PAYLOAD_BYTES = knobList('BENCH_PAYLOAD_BYTES', [100])[0];
/** executor.maxInFlight's default: the calls one executor takes at once (the rest wait at the gateway). */
const EXECUTOR_MAX_IN_FLIGHT = 64;
/** Records fetched per page (the gateway's limit). */
const RECORDS_PAGE = 1000;
const log = logger('burst');

/** Containers the node created while a burst ran, by what they were created as. */
interface Creations {
  functionContainers: number;
  stemCells: number;
}

/** Counts the node's Docker `create` events until `stop()` (from the engine's event stream). */
async function watchCreations(docker: Dockerode, nodeId: string): Promise<{ stop(): Promise<Creations> }> {
  const counts: Creations = { functionContainers: 0, stemCells: 0 };
  const since = Math.floor(Date.now() / 1000) - 1;
  const stream = (await docker.getEvents({ since, filters: { type: ['container'], event: ['create'], label: [`skiff.node=${nodeId}`] } })) as NodeJS.ReadableStream & { destroy(): void };
  let pending = '';
  stream.on('data', (chunk: Buffer) => {
    pending += chunk.toString('utf8');
    for (let nl = pending.indexOf('\n'); nl !== -1; nl = pending.indexOf('\n')) {
      const line = pending.slice(0, nl);
      pending = pending.slice(nl + 1);
      if (line.trim() === '') continue;
      const event = JSON.parse(line) as { Actor?: { Attributes?: Record<string, string> } };
      if (event.Actor?.Attributes?.['skiff.stemcell']) counts.stemCells++;
      else counts.functionContainers++;
    }
  });
  return {
    async stop() {
      // Events are delivered asynchronously: give the stream a moment to catch up with the engine.
      await new Promise((resolve) => setTimeout(resolve, 500));
      stream.destroy();
      return { ...counts };
    },
  };
}

/** Distinct containers named by `fn`'s records that did not start warm (they were started for it). */
async function startedContainers(client: GatewayClient, fn: string): Promise<number> {
  const records = await client.json<Array<{ start: string; containerId: string }>>('GET', `/system/invocations?function=${encodeURIComponent(fn)}&limit=${RECORDS_PAGE}`);
  return new Set(records.filter((r) => r.start !== 'warm' && r.containerId !== '').map((r) => r.containerId)).size;
}

interface BurstRun {
  cold: BurstResult;
  /** Docker creates during the cold burst, and distinct containers its records name as started. */
  creations: Creations;
  startedContainers: number;
  coldInvocations: InvocationSummary;
  warm: BurstResult;
  /** Records of the cold burst and the warm one together. */
  allInvocations: InvocationSummary;
}

export interface BurstRow {
  phase: 'cold burst' | 'warm burst (baseline)';
  firstResponseMs: Spread;
  lastResponseMs: Spread;
  p50Us: Spread;
  p99Us: Spread;
  coldStarts: Spread;
  /** Containers the node created during the burst (function containers + stem cells) and how many served it after starting for it. */
  containers?: { functionContainersCreated: Spread; stemCellsCreated: Spread; startedForTheBurst: Spread; fewestNeeded: number };
  ok: number;
  rejected429: number;
  otherErrors: number;
  /** True when every failure was a 429. */
  onlyOkOr429: boolean;
  /** Cold-start breakdown: per start kind, medians over the runs of its median queue/init/run µs. */
  phases: Record<string, { calls: number; queueUs: Spread; initUs: Spread; runUs: Spread; totalUs: Spread }>;
}

function counts(result: BurstResult): { ok: number; r429: number; other: number } {
  let ok = 0;
  let r429 = 0;
  let other = result.errors;
  for (const [status, n] of Object.entries(result.statuses)) {
    if (status.startsWith('2')) ok += n;
    else if (status === '429') r429 += n;
    else other += n;
  }
  return { ok, r429, other };
}

function phases(summaries: InvocationSummary[]): BurstRow['phases'] {
  const kinds = [...new Set(summaries.flatMap((s) => Object.keys(s.phases)))];
  return Object.fromEntries(
    kinds.map((kind) => {
      const present = summaries.map((s) => s.phases[kind]).filter((p) => p !== undefined);
      return [kind, { calls: present.reduce((n, p) => n + p.calls, 0), queueUs: spreadOf(present, (p) => p.queueUs), initUs: spreadOf(present, (p) => p.initUs), runUs: spreadOf(present, (p) => p.runUs), totalUs: spreadOf(present, (p) => p.totalUs) }];
    }),
  );
}

function row(phase: BurstRow['phase'], results: BurstResult[], coldStarts: number[], summaries: InvocationSummary[], containers?: BurstRow['containers']): BurstRow {
  const c = results.map(counts);
  const otherErrors = c.reduce((n, x) => n + x.other, 0);
  return {
    phase,
    firstResponseMs: spreadOf(results, (r) => r.firstResponseMs),
    lastResponseMs: spreadOf(results, (r) => r.lastResponseMs),
    p50Us: spreadOf(results, (r) => r.latencyUs.p50),
    p99Us: spreadOf(results, (r) => r.latencyUs.p99),
    coldStarts: spreadOf(coldStarts, (n) => n),
    containers,
    ok: c.reduce((n, x) => n + x.ok, 0),
    rejected429: c.reduce((n, x) => n + x.r429, 0),
    otherErrors,
    onlyOkOr429: otherErrors === 0,
    phases: phases(summaries),
  };
}

async function main(): Promise<void> {
  log(`${RUNS} runs of ${CALLS} concurrent calls (function concurrency ${CONCURRENCY}, payload ${PAYLOAD_BYTES} B)`);
  const skiff = await startSkiff();
  const docker = new Dockerode();
  const generator = new LoadGenerator();
  const client = new GatewayClient(skiff.url);
  try {
    const body = randomBytes(PAYLOAD_BYTES);
    const runs: BurstRun[] = [];
    for (let run = 1; run <= RUNS; run++) {
      const name = `bench-burst-${run}`;
      await deployEcho(client, name, { concurrency: CONCURRENCY });
      const target = { url: `${skiff.url}/function/${name}`, method: 'POST' as const, headers: { 'content-type': 'application/octet-stream' }, body };
      const watch = await watchCreations(docker, skiff.nodeId);
      const cold = await generator.run({ kind: 'burst', target, count: CALLS, timeoutMs: TIMEOUT_MS });
      const creations = await watch.stop();
      const coldInvocations = await summarizeInvocations(client, name, CALLS);
      const started = await startedContainers(client, name);
      const warm = await generator.run({ kind: 'burst', target, count: CALLS, timeoutMs: TIMEOUT_MS });
      const allInvocations = await summarizeInvocations(client, name, 2 * CALLS);
      runs.push({ cold, creations, startedContainers: started, coldInvocations, warm, allInvocations });
      log(`run ${run}: cold burst first ${cold.firstResponseMs} ms, last ${cold.lastResponseMs} ms, ${creations.functionContainers} function containers and ${creations.stemCells} stem cells created, ${started} containers started for it; ${coldInvocations.cold} cold and ${coldInvocations.other.stemcell ?? 0} stemcell calls, statuses ${JSON.stringify(cold.statuses)}${cold.errors ? `, ${cold.errors} network errors (${cold.errorMessages[0]})` : ''}; warm burst last ${warm.lastResponseMs} ms`);
      await client.call('DELETE', `/system/functions/${name}`);
    }
    const fewestNeeded = Math.ceil(Math.min(CALLS, EXECUTOR_MAX_IN_FLIGHT) / CONCURRENCY);
    const containers = {
      functionContainersCreated: spreadOf(runs, (r) => r.creations.functionContainers),
      stemCellsCreated: spreadOf(runs, (r) => r.creations.stemCells),
      startedForTheBurst: spreadOf(runs, (r) => r.startedContainers),
      fewestNeeded,
    };
    const rows = [
      row('cold burst', runs.map((r) => r.cold), runs.map((r) => r.coldInvocations.cold + (r.coldInvocations.other.stemcell ?? 0)), runs.map((r) => r.coldInvocations), containers),
      // Starts of the warm burst are not counted apart (it reuses what the first started); its
      // breakdown is of both bursts' records.
      row('warm burst (baseline)', runs.map((r) => r.warm), [], runs.map((r) => r.allInvocations)),
    ];
    const headers = ['phase', 'first ms', 'last ms', 'p50 ms', 'p99 ms', 'containers started', 'cold+stemcell calls', 'ok', '429', 'other errors', 'verdict'];
    const tableRows = rows.map((r) => [
      r.phase,
      formatSpread(r.firstResponseMs, 1),
      formatSpread(r.lastResponseMs, 1),
      formatSpread(r.p50Us, 1, 1000),
      formatSpread(r.p99Us, 1, 1000),
      r.containers ? `${formatSpread(r.containers.startedForTheBurst)} (fewest ${r.containers.fewestNeeded})` : '',
      Number.isNaN(r.coldStarts.median) ? '' : formatSpread(r.coldStarts),
      r.ok,
      r.rejected429,
      r.otherErrors,
      r.onlyOkOr429 ? 'ok (2xx/429 only)' : 'FAIL: errors other than 429',
    ]);
    log('');
    process.stdout.write(`${renderTable(headers, tableRows)}\n`);
    const breakdown = rows[1].phases;
    log('');
    log('start breakdown (all calls of both bursts; median of the runs\' medians, ms):');
    process.stdout.write(`${renderTable(['start', 'calls', 'queue ms', 'init ms', 'run ms', 'total ms'], Object.entries(breakdown).map(([kind, p]) => [kind, p.calls, formatSpread(p.queueUs, 1, 1000), formatSpread(p.initUs, 1, 1000), formatSpread(p.runUs, 1, 1000), formatSpread(p.totalUs, 1, 1000)]))}\n`);
    const gen = generatorCpu(runs.flatMap((r) => [r.cold.generator.cpuPercent, r.warm.generator.cpuPercent]));
    const file = writeResult<BurstRow>({
      scenario: 'burst',
      settings: { calls: CALLS, runs: RUNS, functionConcurrency: CONCURRENCY, timeoutMs: TIMEOUT_MS, payloadBytes: PAYLOAD_BYTES },
      baseline: 'the same burst right after, on the containers the cold burst left warm. Cells are median (min–max) of the runs; ok/429/errors are totals over all runs. "containers started": distinct containers that served the cold burst after starting (cold or stem cell) for it, next to the fewest that can serve it (ceil(min(calls, executor.maxInFlight) / concurrency)); rows[0].containers also has the Docker creates (function containers, stem cells) during the burst.',
      generator: gen,
      notes: [],
      table: { headers, rows: tableRows },
      rows: rows.map((r) => ({ ...r })),
    });
    log(`wrote ${path.relative(ROOT, file)}`);
    if (rows.some((r) => !r.onlyOkOr429)) process.exitCode = 1;
  } finally {
    await client.close();
    await generator.close();
    await skiff.stop();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`burst: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
