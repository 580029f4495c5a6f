/**
 * executor/: runs function invocations in Docker containers for the gateways it connects to:
 * warm pools per function (pool.ts), prewarmed stem cells (stemcells.ts, specialize.ts), a node
 * memory budget (memory-budget.ts), keep-alive policies (keepalive.ts) and hardened containers
 * (hardening.ts, container-spec.ts). Public surface: startExecutor() and the types it returns,
 * and the keep-alive policies (the trace simulator in bench/ runs them); the rest is internal.
 */
import { rm } from 'node:fs/promises';
import Dockerode from 'dockerode';
import { pino, type Logger } from 'pino';
import type { SkiffConfig } from '../config.ts';
import { SkiffError } from '../errors.ts';
import { nodeLabels } from './container-spec.ts';
import { DockerDriver } from './docker-driver.ts';
import type { ContainerDriver } from './driver.ts';
import { Executor as ExecutorImpl, type ExecutorStats } from './executor.ts';
import { executorPaths, type ExecutorPaths } from './paths.ts';

export type { ExecutorStats } from './executor.ts';
export type { StateCounts } from './pool.ts';
export { containerEventChannel } from './telemetry.ts';
export { LABELS as CONTAINER_LABELS } from './container-spec.ts';
export { createKeepAlive, FixedTtlPolicy, GreedyDualSizeFrequency, HybridHistogramPolicy, LruPriority, OPENWHISK_TTL_MS } from './keepalive.ts';
export type { EvictionPriority, KeepAliveDecision, KeepAlivePolicy, KeepAlivePolicyName } from './keepalive.ts';
// The CLI builds the runtime image before it starts executors.
export { ensureRuntimeImage } from './runtime/index.ts';
export type { EnsureRuntimeImageOptions } from './runtime/index.ts';

/** A running executor. */
export interface Executor {
  readonly nodeId: string;
  /** Calls in flight and containers per state. */
  stats(): ExecutorStats;
  /**
   * Graceful stop: stops taking calls (credit 0), lets calls in flight finish (bounded), removes
   * all its containers, says BYE to each gateway. Idempotent.
   */
  close(): Promise<void>;
  /** Forced stop: drops the gateways now and removes all its containers. */
  destroy(err?: Error): Promise<void>;
}

export interface StartExecutorOptions {
  logger?: Logger;
  /** The Docker client (default: the local engine, or DOCKER_HOST). */
  docker?: Dockerode;
}

async function verifyDocker(driver: ContainerDriver): Promise<void> {
  try {
    await driver.ping();
  } catch (err) {
    const reason = err instanceof Error ? err.message : String(err);
    throw new SkiffError('CONTAINER_RUNTIME_ERROR', `the executor needs a running Docker engine, but Docker does not answer (${reason}); start Docker or set DOCKER_HOST`, { cause: err });
  }
}

/** Removes containers and files a previous run of this node left behind. */
async function removeLeftovers(driver: ContainerDriver, nodeId: string, paths: ExecutorPaths, logger: Logger): Promise<void> {
  const ids = await driver.listByLabels(nodeLabels(nodeId));
  await Promise.all(ids.map((id) => driver.remove(id)));
  if (ids.length > 0) logger.info({ count: ids.length }, 'removed containers left by a previous run');
  await rm(paths.iofs, { recursive: true, force: true });
}

async function verifyRuntimeImage(driver: ContainerDriver, image: string): Promise<void> {
  if (await driver.imageExists(image)) return;
  throw new SkiffError(
    'CONTAINER_RUNTIME_ERROR',
    `the runtime image ${image} (executor.runtimeImage) is not in the local Docker engine; build it first ` +
      '(`skiff up` builds it before starting executors; from code: ensureRuntimeImage in executor/runtime/build-image.ts)',
  );
}

/**
 * Starts an executor: checks Docker, removes this node's leftovers from a previous run, checks
 * the runtime image, then connects to every gateway in config.executor.gatewayEndpoints.
 * Throws SkiffError CONTAINER_RUNTIME_ERROR when Docker or the runtime image is missing.
 */
export async function startExecutor(config: SkiffConfig, options: StartExecutorOptions = {}): Promise<Executor> {
  const logger = options.logger ?? pino({ name: 'skiff-executor', level: config.logLevel });
  const driver = new DockerDriver(options.docker ?? new Dockerode());
  const { nodeId, runtimeImage } = config.executor;
  const paths = executorPaths(config.dataDir, nodeId);
  await verifyDocker(driver);
  await removeLeftovers(driver, nodeId, paths, logger);
  await verifyRuntimeImage(driver, runtimeImage);
  const executor = new ExecutorImpl({ config, logger, driver, paths });
  await executor.start();
  logger.info({ nodeId, gateways: config.executor.gatewayEndpoints, runtimeImage }, 'executor started');
  return executor;
}
