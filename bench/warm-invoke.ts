/**
 * Warm-invoke benchmark: the full chain (`POST /function/bench-echo`: gateway, bus, executor,
 * container) beside two baselines that hit the same warm container: direct over its unix socket
 * (the Fn http-stream request the executor sends) and a plain node:http reverse proxy in front of
 * it (bench/simple-proxy.ts, the gateway a user could write). Every point is run BENCH_RUNS
 * times, interleaving the targets; figures are medians with min and max. Skiff, the proxy and the
 * load generator each run in their own processes.
 * Knobs: BENCH_DURATION_S (2; ×1.5 for payloads of 1 MiB and more, whose calls take up to
 * seconds at 256 connections), BENCH_RUNS (3), BENCH_CONNECTIONS (1,16,64,256),
 * BENCH_PAYLOAD_BYTES (100,10240,1048576).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { createInterface } from 'node:readline';
import Dockerode from 'dockerode';
import { renderTable } from '../cli/table.ts';
import { LoadGenerator, type DurationResult, type LoadTarget } from './load.ts';
import { generatorCpu, writeResult } from './results.ts';
import { containerOfCall, deployEcho, GatewayClient, logger, ROOT, startSkiff } from './skiff.ts';
import { formatSpread, ratio, spreadOf, type Spread } from './stats.ts';
import { knobInt, knobList } from './knobs.ts';

const DURATION_S = knobInt('BENCH_DURATION_S', 2);
const RUNS = knobInt('BENCH_RUNS', 3);
const CONNECTIONS = knobList('BENCH_CONNECTIONS', [1, 16, 64, 256]);
const PAYLOADS = knobList('BENCH_PAYLOAD_BYTES', [100, 10 * 1024, 1024 * 1024]);
const FUNCTION_NAME = 'bench-echo';
const LARGE_PAYLOAD_BYTES = 1024 * 1024;
const LARGE_PAYLOAD_DURATION_FACTOR = 1.5;
/**
 * The echo container holds every in-flight body twice (request and response): 256 connections
 * × 1 MiB need about 600 MB, so the function gets room for that rather than being OOM-killed.
 */
const FUNCTION_MEMORY_MB = 1024;
/** One container serves every connection, so all three targets hit the same process. */
const FUNCTION_CONCURRENCY = Math.max(...CONNECTIONS);
const TARGETS = ['direct', 'proxy', 'full'] as const;
type TargetName = (typeof TARGETS)[number];
const log = logger('warm-invoke');

/** One target at one point, over its runs. */
export interface TargetSummary {
  requestsPerSec: Spread;
  p50Us: Spread;
  p90Us: Spread;
  p99Us: Spread;
  p999Us: Spread;
  errors: number;
  non2xx: number;
  runs: DurationResult[];
}

export interface WarmInvokeRow {
  payloadBytes: number;
  connections: number;
  targets: Record<TargetName, TargetSummary>;
  /** full ÷ baseline, of median throughput and of median p50 latency. */
  ratios: { rpsFullOverDirect: number; rpsFullOverProxy: number; p50FullOverDirect: number; p50FullOverProxy: number };
  /** Latency the full chain adds over the direct call (median p50 and p99, µs). */
  addedUs: { p50: number; p99: number };
  /** The warm container was gone after this point (crashed or OOM-killed): its figures are suspect. */
  containerReplaced: boolean;
}

function durationFor(payloadBytes: number): number {
  return payloadBytes >= LARGE_PAYLOAD_BYTES ? DURATION_S * LARGE_PAYLOAD_DURATION_FACTOR : DURATION_S;
}

function summarize(runs: DurationResult[]): TargetSummary {
  // A run with no successful response has no latency: it counts for throughput (0), not latency.
  const answered = runs.filter((r) => r.requests > r.non2xx && r.latencyUs.p50 > 0);
  return {
    requestsPerSec: spreadOf(runs, (r) => Math.round(r.requestsPerSec)),
    p50Us: spreadOf(answered, (r) => r.latencyUs.p50),
    p90Us: spreadOf(answered, (r) => r.latencyUs.p90),
    p99Us: spreadOf(answered, (r) => r.latencyUs.p99),
    p999Us: spreadOf(answered, (r) => r.latencyUs.p999),
    errors: runs.reduce((n, r) => n + r.errors, 0),
    non2xx: runs.reduce((n, r) => n + r.non2xx, 0),
    runs,
  };
}

/** Starts bench/simple-proxy.ts in front of the container; resolves with its port. */
async function startProxy(socketPath: string): Promise<{ port: number; child: ChildProcess }> {
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(ROOT, 'bench', 'simple-proxy.ts'), socketPath], { stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise<number>((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`simple-proxy exited (${code}) before listening`)));
    createInterface({ input: child.stdout! }).on('line', (line) => {
      if (line.startsWith('listening ')) resolve(Number(line.slice('listening '.length)));
    });
  });
  return { port, child };
}

function payloadLabel(bytes: number): string {
  if (bytes >= 1024 * 1024 && bytes % (1024 * 1024) === 0) return `${bytes / (1024 * 1024)} MiB`;
  if (bytes >= 1024 && bytes % 1024 === 0) return `${bytes / 1024} KiB`;
  return `${bytes} B`;
}

async function main(): Promise<void> {
  const seconds = PAYLOADS.reduce((sum, p) => sum + CONNECTIONS.length * TARGETS.length * RUNS * durationFor(p), 0);
  log(`${RUNS} runs × ${DURATION_S} s per point and target (×1.5 from 1 MiB); connections ${CONNECTIONS.join('/')}; payloads ${PAYLOADS.map(payloadLabel).join(', ')}; about ${Math.ceil(seconds / 60)} min`);
  log('starting Skiff (gateway + executor processes, embedded chDB)...');
  const skiff = await startSkiff();
  const docker = new Dockerode();
  const generator = new LoadGenerator();
  let proxy: ChildProcess | undefined;
  try {
    const client = new GatewayClient(skiff.url);
    await deployEcho(client, FUNCTION_NAME, { concurrency: FUNCTION_CONCURRENCY, memoryMB: FUNCTION_MEMORY_MB });
    const probe = randomBytes(100);
    const warmup = await client.call('POST', `/function/${FUNCTION_NAME}`, probe, { 'content-type': 'application/octet-stream' });
    if (warmup.status !== 200 || !warmup.body.equals(probe)) throw new Error(`warm-up call failed: ${warmup.status} ${warmup.body.toString()}`);
    const container = await containerOfCall(docker, client, warmup.headers['x-call-id'] ?? '');
    await client.close();
    log(`warm container ${container.id.slice(0, 12)} at ${container.socketPath}`);
    const started = await startProxy(container.socketPath);
    proxy = started.child;

    const rows: WarmInvokeRow[] = [];
    const cpu: number[] = [];
    const notes: string[] = [];
    for (const payloadBytes of PAYLOADS) {
      const body = randomBytes(payloadBytes);
      const common = { method: 'POST' as const, body };
      const targets: Record<TargetName, LoadTarget> = {
        full: { ...common, url: `${skiff.url}/function/${FUNCTION_NAME}`, headers: { 'content-type': 'application/octet-stream' } },
        proxy: { ...common, url: `http://127.0.0.1:${started.port}/function/${FUNCTION_NAME}`, headers: { 'content-type': 'application/octet-stream' } },
        // The same request the executor sends: the Fn http-stream contract.
        direct: {
          ...common,
          url: 'http://localhost/call',
          socketPath: container.socketPath,
          headers: {
            'content-type': 'application/octet-stream',
            'fn-call-id': 'bench',
            'fn-deadline': new Date(Date.now() + 3_600_000).toISOString(),
            'fn-http-method': 'POST',
            'fn-http-request-url': `/function/${FUNCTION_NAME}`,
            'fn-http-h-content-type': 'application/octet-stream',
          },
        },
      };
      for (const connections of CONNECTIONS) {
        const runs: Record<TargetName, DurationResult[]> = { direct: [], proxy: [], full: [] };
        for (let run = 1; run <= RUNS; run++) {
          for (const name of TARGETS) {
            const result = await generator.run({ kind: 'duration', target: targets[name], connections, durationS: durationFor(payloadBytes) });
            runs[name].push(result);
            cpu.push(result.generator.cpuPercent);
          }
        }
        const summary = { direct: summarize(runs.direct), proxy: summarize(runs.proxy), full: summarize(runs.full) };
        for (const name of TARGETS) {
          const messages = [...new Set(runs[name].flatMap((r) => r.errorMessages))];
          if (messages.length > 0) notes.push(`${payloadLabel(payloadBytes)} × ${connections}, ${name}: errors were ${messages.map((m) => JSON.stringify(m)).join(', ')}`);
        }
        const live = await docker.getContainer(container.id).inspect().then((i) => i.State.Running, () => false);
        if (!live) {
          notes.push(`The warm container was gone after ${payloadLabel(payloadBytes)} × ${connections} connections (crashed or OOM-killed); direct and proxy figures from then on are not comparable. Stopped there.`);
          log(`NOTE: ${notes[notes.length - 1]}`);
        }
        const row: WarmInvokeRow = {
          payloadBytes,
          connections,
          targets: summary,
          ratios: {
            rpsFullOverDirect: ratio(summary.full.requestsPerSec, summary.direct.requestsPerSec),
            rpsFullOverProxy: ratio(summary.full.requestsPerSec, summary.proxy.requestsPerSec),
            p50FullOverDirect: ratio(summary.full.p50Us, summary.direct.p50Us),
            p50FullOverProxy: ratio(summary.full.p50Us, summary.proxy.p50Us),
          },
          addedUs: { p50: summary.full.p50Us.median - summary.direct.p50Us.median, p99: summary.full.p99Us.median - summary.direct.p99Us.median },
          containerReplaced: !live,
        };
        rows.push(row);
        log(`${payloadLabel(payloadBytes)} × ${connections}: full ${summary.full.requestsPerSec.median} req/s, direct ${summary.direct.requestsPerSec.median}, proxy ${summary.proxy.requestsPerSec.median}`);
        if (!live) break;
      }
      if (rows.some((r) => r.containerReplaced)) break;
    }

    const headers = ['payload', 'conns', 'target', 'req/s', 'p50 ms', 'p99 ms', 'errors', 'rps full/x', 'p50 full/x'];
    const tableRows = rows.flatMap((r) =>
      TARGETS.map((name) => {
        const t = r.targets[name];
        const show = (x: number) => (Number.isNaN(x) ? 'n/a' : String(x));
        const rpsRatio = name === 'direct' ? show(r.ratios.rpsFullOverDirect) : name === 'proxy' ? show(r.ratios.rpsFullOverProxy) : '';
        const p50Ratio = name === 'direct' ? show(r.ratios.p50FullOverDirect) : name === 'proxy' ? show(r.ratios.p50FullOverProxy) : '';
        return [payloadLabel(r.payloadBytes), r.connections, name, formatSpread(t.requestsPerSec), formatSpread(t.p50Us, 3, 1000), formatSpread(t.p99Us, 3, 1000), t.errors + t.non2xx, String(rpsRatio), String(p50Ratio)];
      }),
    );
    log('');
    process.stdout.write(`${renderTable(headers, tableRows)}\n`);
    const gen = generatorCpu(cpu);
    log(`load generator CPU: max ${gen.maxCpuPercent}% of one core, mean ${gen.meanCpuPercent}% (its own process)`);
    for (const note of notes) log(`NOTE: ${note}`);
    const file = writeResult<WarmInvokeRow>({
      scenario: 'warm-invoke',
      settings: { durationS: DURATION_S, largePayloadDurationS: durationFor(LARGE_PAYLOAD_BYTES), runs: RUNS, functionMemoryMb: FUNCTION_MEMORY_MB, connections: CONNECTIONS, payloadBytes: PAYLOADS, functionConcurrency: FUNCTION_CONCURRENCY, loadGenerator: 'autocannon 8 in its own process; latency from per-response times, µs HDR histogram' },
      baseline: 'direct: the same warm container over its unix socket; proxy: a plain node:http reverse proxy in front of it. Ratios are full ÷ baseline (req/s: lower is worse; p50: higher is worse). Cells are median (min–max) of the runs.',
      generator: gen,
      notes,
      table: { headers, rows: tableRows },
      rows,
    });
    log(`wrote ${path.relative(ROOT, file)}`);
  } finally {
    proxy?.kill('SIGTERM');
    await generator.close();
    await skiff.stop();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`warm-invoke: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
