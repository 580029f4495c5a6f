#!/usr/bin/env -S node --import tsx
/**
 * The `skiff` command line: run the platform (up, gateway, executor), manage functions (deploy,
 * ls, rm), call them (invoke) and read what happened (logs).
 */
import path from 'node:path';
import { Command, InvalidArgumentError } from 'commander';
import Dockerode from 'dockerode';
import { generateCurveKeyPair } from '../bus/index.ts';
import { ConfigError, loadConfig, redactConfig, type ConfigOverrides } from '../config.ts';
import { ensureRuntimeImage, startExecutor } from '../executor/index.ts';
import { startGateway } from '../gateway/index.ts';
import { createLogger } from '../logger.ts';
import { openStorage, storageOptionsFromConfig } from '../storage/index.ts';
import { GatewayClient } from './client.ts';
import { deployDir } from './deploy.ts';
import { renderStats, type StatsReply } from './stats.ts';
import { renderTable } from './table.ts';
import { up } from './up.ts';

/** In-flight calls drain for up to 30 s, then containers are removed: past this, exit anyway. */
const EXECUTOR_STOP_MAX_MS = 45_000;
const DEFAULT_URL = process.env.SKIFF_URL ?? 'http://127.0.0.1:8080';

function port(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new InvalidArgumentError('must be a port number 0..65535');
  return n;
}

function positive(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError('must be a positive integer');
  return n;
}

/** Stops on SIGINT/SIGTERM by running `stop` once, then exits. */
function onSignals(stop: () => Promise<void>): void {
  let stopping = false;
  const handler = (signal: NodeJS.Signals) => {
    if (stopping) return;
    stopping = true;
    process.stderr.write(`skiff: ${signal}, stopping...\n`);
    stop().then(
      () => process.exit(0),
      (err: unknown) => {
        process.stderr.write(`skiff: error while stopping: ${(err as Error).message}\n`);
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', handler);
  process.on('SIGTERM', handler);
}

function client(options: { url: string; insecure?: boolean }): GatewayClient {
  return new GatewayClient(options.url, options.insecure ?? false);
}

/** One JSON request to the gateway, on a client opened and closed for it. */
async function gatewayJson<T>(options: { url: string; insecure?: boolean }, method: string, requestPath: string): Promise<T> {
  const gateway = client(options);
  try {
    return await gateway.json<T>(method, requestPath);
  } finally {
    await gateway.close();
  }
}

const program = new Command('skiff').description('Skiff: low-latency functions on edge executor nodes').showHelpAfterError();

program
  .command('up')
  .description('start a gateway, one executor and embedded storage; deploy examples/')
  .option('--host <host>', 'gateway listen address')
  .option('--port <port>', 'gateway port (0 picks a free one)', port)
  .option('--bus <endpoint>', 'bus endpoint the gateway binds (tcp://127.0.0.1:* picks a free port)')
  .option('--data-dir <dir>', 'where Skiff keeps its data')
  .option('--clickhouse-url <url>', 'use this ClickHouse server instead of embedded chDB')
  .option('--tls', 'serve HTTPS with a self-signed certificate for localhost')
  .option('--no-examples', 'do not deploy examples/')
  .option('--ready-json', 'print one machine-readable ready line')
  .action(async (opts: { host?: string; port?: number; bus?: string; dataDir?: string; clickhouseUrl?: string; tls?: boolean; examples: boolean; readyJson?: boolean }) => {
    const overrides: ConfigOverrides = {
      dataDir: opts.dataDir === undefined ? undefined : path.resolve(opts.dataDir),
      gateway: { host: opts.host, port: opts.port },
      bus: { bindEndpoint: opts.bus },
      storage: { clickhouseUrl: opts.clickhouseUrl },
    };
    const running = await up({ overrides, tls: opts.tls ?? false, examples: opts.examples, readyJson: opts.readyJson ?? false });
    onSignals(running.stop);
  });

program
  .command('gateway')
  .description('start a gateway (with storage) only; executors connect to its bus endpoint')
  .option('--host <host>', 'gateway listen address')
  .option('--port <port>', 'gateway port (0 picks a free one)', port)
  .option('--bus <endpoint>', 'bus endpoint the gateway binds (tcp://127.0.0.1:* picks a free port)')
  .option('--data-dir <dir>', 'where the gateway keeps chDB and the async journal')
  .option('--clickhouse-url <url>', 'use this ClickHouse server instead of embedded chDB')
  .option('--ready-json', 'print one machine-readable ready line')
  .action(async (opts: { host?: string; port?: number; bus?: string; dataDir?: string; clickhouseUrl?: string; readyJson?: boolean }) => {
    const config = loadConfig({
      dataDir: opts.dataDir === undefined ? undefined : path.resolve(opts.dataDir),
      gateway: { host: opts.host, port: opts.port },
      bus: { bindEndpoint: opts.bus },
      storage: { clickhouseUrl: opts.clickhouseUrl },
    });
    const logger = createLogger('gateway', config.logLevel);
    logger.info({ config: redactConfig(config) }, 'configuration');
    const storage = await openStorage({ ...storageOptionsFromConfig(config), logger });
    const gateway = await startGateway(config, storage, logger);
    if (opts.readyJson) process.stdout.write(`ready ${JSON.stringify({ url: gateway.url, bus: gateway.busEndpoint, pid: process.pid })}\n`);
    else process.stdout.write(`skiff gateway at ${gateway.url}, bus ${gateway.busEndpoint}\n`);
    onSignals(async () => {
      await gateway.close();
      await storage.close();
    });
  });

program
  .command('executor')
  .description('start an executor for this node; it connects to SKIFF_GATEWAYS')
  .action(async () => {
    const config = loadConfig();
    const logger = createLogger('executor', config.logLevel);
    logger.info({ config: redactConfig(config) }, 'configuration');
    const executor = await startExecutor(config, { logger });
    // A Docker engine that stops answering must not keep the executor alive: bound the stop.
    onSignals(() =>
      Promise.race([
        executor.close(),
        new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`the executor did not stop within ${EXECUTOR_STOP_MAX_MS} ms`)), EXECUTOR_STOP_MAX_MS).unref()),
      ]),
    );
  });

program
  .command('build-image')
  .description('build the offline Node runtime image (no registry needed)')
  .option('--force', 'rebuild even if the image exists')
  .action(async (opts: { force?: boolean }) => {
    const tag = await ensureRuntimeImage(new Dockerode(), { force: opts.force ?? false, onProgress: (line) => process.stdout.write(`skiff: ${line}\n`) });
    process.stdout.write(`${tag}\n`);
  });

program
  .command('keygen')
  .description('make a CURVE key pair for the bus (gateway or executor)')
  .action(() => {
    const pair = generateCurveKeyPair();
    process.stdout.write(`public key: ${pair.publicKey}\nsecret key: ${pair.secretKey}\n`);
  });

program
  .command('deploy <dir>')
  .description('deploy a function folder')
  .option('--name <name>', 'function name (default: the folder name)')
  .option('--env <KEY=VALUE...>', 'environment variables for the function')
  .option('--url <url>', 'gateway URL', DEFAULT_URL)
  .option('--insecure', 'accept a self-signed certificate')
  .action(async (dir: string, opts: { name?: string; env?: string[]; url: string; insecure?: boolean }) => {
    const env = Object.fromEntries((opts.env ?? []).map((pair) => {
      const at = pair.indexOf('=');
      if (at < 1) throw new InvalidArgumentError(`--env ${pair}: expected KEY=VALUE`);
      return [pair.slice(0, at), pair.slice(at + 1)];
    }));
    const gateway = client(opts);
    const deployed = await deployDir(gateway, dir, opts.name ?? path.basename(path.resolve(dir)), env);
    await gateway.close();
    process.stdout.write(`${renderTable(['name', 'version', 'code bytes', 'code hash'], [[deployed.name, deployed.version, deployed.codeBytes, deployed.codeHash.slice(0, 12)]])}\n`);
  });

program
  .command('invoke <name>')
  .description('call a function and print its response body')
  .option('--data <body>', 'request body')
  .option('--method <method>', 'HTTP method', 'POST')
  .option('--path <path>', 'path after /function/<name>', '')
  .option('--include', 'print status and headers too')
  .option('--url <url>', 'gateway URL', DEFAULT_URL)
  .option('--insecure', 'accept a self-signed certificate')
  .action(async (name: string, opts: { data?: string; method: string; path: string; include?: boolean; url: string; insecure?: boolean }) => {
    const gateway = client(opts);
    const res = await gateway.call(opts.method, `/function/${encodeURIComponent(name)}${opts.path}`, opts.data);
    await gateway.close();
    if (opts.include) {
      process.stdout.write(`HTTP ${res.status}\n${Object.entries(res.headers).map(([k, v]) => `${k}: ${v}`).join('\n')}\n\n`);
    }
    process.stdout.write(res.body);
    if (res.body.length > 0 && res.body[res.body.length - 1] !== 10) process.stdout.write('\n');
    if (res.status >= 400) process.exitCode = 1;
  });

program
  .command('ls')
  .description('list deployed functions')
  .option('--url <url>', 'gateway URL', DEFAULT_URL)
  .option('--insecure', 'accept a self-signed certificate')
  .action(async (opts: { url: string; insecure?: boolean }) => {
    const functions = await gatewayJson<Array<{ name: string; version: number; runtime: string; limits: { memoryMB: number; timeoutMs: number; concurrency: number }; createdAt: string }>>(opts, 'GET', '/system/functions');
    process.stdout.write(`${renderTable(
      ['name', 'version', 'runtime', 'memory MB', 'timeout ms', 'concurrency', 'deployed'],
      functions.map((f) => [f.name, f.version, f.runtime, f.limits.memoryMB, f.limits.timeoutMs, f.limits.concurrency, f.createdAt]),
    )}\n`);
  });

program
  .command('rm <name>')
  .description('remove a function')
  .option('--url <url>', 'gateway URL', DEFAULT_URL)
  .option('--insecure', 'accept a self-signed certificate')
  .action(async (name: string, opts: { url: string; insecure?: boolean }) => {
    await gatewayJson(opts, 'DELETE', `/system/functions/${encodeURIComponent(name)}`);
    process.stdout.write(`removed ${name}\n`);
  });

program
  .command('stats')
  .description("storage's counters per table, and the GC pauses and event-loop delay of the gateway and each executor")
  .option('--url <url>', 'gateway URL', DEFAULT_URL)
  .option('--insecure', 'accept a self-signed certificate')
  .action(async (opts: { url: string; insecure?: boolean }) => {
    process.stdout.write(renderStats(await gatewayJson<StatsReply>(opts, 'GET', '/system/stats'), Date.now()));
  });

interface InvocationRow {
  id: string; function: string; status: string; errorCode: string; httpStatus: number; start: string; totalUs: number; runUs: number; receivedAtMs: number;
  logs?: Array<{ timeMs: number; stream: string; line: string }>;
}

program
  .command('logs <nameOrId>')
  .description('recent invocations of a function, or one invocation with its log lines')
  .option('--limit <n>', 'how many invocations', positive, 20)
  .option('--url <url>', 'gateway URL', DEFAULT_URL)
  .option('--insecure', 'accept a self-signed certificate')
  .action(async (nameOrId: string, opts: { limit: number; url: string; insecure?: boolean }) => {
    const gateway = client(opts);
    const one = await gateway.call('GET', `/system/invocations/${encodeURIComponent(nameOrId)}`);
    if (one.status === 200) {
      const inv = JSON.parse(one.body.toString('utf8')) as InvocationRow;
      process.stdout.write(`${renderTable(['id', 'function', 'status', 'http', 'start', 'total ms'], [[inv.id, inv.function, inv.errorCode || inv.status, inv.httpStatus, inv.start, (inv.totalUs / 1000).toFixed(2)]])}\n\n`);
      for (const log of inv.logs ?? []) process.stdout.write(`${new Date(log.timeMs).toISOString()} ${log.stream} ${log.line}\n`);
    } else {
      const rows = await gateway.json<InvocationRow[]>('GET', `/system/invocations?function=${encodeURIComponent(nameOrId)}&limit=${opts.limit}`);
      process.stdout.write(`${renderTable(
        ['received', 'id', 'status', 'http', 'start', 'run ms', 'total ms'],
        rows.map((r) => [new Date(r.receivedAtMs).toISOString(), r.id, r.errorCode || r.status, r.httpStatus, r.start, (r.runUs / 1000).toFixed(2), (r.totalUs / 1000).toFixed(2)]),
      )}\n`);
    }
    await gateway.close();
  });

program.parseAsync(process.argv).catch((err: unknown) => {
  const message = err instanceof ConfigError ? `configuration: ${err.message}` : (err as Error).message;
  process.stderr.write(`skiff: ${message}\n`);
  process.exit(1);
});
