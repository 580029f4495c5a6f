/**
 * Builds the ContainerSpec of a function container in small named steps: identity (labels that
 * let a restarted executor find its leftovers), the Fn http-stream environment, limits, mounts
 * and hardening (the defaults listed in ARCHITECTURE.md).
 */
import { randomBytes } from 'node:crypto';
import type { FunctionSpec } from '../bus/index.ts';
import type { ContainerSpec } from './driver.ts';
import { LISTENER_FILE, RUNTIME_PATHS, RUNTIME_USER } from './runtime/index.ts';

const MB = 1024 * 1024;

/** Labels every Skiff container carries. */
export const LABELS = {
  managed: 'skiff.managed',
  node: 'skiff.node',
  function: 'skiff.function',
  version: 'skiff.version',
} as const;

/** Where the per-container iofs directory and the code appear inside the container. */
export const IOFS_TARGET = RUNTIME_PATHS.iofsDir;
export const CODE_TARGET = RUNTIME_PATHS.functionDir;
export { LISTENER_FILE };

/** The non-root user functions run as (the runtime image's user; images of their own too). */
const FUNCTION_USER = String(RUNTIME_USER.uid);
/** Processes/threads one container may hold (fork bombs stop here). */
const PIDS_LIMIT = 128;
/** Size cap of the writable /tmp. */
const TMPFS_BYTES = 64 * MB;

/** What the executor knows about where a container's files live on the host. */
export interface ContainerPlacement {
  nodeId: string;
  /** Host directory bind-mounted at /tmp/iofs (mode 0777). */
  iofsDir: string;
  /** Extracted code bundle, bind-mounted read-only at /function; '' for image functions. */
  codeDir: string;
  /** The image to run for runtime 'node20' functions. */
  runtimeImage: string;
}

/** Labels that select every container of one executor node. */
export function nodeLabels(nodeId: string): Record<string, string> {
  return { [LABELS.managed]: 'true', [LABELS.node]: nodeId };
}

/** A Docker-safe container name: skiff-<function>-<random>. */
export function containerName(functionName: string): string {
  const safe = functionName.replace(/[^a-zA-Z0-9_.-]/g, '-').slice(0, 40);
  return `skiff-${safe}-${randomBytes(4).toString('hex')}`;
}

function identityStep(spec: ContainerSpec, fn: FunctionSpec, place: ContainerPlacement): ContainerSpec {
  return {
    ...spec,
    name: containerName(fn.name),
    labels: { ...nodeLabels(place.nodeId), [LABELS.function]: fn.name, [LABELS.version]: String(fn.version) },
  };
}

function runtimeStep(spec: ContainerSpec, fn: FunctionSpec, place: ContainerPlacement): ContainerSpec {
  const contract: Record<string, string> = {
    FN_LISTENER: `unix:${IOFS_TARGET}/${LISTENER_FILE}`,
    FN_FORMAT: 'http-stream',
    SKIFF_FUNCTION_NAME: fn.name,
    // What @fnproject/fdk's ctx.fnName reads.
    FN_FN_NAME: fn.name,
  };
  if (fn.runtime !== 'image') contract.SKIFF_HANDLER = `${CODE_TARGET}/${fn.handler}`;
  // The contract variables win over a function env that tries to redefine them.
  return { ...spec, image: fn.runtime === 'image' ? fn.image : place.runtimeImage, env: { ...fn.env, ...contract } };
}

function limitsStep(spec: ContainerSpec, fn: FunctionSpec): ContainerSpec {
  return { ...spec, memoryBytes: fn.limits.memoryMB * MB, pidsLimit: PIDS_LIMIT, tmpfsBytes: TMPFS_BYTES };
}

function mountsStep(spec: ContainerSpec, place: ContainerPlacement): ContainerSpec {
  const mounts: ContainerSpec['mounts'] = [{ source: place.iofsDir, target: IOFS_TARGET, readOnly: false }];
  if (place.codeDir !== '') mounts.push({ source: place.codeDir, target: CODE_TARGET, readOnly: true });
  return { ...spec, mounts };
}

function hardeningStep(spec: ContainerSpec): ContainerSpec {
  return { ...spec, user: FUNCTION_USER, networkMode: 'none', readOnlyRootfs: true, dropAllCapabilities: true, noNewPrivileges: true };
}

const EMPTY_SPEC: ContainerSpec = {
  name: '',
  image: '',
  env: {},
  labels: {},
  user: '',
  memoryBytes: 0,
  pidsLimit: 0,
  tmpfsBytes: 0,
  mounts: [],
  networkMode: 'none',
  readOnlyRootfs: true,
  dropAllCapabilities: true,
  noNewPrivileges: true,
};

/** The container spec of one function container. */
export function buildContainerSpec(fn: FunctionSpec, place: ContainerPlacement): ContainerSpec {
  let spec = identityStep(EMPTY_SPEC, fn, place);
  spec = runtimeStep(spec, fn, place);
  spec = limitsStep(spec, fn);
  spec = mountsStep(spec, place);
  return hardeningStep(spec);
}
