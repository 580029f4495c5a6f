/**
 * Runs `skiff gateway` and `skiff executor` as separate child processes, so chaos tests and
 * benchmarks can kill (SIGKILL) and restart either one on its own. A restarted gateway reuses the
 * same port, bus endpoint and data dir (chDB or the ClickHouse database, and the async journal).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { removeNodeContainers } from './spawn.ts';

const CLI_ENTRY = path.join(path.dirname(fileURLToPath(import.meta.url)), 'bin.ts');
const DEFAULT_READY_TIMEOUT_MS = 120_000;

/** One child process with its output kept for failure messages. */
export interface SkiffProcess {
  readonly process: ChildProcess;
  readonly pid: number;
  readonly output: string[];
  /** Resolves when the process has exited. */
  readonly exited: Promise<void>;
  /** SIGTERM (graceful) and wait. */
  stop(): Promise<void>;
  /** SIGKILL and wait: nothing runs on the way out. */
  kill(): Promise<void>;
}

export interface GatewayProcess extends SkiffProcess {
  readonly url: string;
  readonly bus: string;
  readonly port: number;
}

export interface GatewaySpawnOptions {
  dataDir: string;
  /** 0 (default) picks a free port; give the first run's port to restart on it. */
  port?: number;
  /** Default tcp://127.0.0.1:* (a free port). */
  bus?: string;
  clickhouseUrl?: string;
  env?: Record<string, string>;
  readyTimeoutMs?: number;
}

export interface ExecutorSpawnOptions {
  /** The gateway's bus endpoint. */
  bus: string;
  /** Keep it across restarts: a restarted executor removes its predecessor's containers by it. */
  nodeId: string;
  runtimeImage: string;
  dataDir: string;
  env?: Record<string, string>;
}

function track(child: ChildProcess, output: string[]): SkiffProcess {
  const exited = new Promise<void>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve();
    else child.once('exit', () => resolve());
  });
  const alive = () => child.exitCode === null && child.signalCode === null;
  if (child.stderr) createInterface({ input: child.stderr }).on('line', (line) => output.push(line));
  return {
    process: child,
    pid: child.pid ?? 0,
    output,
    exited,
    async stop() {
      if (alive()) child.kill('SIGTERM');
      await exited;
    },
    async kill() {
      if (alive()) child.kill('SIGKILL');
      await exited;
    },
  };
}

/** Starts `skiff gateway --ready-json` and resolves once it listens. */
export async function spawnGateway(options: GatewaySpawnOptions): Promise<GatewayProcess> {
  const args = ['--import', 'tsx', CLI_ENTRY, 'gateway', '--port', String(options.port ?? 0), '--bus', options.bus ?? 'tcp://127.0.0.1:*', '--data-dir', options.dataDir, '--ready-json'];
  if (options.clickhouseUrl) args.push('--clickhouse-url', options.clickhouseUrl);
  const child = spawn(process.execPath, args, { env: { ...process.env, SKIFF_LOG_LEVEL: 'warn', ...options.env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const output: string[] = [];
  const tracked = track(child, output);
  const timeoutMs = options.readyTimeoutMs ?? DEFAULT_READY_TIMEOUT_MS;
  const ready = await new Promise<{ url: string; bus: string }>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`skiff gateway was not ready in ${timeoutMs} ms:\n${output.join('\n')}`));
    }, timeoutMs);
    createInterface({ input: child.stdout! }).on('line', (line) => {
      output.push(line);
      if (!line.startsWith('ready ')) return;
      clearTimeout(timer);
      resolve(JSON.parse(line.slice('ready '.length)) as { url: string; bus: string });
    });
    void tracked.exited.then(() => {
      clearTimeout(timer);
      reject(new Error(`skiff gateway exited (${child.signalCode ?? child.exitCode}) before it was ready:\n${output.join('\n')}`));
    });
  });
  return { ...tracked, url: ready.url, bus: ready.bus, port: Number(new URL(ready.url).port) };
}

/** Starts `skiff executor` connected to `options.bus`; the gateway reports it once it says HELLO. */
export function spawnExecutor(options: ExecutorSpawnOptions): SkiffProcess {
  const child = spawn(process.execPath, ['--import', 'tsx', CLI_ENTRY, 'executor'], {
    env: {
      ...process.env,
      SKIFF_LOG_LEVEL: 'warn',
      SKIFF_GATEWAYS: options.bus,
      SKIFF_NODE_ID: options.nodeId,
      SKIFF_RUNTIME_IMAGE: options.runtimeImage,
      SKIFF_DATA_DIR: options.dataDir,
      ...options.env,
    },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const tracked = track(child, []);
  // A killed executor leaves its containers: stopping it also sweeps its node's label.
  return { ...tracked, stop: async () => { await tracked.stop(); await removeNodeContainers(options.nodeId); } };
}
