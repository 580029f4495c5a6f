/**
 * The Docker implementation of ContainerDriver, on dockerode. A ContainerSpec becomes Docker
 * create options in small named steps; every dockerode error is translated by docker-errors.ts.
 */
import { PassThrough } from 'node:stream';
import type Dockerode from 'dockerode';
import { SkiffError } from '../errors.ts';
import { fromDockerError, isDockerNotFound } from './docker-errors.ts';
import type { ContainerDriver, ContainerExit, ContainerOutput, ContainerSpec } from './driver.ts';

/** How long Docker may take to answer a ping before the engine counts as down. */
const PING_TIMEOUT_MS = 5_000;
/** CFS period the CPU quota is expressed in (Docker's default), microseconds. */
const CPU_PERIOD_US = 100_000;

type CreateOptions = Dockerode.ContainerCreateOptions;
type HostConfig = NonNullable<CreateOptions['HostConfig']>;

function withIdentity(options: CreateOptions, spec: ContainerSpec): CreateOptions {
  return { ...options, name: spec.name, Labels: { ...spec.labels } };
}

function withProcess(options: CreateOptions, spec: ContainerSpec): CreateOptions {
  return {
    ...options,
    Image: spec.image,
    User: spec.user,
    Env: Object.entries(spec.env).map(([key, value]) => `${key}=${value}`),
    Tty: false,
    OpenStdin: false,
    AttachStdin: false,
    AttachStdout: true,
    AttachStderr: true,
  };
}

function withLimits(host: HostConfig, spec: ContainerSpec): HostConfig {
  const cpu = spec.cpus > 0 ? { CpuPeriod: CPU_PERIOD_US, CpuQuota: Math.round(spec.cpus * CPU_PERIOD_US) } : {};
  return { ...host, Memory: spec.memoryBytes, MemorySwap: spec.memoryBytes, PidsLimit: spec.pidsLimit, ...cpu };
}

/**
 * A container with no network is also kept out of Docker's network layer (NetworkDisabled): it
 * still gets a network namespace of its own, holding only loopback, but no libnetwork sandbox or
 * endpoint. That makes its start and removal cheaper, and avoids a lock-order deadlock in Docker
 * 20.10's libnetwork (moby/moby#42545, Debian's docker.io) that can wedge dockerd when many such
 * containers exit at once.
 */
function withNetwork(options: CreateOptions, spec: ContainerSpec): CreateOptions {
  return spec.networkMode === 'none' ? { ...options, NetworkDisabled: true } : options;
}

function withHardening(host: HostConfig, spec: ContainerSpec): HostConfig {
  return {
    ...host,
    NetworkMode: spec.networkMode,
    CapDrop: spec.dropAllCapabilities ? ['ALL'] : [],
    SecurityOpt: spec.noNewPrivileges ? ['no-new-privileges'] : [],
    ReadonlyRootfs: spec.readOnlyRootfs,
    // Mode 1777: the non-root user must be able to write its own /tmp; /tmp/iofs is a bind on top.
    Tmpfs: { '/tmp': `rw,nosuid,nodev,size=${spec.tmpfsBytes},mode=1777` },
  };
}

function withMounts(host: HostConfig, spec: ContainerSpec): HostConfig {
  return { ...host, Binds: spec.mounts.map((m) => `${m.source}:${m.target}:${m.readOnly ? 'ro' : 'rw'}`) };
}

function withLifecycle(host: HostConfig): HostConfig {
  // The executor removes its containers itself, after reading their exit code. Output comes over
  // the log socket (executor/log-capture.ts), what bypasses it through attach, and is stored in
  // ClickHouse: a Docker log driver would copy every line again.
  return { ...host, AutoRemove: false, RestartPolicy: { Name: 'no' }, LogConfig: { Type: 'none', Config: {} } };
}

/** Docker create options for a spec (pure; exported for unit tests). */
export function toCreateOptions(spec: ContainerSpec): CreateOptions {
  const options = withNetwork(withProcess(withIdentity({}, spec), spec), spec);
  const host = withLifecycle(withMounts(withHardening(withLimits({}, spec), spec), spec));
  return { ...options, HostConfig: host };
}

/** ContainerDriver on a Docker engine. */
export class DockerDriver implements ContainerDriver {
  readonly #docker: Dockerode;

  constructor(docker: Dockerode) {
    this.#docker = docker;
  }

  async ping(): Promise<void> {
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), PING_TIMEOUT_MS);
    try {
      // dockerode takes an abortSignal here; its type definitions do not say so.
      const ping = this.#docker.ping.bind(this.#docker) as unknown as (opts: { abortSignal: AbortSignal }) => Promise<unknown>;
      await ping({ abortSignal: abort.signal });
    } catch (err) {
      if (abort.signal.aborted) throw new SkiffError('CONTAINER_RUNTIME_ERROR', `docker ping failed: no answer within ${PING_TIMEOUT_MS} ms`, { cause: err });
      throw fromDockerError('ping', err);
    } finally {
      clearTimeout(timer);
    }
  }

  async imageExists(image: string): Promise<boolean> {
    try {
      await this.#docker.getImage(image).inspect();
      return true;
    } catch (err) {
      if (isDockerNotFound(err)) return false;
      throw fromDockerError(`image inspect ${image}`, err);
    }
  }

  async listByLabels(labels: Record<string, string>): Promise<string[]> {
    try {
      const label = Object.entries(labels).map(([key, value]) => `${key}=${value}`);
      const containers = await this.#docker.listContainers({ all: true, filters: { label } });
      return containers.map((c) => c.Id);
    } catch (err) {
      throw fromDockerError('list containers', err);
    }
  }

  async create(spec: ContainerSpec): Promise<string> {
    try {
      const container = await this.#docker.createContainer(toCreateOptions(spec));
      return container.id;
    } catch (err) {
      throw fromDockerError(`create ${spec.name}`, err);
    }
  }

  async attach(id: string): Promise<ContainerOutput> {
    let stream: NodeJS.ReadWriteStream;
    try {
      stream = await this.#docker.getContainer(id).attach({ stream: true, stdout: true, stderr: true, logs: false });
    } catch (err) {
      throw fromDockerError(`attach ${id.slice(0, 12)}`, err);
    }
    const stdout = new PassThrough();
    const stderr = new PassThrough();
    this.#docker.modem.demuxStream(stream, stdout, stderr);
    const end = () => {
      stdout.end();
      stderr.end();
    };
    stream.once('end', end);
    stream.once('close', end);
    stream.once('error', end);
    return { stdout, stderr };
  }

  async start(id: string): Promise<void> {
    try {
      await this.#docker.getContainer(id).start();
    } catch (err) {
      throw fromDockerError(`start ${id.slice(0, 12)}`, err);
    }
  }

  async waitExit(id: string): Promise<number> {
    try {
      const result = (await this.#docker.getContainer(id).wait()) as { StatusCode?: number };
      return result.StatusCode ?? -1;
    } catch (err) {
      // Removed while we waited: it is gone, which is what the caller waits for.
      if (isDockerNotFound(err)) return -1;
      throw fromDockerError(`wait ${id.slice(0, 12)}`, err);
    }
  }

  async inspectExit(id: string): Promise<ContainerExit> {
    try {
      const { State } = await this.#docker.getContainer(id).inspect();
      return { running: State.Running, exitCode: State.ExitCode, oomKilled: State.OOMKilled };
    } catch (err) {
      throw fromDockerError(`inspect ${id.slice(0, 12)}`, err);
    }
  }

  async remove(id: string): Promise<void> {
    try {
      await this.#docker.getContainer(id).remove({ force: true, v: true });
    } catch (err) {
      if (isDockerNotFound(err)) return;
      // 409 "removal already in progress" also means it is going away.
      if ((err as { statusCode?: number }).statusCode === 409) return;
      throw fromDockerError(`remove ${id.slice(0, 12)}`, err);
    }
  }
}
