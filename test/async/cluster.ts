/**
 * A Skiff for async and chaos tests: the gateway and the executor as separate processes
 * (cli/spawn-parts.ts), so either can be SIGKILLed and restarted on the same port, bus endpoint,
 * data dir and node id.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import Dockerode from 'dockerode';
import { GatewayClient } from '../../cli/client.ts';
import { deployDir } from '../../cli/deploy.ts';
import { spawnExecutor, spawnGateway, type GatewayProcess, type SkiffProcess } from '../../cli/spawn-parts.ts';
import { removeNodeContainers } from '../../cli/spawn.ts';
import { ensureRuntimeImage } from '../../executor/index.ts';
import { call, CLICKHOUSE_TEST_URL, eventually, json } from '../e2e/harness.ts';

export const ASYNC_FUNCTIONS = path.join(path.dirname(fileURLToPath(import.meta.url)), 'functions');

export interface ClusterOptions {
  backend: 'chdb' | 'server';
  /** Environment for the gateway (SKIFF_ASYNC_*, SKIFF_HEARTBEAT_*). */
  gatewayEnv?: Record<string, string>;
  executorEnv?: Record<string, string>;
}

export interface Cluster {
  readonly url: string;
  readonly database: string;
  readonly clickhouseUrl: string | undefined;
  gateway: GatewayProcess;
  executor: SkiffProcess | undefined;
  /** Starts an executor (same node id every time) and waits until the gateway has it. */
  startExecutor(): Promise<void>;
  killExecutor(): Promise<void>;
  killGateway(): Promise<void>;
  /** Starts the gateway again on the same port, bus endpoint and data dir. */
  restartGateway(): Promise<void>;
  deploy(name: string, fixture: string): Promise<void>;
  stop(): Promise<void>;
}

let runtimeImage: Promise<string> | undefined;

/**
 * A free loopback port below the kernel's ephemeral range, for a listener that must come back on
 * the same port: clients retrying a closed ephemeral port can be handed that very port as their
 * own (a TCP self-connect), which then keeps the listener from binding it again.
 */
export async function freeFixedPort(): Promise<number> {
  let low = 32768;
  try {
    low = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]) || low;
  } catch {
    // Not Linux: keep the usual bound.
  }
  const floor = Math.max(1024, low - 12_000);
  for (let tries = 0; tries < 50; tries++) {
    const port = floor + Math.floor(Math.random() * (low - floor));
    const free = await new Promise<boolean>((resolve) => {
      const server = createServer();
      server.once('error', () => resolve(false));
      server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
    });
    if (free) return port;
  }
  throw new Error('no free port below the ephemeral range');
}

/** Starts a gateway and an executor. */
export async function startCluster(options: ClusterOptions): Promise<Cluster> {
  runtimeImage ??= ensureRuntimeImage(new Dockerode());
  const image = await runtimeImage;
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'skiff-async-'));
  const suffix = randomBytes(4).toString('hex');
  const database = `skiff_${suffix}`;
  const nodeId = `node-${suffix}`;
  const clickhouseUrl = options.backend === 'server' ? CLICKHOUSE_TEST_URL : undefined;
  const gatewayEnv = { SKIFF_CLICKHOUSE_DATABASE: database, ...options.gatewayEnv };
  // Ports outside the ephemeral range: clients hammering a dead gateway's port must not be
  // handed that very port as their own (a TCP self-connect would keep it from being reused).
  let gateway = await spawnGateway({ dataDir, clickhouseUrl, env: gatewayEnv, port: await freeFixedPort(), bus: `tcp://127.0.0.1:${await freeFixedPort()}` });
  const port = gateway.port;
  const bus = gateway.bus;
  const cluster: Cluster = {
    url: gateway.url,
    database,
    clickhouseUrl,
    gateway,
    executor: undefined,
    async startExecutor() {
      cluster.executor = spawnExecutor({ bus, nodeId, runtimeImage: image, dataDir, env: options.executorEnv });
      const spawned = cluster.executor;
      await eventually(async () => {
        if (spawned.process.exitCode !== null) throw new Error(`the executor exited: ${spawned.output.join('\n')}`);
        const ready = await call(`${cluster.url}/readyz`).catch(() => undefined);
        return ready && json<{ executors: number }>(ready).executors >= 1 ? true : undefined;
      }, 60_000, 'the executor to connect');
    },
    async killExecutor() {
      await cluster.executor?.kill();
      cluster.executor = undefined;
    },
    async killGateway() {
      await cluster.gateway.kill();
    },
    async restartGateway() {
      gateway = await spawnGateway({ dataDir, clickhouseUrl, env: gatewayEnv, port, bus });
      cluster.gateway = gateway;
    },
    async deploy(name, fixture) {
      const client = new GatewayClient(cluster.url);
      try {
        await deployDir(client, path.join(ASYNC_FUNCTIONS, fixture), name);
      } finally {
        await client.close();
      }
    },
    async stop() {
      await cluster.executor?.stop();
      await cluster.gateway.stop();
      // An executor killed last (and not restarted) left its containers.
      await removeNodeContainers(nodeId);
    },
  };
  await cluster.startExecutor();
  return cluster;
}

/** Polls GET /system/invocations/:id until `done` accepts the body. */
export function asyncStatus(base: string, id: string): Promise<AsyncView> {
  return call(`${base}/system/invocations/${id}`).then((reply) => {
    if (reply.status !== 200) throw new Error(`GET /system/invocations/${id}: ${reply.status} ${reply.body.toString()}`);
    return json<AsyncView>(reply);
  });
}

export interface AsyncView {
  id: string;
  function: string;
  trigger: string;
  status: string;
  attempts: number;
  errorCode: string;
  result: { status: number; body: string; bodyEncoding: string; bodyBytes: number; truncated: boolean } | null;
  callback: { state: string; attempts: number; lastStatus: number } | null;
  history: Array<{ attempt: number; outcome: string; httpStatus: number }>;
  logs: Array<{ line: string }>;
}
