/**
 * Warm-invoke benchmark: the full chain (`POST /function/bench-echo` through gateway, bus and
 * executor) side by side with the same warm container called directly over its unix socket, at
 * several connection counts, in one run. Skiff runs in its own processes; this process only
 * drives load. Knobs: BENCH_DURATION_S (default 10), BENCH_CONNECTIONS (default 1,16,64),
 * BENCH_PAYLOAD_BYTES (default 100).
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import Dockerode from 'dockerode';
import { GatewayClient } from '../cli/client.ts';
import { packFunctionDir } from '../cli/pack.ts';
import { spawnSkiff } from '../cli/spawn.ts';
import { renderTable } from '../cli/table.ts';
import { runLoad, type LoadResult, type LoadTarget } from './load.ts';
import { describeCommit, describeMachine } from './machine.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const DURATION_S = Number(process.env.BENCH_DURATION_S ?? 10);
const CONNECTIONS = (process.env.BENCH_CONNECTIONS ?? '1,16,64').split(',').map(Number);
const PAYLOAD_BYTES = Number(process.env.BENCH_PAYLOAD_BYTES ?? 100);
const FUNCTION_NAME = 'bench-echo';
/** One container serves every connection, so both targets hit the same process. */
const FUNCTION_CONCURRENCY = Math.max(...CONNECTIONS);
const RESULT_FILE = path.join(ROOT, 'bench', 'results', 'warm-invoke.json');

function log(line: string): void {
  process.stdout.write(`${line}\n`);
}

/** The unix socket of the function's warm container, from its /tmp/iofs bind mount. */
async function warmContainerSocket(docker: Dockerode, nodeId: string): Promise<{ id: string; socketPath: string }> {
  const containers = await docker.listContainers({ filters: { label: [`skiff.function=${FUNCTION_NAME}`, `skiff.node=${nodeId}`] } });
  if (containers.length !== 1) throw new Error(`expected one warm ${FUNCTION_NAME} container, found ${containers.length}`);
  const info = await docker.getContainer(containers[0].Id).inspect();
  const mount = info.Mounts.find((m) => m.Destination === '/tmp/iofs');
  if (!mount) throw new Error('the warm container has no /tmp/iofs mount');
  return { id: containers[0].Id, socketPath: path.join(mount.Source, 'lsnr.sock') };
}

interface Row {
  connections: number;
  full: LoadResult;
  direct: LoadResult;
  throughputRatio: number;
  addedP50Us: number;
  addedP99Us: number;
}

async function main(): Promise<void> {
  log(`warm-invoke: ${DURATION_S} s per run, connections ${CONNECTIONS.join('/')}, payload ${PAYLOAD_BYTES} B`);
  log('warm-invoke: starting Skiff (gateway + executor processes, embedded chDB)...');
  const skiff = await spawnSkiff({ examples: false });
  const docker = new Dockerode();
  try {
    const client = new GatewayClient(skiff.url);
    const code = (await packFunctionDir(path.join(ROOT, 'examples', 'echo'))).toString('base64');
    await client.json('PUT', `/system/functions/${FUNCTION_NAME}`, { code, limits: { concurrency: FUNCTION_CONCURRENCY } });
    const payload = randomBytes(PAYLOAD_BYTES);
    const warmup = await client.call('POST', `/function/${FUNCTION_NAME}`, payload, { 'content-type': 'application/octet-stream' });
    if (warmup.status !== 200 || !warmup.body.equals(payload)) throw new Error(`warm-up call failed: ${warmup.status}`);
    await client.close();
    const container = await warmContainerSocket(docker, skiff.nodeId);
    log(`warm-invoke: warm container ${container.id.slice(0, 12)} at ${container.socketPath}`);

    const full: LoadTarget = {
      url: `${skiff.url}/function/${FUNCTION_NAME}`,
      method: 'POST',
      headers: { 'content-type': 'application/octet-stream' },
      body: payload,
    };
    // The same request as the executor sends it: the Fn http-stream contract.
    const direct: LoadTarget = {
      url: 'http://localhost/call',
      socketPath: container.socketPath,
      method: 'POST',
      headers: {
        'content-type': 'application/octet-stream',
        'fn-call-id': 'bench',
        'fn-deadline': new Date(Date.now() + 3_600_000).toISOString(),
        'fn-http-method': 'POST',
        'fn-http-request-url': `/function/${FUNCTION_NAME}`,
        'fn-http-h-content-type': 'application/octet-stream',
      },
      body: payload,
    };

    const rows: Row[] = [];
    for (const connections of CONNECTIONS) {
      log(`warm-invoke: ${connections} connection(s): direct...`);
      const directResult = await runLoad(direct, connections, DURATION_S);
      log(`warm-invoke: ${connections} connection(s): full chain...`);
      const fullResult = await runLoad(full, connections, DURATION_S);
      rows.push({
        connections,
        full: fullResult,
        direct: directResult,
        throughputRatio: Number((fullResult.requestsPerSec / directResult.requestsPerSec).toFixed(3)),
        addedP50Us: fullResult.latencyUs.p50 - directResult.latencyUs.p50,
        addedP99Us: fullResult.latencyUs.p99 - directResult.latencyUs.p99,
      });
    }

    const ms = (us: number) => (us / 1000).toFixed(3);
    log('');
    log(renderTable(
      ['conns', 'target', 'req/s', 'p50 ms', 'p99 ms', 'p99.9 ms', 'errors', 'full/direct', '+p50 ms', '+p99 ms'],
      rows.flatMap((r) => [
        [r.connections, 'direct', Math.round(r.direct.requestsPerSec), ms(r.direct.latencyUs.p50), ms(r.direct.latencyUs.p99), ms(r.direct.latencyUs.p999), r.direct.errors + r.direct.non2xx, '', '', ''],
        [r.connections, 'full chain', Math.round(r.full.requestsPerSec), ms(r.full.latencyUs.p50), ms(r.full.latencyUs.p99), ms(r.full.latencyUs.p999), r.full.errors + r.full.non2xx, r.throughputRatio.toFixed(3), ms(r.addedP50Us), ms(r.addedP99Us)],
      ]),
    ));
    mkdirSync(path.dirname(RESULT_FILE), { recursive: true });
    writeFileSync(RESULT_FILE, `${JSON.stringify({
      scenario: 'warm-invoke',
      date: new Date().toISOString(),
      machine: describeMachine(),
      ...describeCommit(),
      settings: { durationS: DURATION_S, connections: CONNECTIONS, payloadBytes: PAYLOAD_BYTES, functionConcurrency: FUNCTION_CONCURRENCY, loadGenerator: 'autocannon 8 (latency from per-response times, µs resolution)' },
      rows,
    }, null, 2)}\n`);
    log(`\nwarm-invoke: wrote ${path.relative(ROOT, RESULT_FILE)}`);
  } finally {
    await skiff.stop();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`warm-invoke: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
