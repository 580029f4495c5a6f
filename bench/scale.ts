/**
 * Scale-out on one machine: throughput and p99 of warm echo calls with 1, 2 and 3 executor
 * processes behind 1 and 2 gateways, each on its own network-namespace host, one ClickHouse
 * server. Every gateway gets its own load generator process. On a 2-core machine the processes
 * share the same two cores, so this measures the cost of the cluster machinery, not the capacity
 * more machines would add. Needs root (ip netns) and the ClickHouse server (scripts/start-clickhouse.sh).
 * Knobs: BENCH_DURATION_S (3), BENCH_RUNS (3), BENCH_CONNECTIONS (32 per gateway).
 */
import { GatewayClient } from '../cli/client.ts';
import { renderTable } from '../cli/table.ts';
import { startCluster } from '../test/cluster/netns.ts';
import { knobInt } from './knobs.ts';
import { LoadGenerator, type DurationResult } from './load.ts';
import { generatorCpu, writeResult } from './results.ts';
import { deployEcho, logger } from './skiff.ts';
import { formatSpread, spreadOf, type Spread } from './stats.ts';

const DURATION_S = knobInt('BENCH_DURATION_S', 3);
const RUNS = knobInt('BENCH_RUNS', 3);
const CONNECTIONS = knobInt('BENCH_CONNECTIONS', 32);
const CLICKHOUSE_URL = process.env.SKIFF_TEST_CLICKHOUSE_URL ?? 'http://127.0.0.1:8123';
const SHAPES: ReadonlyArray<{ gateways: number; executors: number }> = [
  { gateways: 1, executors: 1 },
  { gateways: 1, executors: 2 },
  { gateways: 1, executors: 3 },
  { gateways: 2, executors: 1 },
  { gateways: 2, executors: 2 },
  { gateways: 2, executors: 3 },
];
const FUNCTION_NAME = 'scale-echo';
const log = logger('scale');

interface ScaleRow {
  gateways: number;
  executors: number;
  requestsPerSec: Spread;
  /** The worst gateway's p99 in each run. */
  p99Us: Spread;
  errors: number;
}

async function measure(gateways: number, executors: number, cpu: number[]): Promise<ScaleRow> {
  log(`${gateways} gateway(s), ${executors} executor(s): building hosts...`);
  const cluster = await startCluster({ hosts: Math.max(gateways, executors), gateways, executors, clickhouseUrl: CLICKHOUSE_URL });
  const generators = cluster.hosts.filter((h) => h.url !== '').map(() => new LoadGenerator());
  try {
    const entries = cluster.hosts.filter((h) => h.url !== '');
    const client = new GatewayClient(entries[0].url);
    await deployEcho(client, FUNCTION_NAME, { concurrency: CONNECTIONS * gateways });
    await client.close();
    const body = Buffer.alloc(100, 7);
    // Warm every executor through every gateway before measuring.
    for (const entry of entries) {
      const warm = new GatewayClient(entry.url);
      await Promise.all(Array.from({ length: executors * 4 }, () => warm.call('POST', `/function/${FUNCTION_NAME}`, body)));
      await warm.close();
    }
    const runs: Array<{ rps: number; p99: number; errors: number }> = [];
    for (let run = 1; run <= RUNS; run++) {
      log(`${gateways}×${executors}: run ${run}/${RUNS}`);
      const results: DurationResult[] = await Promise.all(
        entries.map((entry, i) =>
          generators[i].run({
            kind: 'duration',
            target: { url: `${entry.url}/function/${FUNCTION_NAME}`, method: 'POST', headers: { 'content-type': 'application/octet-stream' }, body },
            connections: CONNECTIONS,
            durationS: DURATION_S,
          }),
        ),
      );
      for (const r of results) cpu.push(r.generator.cpuPercent);
      runs.push({
        rps: results.reduce((sum, r) => sum + r.requestsPerSec, 0),
        p99: Math.max(...results.map((r) => r.latencyUs.p99)),
        errors: results.reduce((sum, r) => sum + r.errors + r.non2xx, 0),
      });
    }
    return { gateways, executors, requestsPerSec: spreadOf(runs, (r) => r.rps), p99Us: spreadOf(runs, (r) => r.p99), errors: runs.reduce((s, r) => s + r.errors, 0) };
  } finally {
    await Promise.all(generators.map((g) => g.close()));
    await cluster.stop();
  }
}

async function main(): Promise<void> {
  log(`${RUNS} runs × ${DURATION_S} s per shape, ${CONNECTIONS} connections per gateway`);
  const cpu: number[] = [];
  const rows: ScaleRow[] = [];
  for (const shape of SHAPES) rows.push(await measure(shape.gateways, shape.executors, cpu));
  const table = {
    headers: ['gateways', 'executors', 'req/s', 'p99 ms', 'errors'],
    rows: rows.map((r) => [r.gateways, r.executors, formatSpread(r.requestsPerSec), formatSpread(r.p99Us, 2, 1000), r.errors]),
  };
  process.stdout.write(`\n${renderTable(table.headers, table.rows)}\n`);
  const file = writeResult({
    scenario: 'scale',
    settings: { durationS: DURATION_S, runs: RUNS, connectionsPerGateway: CONNECTIONS, shapes: SHAPES },
    baseline: '1 gateway × 1 executor on the same machine',
    generator: generatorCpu(cpu),
    notes: [
      'Every host is a network namespace on one 2-core machine: gateways, executors, containers, ClickHouse and the load generators share the same two cores, so added processes compete for CPU instead of adding capacity.',
      'Figures are the median (min–max) of the runs; p99 is the worst gateway of each run.',
    ],
    table,
    rows,
  });
  log(`wrote ${file}`);
}

main().catch((err: unknown) => {
  process.stderr.write(`scale: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
