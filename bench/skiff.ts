/**
 * What every Skiff benchmark does around its measurement: start Skiff in its own processes,
 * deploy functions, find a function's warm container, read back invocation records (to count
 * cold starts), and sample the live containers (to integrate memory held over time, GB·s).
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import Dockerode from 'dockerode';
import { GatewayClient } from '../cli/client.ts';
import { packFunctionDir } from '../cli/pack.ts';
import { spawnSkiff, type SpawnedSkiff, type SpawnOptions } from '../cli/spawn.ts';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
/** The gateway's page size limit for GET /system/invocations. */
const INVOCATION_PAGE_MAX = 1000;
/** How long records may take to reach storage after the last response (batched writes). */
const RECORDS_SETTLE_MS = 20_000;

/** Prints one progress line for the scenario. */
export function logger(scenario: string): (line: string) => void {
  return (line) => process.stdout.write(`${scenario}: ${line}\n`);
}

/** Starts `skiff up` (gateway + embedded chDB in one process, executor in another), no examples. */
export function startSkiff(env: Record<string, string> = {}, options: SpawnOptions = {}): Promise<SpawnedSkiff> {
  return spawnSkiff({ examples: false, ...options, env });
}

let echoBundle: string | undefined;

/** examples/echo as a base64 bundle, packed once. */
export async function echoCode(): Promise<string> {
  echoBundle ??= (await packFunctionDir(path.join(ROOT, 'examples', 'echo'))).toString('base64');
  return echoBundle;
}

export interface EchoLimits {
  memoryMB?: number;
  timeoutMs?: number;
  concurrency?: number;
}

/** Deploys examples/echo under `name`. */
export async function deployEcho(client: GatewayClient, name: string, limits: EchoLimits = {}): Promise<void> {
  await client.json('PUT', `/system/functions/${name}`, { code: await echoCode(), limits });
}

/** Median phase durations of the calls of one start kind (a cold-start breakdown), µs. */
export interface StartPhases {
  calls: number;
  queueUs: number;
  initUs: number;
  runUs: number;
  totalUs: number;
}

export interface InvocationSummary {
  records: number;
  cold: number;
  warm: number;
  /** Any other start kind (e.g. stemcell), by name. */
  other: Record<string, number>;
  byStatus: Record<string, number>;
  /** Start kind → median queue/init/run/total time of its calls. */
  phases: Record<string, StartPhases>;
}

interface RecordLike {
  start: string;
  status: string;
  queueUs: number;
  initUs: number;
  runUs: number;
  totalUs: number;
}

function median(values: number[]): number {
  if (values.length === 0) return 0;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

function phasesOf(records: readonly RecordLike[]): Record<string, StartPhases> {
  const byStart = new Map<string, RecordLike[]>();
  for (const r of records) byStart.set(r.start || 'none', [...(byStart.get(r.start || 'none') ?? []), r]);
  const out: Record<string, StartPhases> = {};
  for (const [start, list] of byStart) {
    out[start] = { calls: list.length, queueUs: median(list.map((r) => Number(r.queueUs))), initUs: median(list.map((r) => Number(r.initUs))), runUs: median(list.map((r) => Number(r.runUs))), totalUs: median(list.map((r) => Number(r.totalUs))) };
  }
  return out;
}

/**
 * Counts start kinds of `fn`'s records, waiting until storage holds at least `expected` of them
 * (records are written in batches after the responses) or the settle time is over.
 */
export async function summarizeInvocations(client: GatewayClient, fn: string, expected: number): Promise<InvocationSummary> {
  const deadline = Date.now() + RECORDS_SETTLE_MS;
  let records: RecordLike[] = [];
  for (;;) {
    records = await client.json<RecordLike[]>('GET', `/system/invocations?function=${encodeURIComponent(fn)}&limit=${INVOCATION_PAGE_MAX}`);
    if (records.length >= Math.min(expected, INVOCATION_PAGE_MAX) || Date.now() > deadline) break;
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  const summary: InvocationSummary = { records: records.length, cold: 0, warm: 0, other: {}, byStatus: {}, phases: phasesOf(records) };
  for (const r of records) {
    if (r.start === 'cold') summary.cold++;
    else if (r.start === 'warm') summary.warm++;
    else summary.other[r.start || 'none'] = (summary.other[r.start || 'none'] ?? 0) + 1;
    summary.byStatus[r.status] = (summary.byStatus[r.status] ?? 0) + 1;
  }
  return summary;
}

/**
 * The container that served invocation `callId` (from its record, once storage has it) and its
 * unix socket, from its /tmp/iofs bind mount. By record rather than by label: a specialized stem
 * cell keeps the labels it was created with.
 */
export async function containerOfCall(docker: Dockerode, client: GatewayClient, callId: string): Promise<{ id: string; socketPath: string }> {
  const deadline = Date.now() + RECORDS_SETTLE_MS;
  let containerId = '';
  while (containerId === '') {
    const res = await client.call('GET', `/system/invocations/${encodeURIComponent(callId)}`);
    if (res.status === 200) containerId = String((JSON.parse(res.body.toString('utf8')) as { containerId?: string }).containerId ?? '');
    if (containerId !== '') break;
    if (Date.now() > deadline) throw new Error(`no record of invocation ${callId} with a container after ${RECORDS_SETTLE_MS} ms`);
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  const info = await docker.getContainer(containerId).inspect();
  const mount = info.Mounts.find((m) => m.Destination === '/tmp/iofs');
  if (!mount) throw new Error(`container ${containerId.slice(0, 12)} has no /tmp/iofs mount`);
  return { id: info.Id, socketPath: path.join(mount.Source, 'lsnr.sock') };
}

export interface ContainerUsage {
  /** Memory limit × time alive, summed over containers, in GB·s (1 GB = 1024 MB). */
  gbSeconds: number;
  peakContainers: number;
  samples: number;
}

/**
 * Samples a node's running containers every `intervalMs` and integrates their memory limits over
 * time (what a provider bills as GB·s), until stopped.
 */
export function sampleContainers(docker: Dockerode, nodeId: string, intervalMs = 500): { stop(): Promise<ContainerUsage> } {
  let gbSeconds = 0;
  let peak = 0;
  let samples = 0;
  let last = performance.now();
  let stopped = false;
  const memoryById = new Map<string, number>();
  const loop = (async () => {
    while (!stopped) {
      const containers = await docker.listContainers({ filters: { label: [`skiff.node=${nodeId}`] } }).catch(() => []);
      let bytes = 0;
      for (const c of containers) {
        let memory = memoryById.get(c.Id);
        if (memory === undefined) {
          memory = await docker.getContainer(c.Id).inspect().then((i) => i.HostConfig.Memory ?? 0, () => 0);
          memoryById.set(c.Id, memory);
        }
        bytes += memory;
      }
      const now = performance.now();
      gbSeconds += (bytes / 2 ** 30) * ((now - last) / 1000);
      last = now;
      peak = Math.max(peak, containers.length);
      samples++;
      await new Promise((resolve) => setTimeout(resolve, intervalMs));
    }
  })();
  return {
    async stop() {
      stopped = true;
      await loop;
      return { gbSeconds: Number(gbSeconds.toFixed(2)), peakContainers: peak, samples };
    },
  };
}

/**
 * The environment variable (from config.ts ENV_OVERRIDES) whose option path matches `option`, or
 * undefined: features other work adds (a memory budget, a keep-alive policy) are used when present.
 */
export async function findEnvOverride(option: RegExp): Promise<string | undefined> {
  const config = await import('../config.ts');
  const overrides: Readonly<Record<string, readonly [string, string]>> = config.ENV_OVERRIDES;
  return Object.entries(overrides).find(([, [optionPath]]) => option.test(optionPath))?.[0];
}

export { GatewayClient, type SpawnedSkiff };
