/**
 * Runs `skiff up` as a child process on free ports with its own data dir and node id, and waits
 * for its ready line. Used by the end-to-end tests and the benchmarks, which must measure a
 * Skiff that runs in its own processes.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import Dockerode from 'dockerode';

const CLI_ENTRY = path.join(path.dirname(fileURLToPath(import.meta.url)), 'bin.ts');
const DEFAULT_READY_TIMEOUT_MS = 120_000;

export interface SpawnedSkiff {
  url: string;
  bus: string;
  executorPid: number;
  runtimeImage: string;
  nodeId: string;
  dataDir: string;
  process: ChildProcess;
  /** Everything the process printed, for failure messages. */
  output: string[];
  /** SIGTERM and wait (the executor removes its containers), then remove any its node left. */
  stop(): Promise<void>;
}

export interface SpawnOptions {
  /** A ClickHouse server URL; embedded chDB when absent. */
  clickhouseUrl?: string;
  tls?: boolean;
  examples?: boolean;
  env?: Record<string, string>;
  readyTimeoutMs?: number;
}

/** Removes every container an executor with `nodeId` made (for executors that were killed). */
export async function removeNodeContainers(nodeId: string): Promise<void> {
  const docker = new Dockerode();
  const leftovers = await docker.listContainers({ all: true, filters: { label: [`skiff.node=${nodeId}`] } }).catch(() => []);
  await Promise.all(leftovers.map((c) => docker.getContainer(c.Id).remove({ force: true }).catch(() => undefined)));
}

/** Starts `skiff up --ready-json`; a unique node id and ClickHouse database keep instances apart. */
export async function spawnSkiff(options: SpawnOptions = {}): Promise<SpawnedSkiff> {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'skiff-'));
  const suffix = randomBytes(4).toString('hex');
  const nodeId = `node-${suffix}`;
  const args = ['--import', 'tsx', CLI_ENTRY, 'up', '--port', '0', '--bus', 'tcp://127.0.0.1:*', '--data-dir', dataDir, '--ready-json'];
  if (options.tls) args.push('--tls');
  if (options.examples === false) args.push('--no-examples');
  if (options.clickhouseUrl) args.push('--clickhouse-url', options.clickhouseUrl);
  const child = spawn(process.execPath, args, {
    env: { ...process.env, SKIFF_NODE_ID: nodeId, SKIFF_CLICKHOUSE_DATABASE: `skiff_${suffix}`, SKIFF_LOG_LEVEL: 'warn', ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const output: string[] = [];
  createInterface({ input: child.stderr! }).on('line', (line) => output.push(line));
  const timeoutMs = options.readyTimeoutMs ?? DEFAULT_READY_TIMEOUT_MS;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const ready = await new Promise<{ url: string; bus: string; executorPid: number; runtimeImage: string }>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`skiff up was not ready in ${timeoutMs} ms:\n${output.join('\n')}`));
    }, timeoutMs);
    createInterface({ input: child.stdout! }).on('line', (line) => {
      output.push(line);
      if (!line.startsWith('ready ')) return;
      clearTimeout(timer);
      resolve(JSON.parse(line.slice('ready '.length)));
    });
    void exited.then(() => {
      clearTimeout(timer);
      reject(new Error(`skiff up exited (${child.signalCode ?? child.exitCode}) before it was ready:\n${output.join('\n')}`));
    });
  });
  return {
    ...ready,
    nodeId,
    dataDir,
    process: child,
    output,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await exited;
      // An executor that was killed (tests do that) left its containers behind: sweep its label.
      await removeNodeContainers(nodeId);
    },
  };
}
