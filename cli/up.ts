/**
 * `skiff up`: the whole platform on one machine. Builds the runtime image if needed, opens
 * storage, starts a gateway in this process and one executor as a child process (so either can
 * be killed on its own), deploys examples/, and prints what to try. Ctrl-C stops it all and the
 * executor removes its containers.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import Dockerode from 'dockerode';
import { loadConfig, redactConfig, type ConfigOverrides, type SkiffConfig } from '../config.ts';
import { ensureRuntimeImage } from '../executor/index.ts';
import { startGateway, type Gateway } from '../gateway/index.ts';
import { createLogger } from '../logger.ts';
import { openStorage, storageOptionsFromConfig, type Storage } from '../storage/index.ts';
import { GatewayClient } from './client.ts';
import { deployDir } from './deploy.ts';
import { ensureSelfSignedCert } from './tls.ts';

export interface UpOptions {
  overrides: ConfigOverrides;
  tls: boolean;
  examples: boolean;
  /** Print one `ready {json}` line for programs driving `skiff up` (tests, benchmarks). */
  readyJson: boolean;
}

const CLI_ENTRY = path.join(path.dirname(fileURLToPath(import.meta.url)), 'bin.ts');
const EXAMPLES_DIR = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'examples');

/** What `skiff up` started, for an orderly stop. */
export interface RunningSkiff {
  config: SkiffConfig;
  gateway: Gateway;
  storage: Storage;
  executor: ChildProcess;
  stop(): Promise<void>;
}

function say(line: string): void {
  process.stdout.write(`${line}\n`);
}

/** Starts everything and resolves once the executor is connected and examples are deployed. */
export async function up(options: UpOptions): Promise<RunningSkiff> {
  let overrides = options.overrides;
  if (options.tls) {
    const base = loadConfig(overrides);
    overrides = { ...overrides, gateway: { ...overrides.gateway, tls: ensureSelfSignedCert(path.join(base.dataDir, 'tls')) } };
  }
  const config = loadConfig(overrides);
  const logger = createLogger('skiff', config.logLevel);
  logger.info({ config: redactConfig(config) }, 'configuration');

  const docker = new Dockerode();
  try {
    await docker.ping();
  } catch (err) {
    throw new Error(`no Docker engine answers (${(err as Error).message}); run: bash scripts/start-docker.sh`);
  }
  say('skiff: checking the runtime image...');
  const runtimeImage = await ensureRuntimeImage(docker, { onProgress: (line) => say(`skiff: ${line}`) });

  say(`skiff: opening storage (${config.storage.clickhouseUrl ? 'ClickHouse server' : 'embedded chDB'})...`);
  const storage = await openStorage({ ...storageOptionsFromConfig(config), logger });
  const gateway = await startGateway(config, storage, logger);

  const executor = spawn(process.execPath, ['--import', 'tsx', CLI_ENTRY, 'executor'], {
    env: {
      ...process.env,
      SKIFF_GATEWAYS: gateway.busEndpoint,
      SKIFF_RUNTIME_IMAGE: runtimeImage,
      SKIFF_DATA_DIR: config.dataDir,
      SKIFF_LOG_LEVEL: config.logLevel,
    },
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  const executorExited = new Promise<void>((resolve) => executor.once('exit', () => resolve()));

  let stopping: Promise<void> | undefined;
  executor.once('exit', (code, signal) => {
    if (stopping) return;
    say(`skiff: the executor exited (${signal ?? code}); the gateway answers 503 NO_EXECUTOR until one connects to ${gateway.busEndpoint}`);
  });
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      if (executor.exitCode === null && executor.signalCode === null) executor.kill('SIGTERM');
      await executorExited;
      await gateway.close();
      await storage.close();
    })();
    return stopping;
  };

  try {
    await gateway.waitForExecutors(1, config.executor.startTimeoutMs * 3);
  } catch (err) {
    await stop();
    throw err;
  }

  const client = new GatewayClient(gateway.url, options.tls);
  if (options.examples && existsSync(EXAMPLES_DIR)) {
    for (const entry of readdirSync(EXAMPLES_DIR).sort()) {
      const dir = path.join(EXAMPLES_DIR, entry);
      if (!statSync(dir).isDirectory()) continue;
      const deployed = await deployDir(client, dir, entry);
      say(`skiff: deployed example ${deployed.name} (version ${deployed.version})`);
    }
  }
  await client.close();

  if (options.readyJson) {
    say(`ready ${JSON.stringify({ url: gateway.url, bus: gateway.busEndpoint, executorPid: executor.pid, runtimeImage })}`);
  } else {
    const insecure = options.tls ? ' -k' : '';
    say('');
    say(`Skiff is up at ${gateway.url}  (Ctrl-C stops it and removes its containers)`);
    say('');
    say('Try:');
    say(`  npm run -s skiff -- deploy examples/hello --name hello2${options.tls ? ` --url ${gateway.url} --insecure` : ''}`);
    say(`  curl${insecure} -X POST --data 'hi there' ${gateway.url}/function/echo`);
    say(`  curl${insecure} '${gateway.url}/system/invocations?function=echo&limit=5'`);
    say('');
  }
  return { config, gateway, storage, executor, stop };
}
