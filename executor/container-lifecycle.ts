/**
 * Starting and removing containers through the ContainerDriver: iofs directory, create, attach
 * output, start, watch for exit, wait for the listener (a stem cell: its call socket, published as
 * stem.sock, connected and checked at once); a stem cell specializing (code injected into its iofs
 * directory, one control call on that connection); and on removal
 * undo every one of those (client, container, directory). Emits the container events (created,
 * started, ready, specialized, killed, crashed, evicted, removed) and attributes output lines to
 * invocations.
 */
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, rm } from 'node:fs/promises';
import { performance } from 'node:perf_hooks';
import path from 'node:path';
import type { Logger } from 'pino';
import type { ContainerEvent, ContainerEventKind } from '../bus/index.ts';
import { SkiffError } from '../errors.ts';
import { raceAbort } from './abortable.ts';
import { ContainerClient } from './container-client.ts';
import { buildContainerSpec, buildStemCellSpec, type StemCellShape } from './container-spec.ts';
import type { FunctionContainer, RemovalReason } from './container.ts';
import type { ContainerDriver, ContainerExit } from './driver.ts';
import type { HardeningSettings } from './hardening.ts';
import { STEM_FILE, waitForListener } from './listener.ts';
import type { DeployedFunction } from './registry.ts';
import { checkStemCell, specializeStemCell } from './specialize.ts';
import { ContainerLogs, RecentLines, type Captured } from './log-capture.ts';
import type { ContainerLauncher } from './pool.ts';
import type { TelemetryBatcher, TelemetryRoute } from './telemetry.ts';

/** The iofs directory must be writable by the container's non-root user. */
const IOFS_DIR_MODE = 0o777;
/** Output lines kept to explain a container that failed to start. */
const START_FAILURE_LINES = 8;

export interface LifecycleOptions {
  driver: ContainerDriver;
  nodeId: string;
  runtimeImage: string;
  iofsRoot: string;
  startTimeoutMs: number;
  maxLogLineBytes: number;
  hardening: HardeningSettings;
  /** What stem cells are started with. */
  stemCellShape: StemCellShape;
  telemetry: TelemetryBatcher;
  logger: Logger;
  /** Where events of a container that never served a call go (e.g. any connected gateway). */
  fallbackRoute(): TelemetryRoute | undefined;
  /** A started container exited (not because we removed it). */
  onExit(container: FunctionContainer, exitCode: number): void;
}

export class ContainerLifecycle implements ContainerLauncher {
  readonly #o: LifecycleOptions;
  /** Containers whose teardown started, so create/start racing a removal can tell. */
  readonly #teardowns = new WeakMap<FunctionContainer, Promise<void>>();
  readonly #creations = new WeakMap<FunctionContainer, Promise<void>>();
  /** What a container printed last, to explain a failed start or specialization. */
  readonly #describeExit = new WeakMap<FunctionContainer, (code: number) => string>();
  /** Each container's output capture (log socket and attach stream), closed at removal. */
  readonly #logs = new WeakMap<FunctionContainer, ContainerLogs>();

  constructor(options: LifecycleOptions) {
    this.#o = options;
  }

  #event(container: FunctionContainer, kind: ContainerEventKind, detail = ''): void {
    const event: ContainerEvent = {
      timeMs: Date.now(),
      nodeId: this.#o.nodeId,
      containerId: container.id,
      function: container.stemCell ? '' : container.deployed.spec.name,
      version: container.deployed.spec.version,
      kind,
      detail: container.stemCell && detail === '' ? 'stem cell' : detail,
    };
    this.#o.telemetry.event(container.invocation?.route ?? this.#o.fallbackRoute(), event);
    this.#o.logger.debug({ container: container.shortId, fn: container.key, kind, detail }, 'container event');
  }

  #lines(container: FunctionContainer, logs: ContainerLogs, captured: Captured): void {
    // Lines printed outside any call are kept too, with no invocation id.
    const { invocationId, route } = logs.attribution.resolve(captured.callId, container.invocation);
    const target = route ?? this.#o.fallbackRoute();
    if (!target) return;
    const { timeMs, stream } = captured;
    const fn = container.deployed.spec.name;
    // Object literals of one fixed shape each (no spread): a spread builds its object property by
    // property, and V8's inline caches missed on every line frame.
    if ('bytes' in captured) {
      const { bytes, start, end } = captured;
      this.#o.telemetry.lineBytes(target, { invocationId, function: fn, containerId: container.id, timeMs, stream, bytes, start, end });
    } else {
      const { lines, truncated, tsvPlain } = captured;
      this.#o.telemetry.lines(target, { invocationId, function: fn, containerId: container.id, timeMs, stream, lines, truncated, tsvPlain });
    }
  }

  async launch(container: FunctionContainer): Promise<void> {
    const { driver } = this.#o;
    const startedAt = Date.now();
    const recent = new RecentLines(START_FAILURE_LINES);
    const abortable = <T>(p: Promise<T>) => raceAbort(p, container.signal);
    try {
      container.iofsDir = path.join(this.#o.iofsRoot, randomBytes(4).toString('hex'));
      await mkdir(container.iofsDir, { recursive: true });
      await chmod(container.iofsDir, IOFS_DIR_MODE);
      const logs = await ContainerLogs.open(container.iofsDir, this.#o.maxLogLineBytes, (captured) => {
        recent.add(captured);
        this.#lines(container, logs, captured);
      });
      this.#logs.set(container, logs);
      container.linesRead = (callId, maxWaitMs) => logs.linesRead(callId, maxWaitMs);
      const place = { nodeId: this.#o.nodeId, iofsDir: container.iofsDir, runtimeImage: this.#o.runtimeImage, hardening: this.#o.hardening };
      const spec = container.stemCell
        ? buildStemCellSpec(this.#o.stemCellShape, place)
        : buildContainerSpec(container.deployed.spec, { ...place, codeDir: container.deployed.codeDir });
      const createdAt = performance.now();
      // Removed while its directory and log socket were being made: its teardown has already run
      // and found no container, so none may be created now (it would be left behind), and what
      // this launch made since is its own to undo.
      if (container.signal.aborted) {
        logs.close();
        this.#logs.delete(container);
        await rm(container.iofsDir, { recursive: true, force: true }).catch(() => {});
        throw container.signal.reason;
      }
      // Not abortable: a removal racing the create waits for the id to delete the container.
      const creation = driver.create(spec).then((id) => {
        container.id = id;
      });
      this.#creations.set(container, creation);
      await creation;
      this.#event(container, 'created', spec.name);
      if (container.signal.aborted) throw container.signal.reason;
      const output = await abortable(driver.attach(container.id));
      logs.follow(output);
      await abortable(driver.start(container.id));
      container.createUs = Math.round((performance.now() - createdAt) * 1000);
      this.#event(container, 'started');
      const exited = driver.waitExit(container.id);
      // How it ended is read before anyone removes it (OOMKilled is gone with the container).
      container.exit = exited.then(
        (code) => driver.inspectExit(container.id).catch((): ContainerExit => ({ running: false, exitCode: code, oomKilled: false })),
        (err: unknown): ContainerExit => {
          this.#o.logger.warn({ err, container: container.shortId }, 'lost track of a container');
          return { running: false, exitCode: -1, oomKilled: false };
        },
      );
      void container.exit.then((exit) => this.#o.onExit(container, exit.exitCode));
      const describeExit = () => {
        const tail = recent.toString();
        return tail === '' ? '' : `; its last output:\n${tail}`;
      };
      this.#describeExit.set(container, describeExit);
      const socketPath = await abortable(
        waitForListener(container.iofsDir, this.#o.startTimeoutMs, exited, describeExit, container.stemCell ? STEM_FILE : undefined),
      );
      container.client = new ContainerClient(socketPath);
      // A stem cell's socket is the one its calls will use: connect now, off the critical path.
      if (container.stemCell) await abortable(checkStemCell(container.client, this.#o.startTimeoutMs));
      this.#event(container, 'ready', `${Date.now() - startedAt} ms`);
    } catch (err) {
      const error = toStartError(err);
      await this.destroy(container, { kind: 'crashed', detail: error.message, error });
      throw error;
    }
  }

  /**
   * Turns a ready stem cell into a container of `deployed` (which the pool already filed it
   * under): code injected into its iofs directory, one control call, its listener. On failure the
   * container is removed and the error (FUNCTION_START_FAILED with the load error) thrown.
   */
  async specialize(container: FunctionContainer, deployed: DeployedFunction): Promise<void> {
    const startedAt = performance.now();
    try {
      const exited = container.exit?.then((e) => e.exitCode) ?? new Promise<number>(() => {});
      const describeExit = this.#describeExit.get(container) ?? (() => '');
      const client = container.client;
      if (!client) throw new SkiffError('INTERNAL_ERROR', 'a ready stem cell has no client');
      const programSocket = await raceAbort(specializeStemCell(container.iofsDir, client, deployed, this.#o.startTimeoutMs, exited, describeExit), container.signal);
      if (programSocket !== undefined) {
        // A program (fdk style) serves its own listener; the stem cell's socket is closed.
        client.destroy();
        container.client = new ContainerClient(programSocket);
      }
      this.#event(container, 'specialized', `${deployed.key} in ${(performance.now() - startedAt).toFixed(2)} ms`);
    } catch (err) {
      const error = toStartError(err);
      await this.destroy(container, { kind: 'crashed', detail: error.message, error });
      throw error;
    }
  }

  destroy(container: FunctionContainer, reason: RemovalReason): Promise<void> {
    const existing = this.#teardowns.get(container);
    if (existing) return existing;
    container.abort(reason.error);
    const teardown = this.#teardown(container, reason);
    this.#teardowns.set(container, teardown);
    return teardown;
  }

  async #teardown(container: FunctionContainer, reason: RemovalReason): Promise<void> {
    container.client?.destroy();
    await this.#creations.get(container)?.catch(() => {});
    if (reason.kind !== 'removed') this.#event(container, reason.kind, reason.detail);
    if (container.id !== '') {
      try {
        await this.#o.driver.remove(container.id);
      } catch (err) {
        this.#o.logger.error({ err, container: container.shortId }, 'could not remove a container');
      }
    }
    this.#logs.get(container)?.close();
    if (container.iofsDir !== '') await rm(container.iofsDir, { recursive: true, force: true }).catch(() => {});
    if (container.id !== '') this.#event(container, 'removed', reason.kind === 'removed' ? reason.detail : '');
  }
}

/** Start failures: Skiff errors pass through; anything else is a runtime fault. */
function toStartError(err: unknown): SkiffError {
  if (err instanceof SkiffError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new SkiffError('CONTAINER_RUNTIME_ERROR', `could not start the container: ${message}`, { cause: err });
}
