/**
 * Builds the ContainerSpec of a function container, or of a stem cell (a prewarmed runtime
 * container with no function yet), in small named steps: identity (labels that let a restarted
 * executor find its leftovers), the Fn http-stream environment, mounts, then the hardening steps
 * of hardening.ts.
 */
import { randomBytes } from 'node:crypto';
import type { FunctionSpec } from '../bus/index.ts';
import type { ContainerSpec } from './driver.ts';
import { cpusOf, isolationStep, limitsStep, type HardeningSettings } from './hardening.ts';
import { LISTENER_FILE, RUNTIME_PATHS } from './runtime/index.ts';

/** Labels every Skiff container carries. */
export const LABELS = {
  managed: 'skiff.managed',
  node: 'skiff.node',
  function: 'skiff.function',
  version: 'skiff.version',
  /** On stem cells: the runtime they were started for. */
  stemCell: 'skiff.stemcell',
} as const;

/** Where the per-container iofs directory and the code appear inside the container. */
export const IOFS_TARGET = RUNTIME_PATHS.iofsDir;
export const CODE_TARGET = RUNTIME_PATHS.functionDir;
export { LISTENER_FILE };

/** Inside a stem cell, injected code goes here (under the iofs bind mount). */
export const INJECTED_CODE_DIR = 'function';

/** What the executor knows about where a container's files live on the host. */
export interface ContainerPlacement {
  nodeId: string;
  /** Host directory bind-mounted at /tmp/iofs (mode 0777). */
  iofsDir: string;
  /** Extracted code bundle, bind-mounted read-only at /function; '' for image functions. */
  codeDir: string;
  /** The image to run for runtime 'node20' functions. */
  runtimeImage: string;
  hardening: HardeningSettings;
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

/**
 * The environment a function runs with: its own env, then the contract variables (which win over
 * a function env that tries to redefine them). `codeDir` is where its code is inside the container.
 */
export function functionEnv(fn: FunctionSpec, codeDir: string = CODE_TARGET): Record<string, string> {
  const contract: Record<string, string> = {
    FN_LISTENER: `unix:${IOFS_TARGET}/${LISTENER_FILE}`,
    FN_FORMAT: 'http-stream',
    SKIFF_FUNCTION_NAME: fn.name,
    // What @fnproject/fdk's ctx.fnName reads.
    FN_FN_NAME: fn.name,
  };
  if (fn.runtime !== 'image') contract.SKIFF_HANDLER = `${codeDir}/${fn.handler}`;
  return { ...fn.env, ...contract };
}

function runtimeStep(spec: ContainerSpec, fn: FunctionSpec, place: ContainerPlacement): ContainerSpec {
  return { ...spec, image: fn.runtime === 'image' ? fn.image : place.runtimeImage, env: functionEnv(fn) };
}

function mountsStep(spec: ContainerSpec, place: ContainerPlacement): ContainerSpec {
  const mounts: ContainerSpec['mounts'] = [{ source: place.iofsDir, target: IOFS_TARGET, readOnly: false }];
  if (place.codeDir !== '') mounts.push({ source: place.codeDir, target: CODE_TARGET, readOnly: true });
  return { ...spec, mounts };
}

const EMPTY_SPEC: ContainerSpec = {
  name: '',
  image: '',
  env: {},
  labels: {},
  user: '',
  memoryBytes: 0,
  pidsLimit: 0,
  cpus: 0,
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
  spec = limitsStep(spec, fn.limits.memoryMB, cpusOf(fn, place.hardening), place.hardening);
  spec = mountsStep(spec, place);
  return isolationStep(spec, fn.network === true, place.hardening);
}

/** What a stem cell is started with: memory and CPU it offers, and the runtime it runs. */
export interface StemCellShape {
  runtime: 'node20';
  memoryMb: number;
  cpus: number;
}

/**
 * The container spec of a stem cell: the runtime image in stem mode (SKIFF_STEMCELL=1, no
 * function), only the iofs directory mounted (code is injected there when it specializes), the
 * same hardening as a function container, network none.
 */
export function buildStemCellSpec(shape: StemCellShape, place: Omit<ContainerPlacement, 'codeDir'>): ContainerSpec {
  let spec: ContainerSpec = {
    ...EMPTY_SPEC,
    name: containerName(`stemcell-${shape.runtime}`),
    labels: { ...nodeLabels(place.nodeId), [LABELS.stemCell]: shape.runtime },
    image: place.runtimeImage,
    env: { FN_LISTENER: `unix:${IOFS_TARGET}/${LISTENER_FILE}`, FN_FORMAT: 'http-stream', SKIFF_STEMCELL: '1' },
  };
  spec = limitsStep(spec, shape.memoryMb, shape.cpus, place.hardening);
  spec = mountsStep(spec, { ...place, codeDir: '' });
  return isolationStep(spec, false, place.hardening);
}
