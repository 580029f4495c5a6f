/**
 * Set-up shared by the executor tests that run real containers: a fake gateway, an executor on a
 * unique node id (so its containers are told apart by label) and cleanup of both.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Dockerode from 'dockerode';
import { pino } from 'pino';
import { loadConfig, type ConfigOverrides } from '../../config.ts';
import { CONTAINER_LABELS, ensureRuntimeImage, startExecutor, type Executor } from '../../executor/index.ts';
import { FakeGateway } from './fake-gateway.ts';

export const docker = new Dockerode();
const logger = pino({ level: 'silent' });

export function uniqueNodeId(): string {
  return `test-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
}

/** Ids of the containers (running or not) of one executor node. */
export async function containersOf(nodeId: string, extraLabels: Record<string, string> = {}): Promise<string[]> {
  const label = [`${CONTAINER_LABELS.managed}=true`, `${CONTAINER_LABELS.node}=${nodeId}`, ...Object.entries(extraLabels).map(([k, v]) => `${k}=${v}`)];
  const list = await docker.listContainers({ all: true, filters: { label } });
  return list.map((c) => c.Id);
}

export async function containerExists(id: string): Promise<boolean> {
  try {
    await docker.getContainer(id).inspect();
    return true;
  } catch {
    return false;
  }
}

export interface Harness {
  gateway: FakeGateway;
  executor: Executor;
  nodeId: string;
}

/** Starts fake gateways and executors; `close()` stops them all and removes their data dirs. */
export class ExecutorHarness {
  #runtimeImage = '';
  readonly #cleanups: Array<() => Promise<unknown> | unknown> = [];

  async runtimeImage(): Promise<string> {
    this.#runtimeImage ||= await ensureRuntimeImage(docker, {});
    return this.#runtimeImage;
  }

  async start(executor: ConfigOverrides['executor'] = {}): Promise<Harness> {
    const runtimeImage = await this.runtimeImage();
    const gateway = new FakeGateway();
    const endpoint = await gateway.bind();
    this.#cleanups.push(() => gateway.close());
    const dataDir = mkdtempSync(path.join(os.tmpdir(), 'skiff-exec-'));
    this.#cleanups.push(() => rmSync(dataDir, { recursive: true, force: true }));
    const nodeId = executor.nodeId ?? uniqueNodeId();
    const config = loadConfig({ dataDir, logLevel: 'silent', executor: { runtimeImage, idleTimeoutMs: 60_000, startTimeoutMs: 10_000, ...executor, nodeId, gatewayEndpoints: [endpoint] } }, {});
    const started = await startExecutor(config, { logger, docker });
    this.#cleanups.push(() => started.close());
    await gateway.peer();
    return { gateway, executor: started, nodeId };
  }

  async close(): Promise<void> {
    for (const cleanup of this.#cleanups.splice(0).reverse()) await cleanup();
  }
}
