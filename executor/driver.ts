/**
 * The ContainerDriver interface: everything the executor asks of a container runtime. The Docker
 * driver (docker-driver.ts) is the real one; unit tests may use a fake. Every method throws a
 * SkiffError (CONTAINER_RUNTIME_ERROR) on runtime failures, never a raw runtime error.
 */
import type { Readable } from 'node:stream';

/** A host directory mounted into the container. */
export interface ContainerMount {
  source: string;
  target: string;
  readOnly: boolean;
}

/** A runtime-neutral description of one function container, built by container-spec.ts. */
export interface ContainerSpec {
  name: string;
  image: string;
  env: Record<string, string>;
  labels: Record<string, string>;
  /** Numeric uid (or uid:gid) the process runs as. */
  user: string;
  /** Memory limit; swap is limited to the same value (no swap). */
  memoryBytes: number;
  pidsLimit: number;
  /** CPU limit in cores (CFS quota over a 100 ms period); 0: none. */
  cpus: number;
  /** Size cap of the tmpfs mounted at /tmp (the root filesystem is read-only). */
  tmpfsBytes: number;
  mounts: ContainerMount[];
  /** 'none' unless the function asks for network. */
  networkMode: string;
  readOnlyRootfs: boolean;
  dropAllCapabilities: boolean;
  noNewPrivileges: boolean;
}

/** A container's output, demultiplexed. Both streams end when the container stops. */
export interface ContainerOutput {
  stdout: Readable;
  stderr: Readable;
}

/** How a container ended, as the runtime saw it. */
export interface ContainerExit {
  running: boolean;
  exitCode: number;
  /** The kernel's OOM killer stopped it (it went past its memory limit). */
  oomKilled: boolean;
}

export interface ContainerDriver {
  /** Resolves when the runtime answers. */
  ping(): Promise<void>;
  imageExists(image: string): Promise<boolean>;
  /** Ids of every container (running or not) carrying all these labels. */
  listByLabels(labels: Record<string, string>): Promise<string[]>;
  /** Creates (does not start) a container; returns its id. */
  create(spec: ContainerSpec): Promise<string>;
  /** Attaches to stdout/stderr; call before start() so no early line is lost. */
  attach(id: string): Promise<ContainerOutput>;
  start(id: string): Promise<void>;
  /** Resolves with the exit code when the (started) container stops. */
  waitExit(id: string): Promise<number>;
  /** The container's run state and, once stopped, how it ended. */
  inspectExit(id: string): Promise<ContainerExit>;
  /** Kills (if running) and removes the container; a container already gone is not an error. */
  remove(id: string): Promise<void>;
}
