/**
 * Starting and removing function containers through the ContainerDriver: iofs directory, create,
 * attach output, start, watch for exit, wait for the listener; and on removal undo every one of
 * those (client, container, directory). Emits the container events (created, started, ready,
 * killed, crashed, evicted, removed) and attributes output lines to invocations.
 */
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, rm } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from 'pino';
import type { ContainerEvent, ContainerEventKind } from '../bus/index.ts';
import { SkiffError } from '../errors.ts';
import { raceAbort } from './abortable.ts';
import { ContainerClient } from './container-client.ts';
import { buildContainerSpec } from './container-spec.ts';
import type { FunctionContainer, RemovalReason } from './container.ts';
import type { ContainerDriver } from './driver.ts';
import { waitForListener } from './listener.ts';
import { captureOutput, RecentLines, type CapturedLine } from './log-capture.ts';
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

  constructor(options: LifecycleOptions) {
    this.#o = options;
  }

  #event(container: FunctionContainer, kind: ContainerEventKind, detail = ''): void {
    const event: ContainerEvent = {
      timeMs: Date.now(),
      nodeId: this.#o.nodeId,
      containerId: container.id,
      function: container.deployed.spec.name,
      version: container.deployed.spec.version,
      kind,
      detail,
    };
    this.#o.telemetry.event(container.invocation?.route ?? this.#o.fallbackRoute(), event);
    this.#o.logger.debug({ container: container.shortId, fn: container.key, kind, detail }, 'container event');
  }

  #line(container: FunctionContainer, captured: CapturedLine): void {
    const invocation = container.invocation;
    if (!invocation) return;
    this.#o.telemetry.line(invocation.route, {
      invocationId: invocation.id,
      function: container.deployed.spec.name,
      containerId: container.id,
      timeMs: captured.timeMs,
      stream: captured.stream,
      line: captured.line,
      truncated: captured.truncated,
    });
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
      const spec = buildContainerSpec(container.deployed.spec, {
        nodeId: this.#o.nodeId,
        iofsDir: container.iofsDir,
        codeDir: container.deployed.codeDir,
        runtimeImage: this.#o.runtimeImage,
      });
      // Not abortable: a removal racing the create waits for the id to delete the container.
      const creation = driver.create(spec).then((id) => {
        container.id = id;
      });
      this.#creations.set(container, creation);
      await creation;
      this.#event(container, 'created', spec.name);
      if (container.signal.aborted) throw container.signal.reason;
      const output = await abortable(driver.attach(container.id));
      void captureOutput(output, this.#o.maxLogLineBytes, (line) => {
        recent.add(line.line);
        this.#line(container, line);
      });
      await abortable(driver.start(container.id));
      this.#event(container, 'started');
      const exited = driver.waitExit(container.id);
      exited.then(
        (code) => this.#o.onExit(container, code),
        (err: unknown) => {
          this.#o.logger.warn({ err, container: container.shortId }, 'lost track of a container');
          this.#o.onExit(container, -1);
        },
      );
      const describeExit = () => {
        const tail = recent.toString();
        return tail === '' ? '' : `; its last output:\n${tail}`;
      };
      const socketPath = await abortable(waitForListener(container.iofsDir, this.#o.startTimeoutMs, exited, describeExit));
      container.client = new ContainerClient(socketPath);
      this.#event(container, 'ready', `${Date.now() - startedAt} ms`);
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
