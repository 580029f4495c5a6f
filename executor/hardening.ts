/**
 * The hardening steps of a container spec (ARCHITECTURE.md, "Container hardening"): resource
 * limits (memory with swap equal to it, PidsLimit, CPU quota, a size-capped /tmp) and isolation
 * (non-root user, CapDrop ALL, no-new-privileges, read-only rootfs, network none unless the
 * function asks for it). The Docker socket is never mounted: mounts come only from
 * container-spec.ts (the iofs directory and the code).
 */
import type { FunctionSpec } from '../bus/index.ts';
import type { ContainerSpec } from './driver.ts';
import { RUNTIME_USER } from './runtime/index.ts';

const MB = 1024 * 1024;

/** The non-root user functions run as (the runtime image's user; images of their own too). */
export const FUNCTION_USER = String(RUNTIME_USER.uid);

/** Node-wide hardening settings (from config.executor). */
export interface HardeningSettings {
  pidsLimit: number;
  tmpfsMb: number;
  /** Cores a container gets unless its function sets limits.cpus. */
  defaultCpus: number;
  /** Network mode of functions that ask for network. */
  functionNetwork: string;
}

/** The CPU cores a function's containers get. */
export function cpusOf(fn: Pick<FunctionSpec, 'limits'>, settings: HardeningSettings): number {
  return fn.limits.cpus ?? settings.defaultCpus;
}

/** Memory == swap (no swap), processes capped, CPU quota, /tmp capped. */
export function limitsStep(spec: ContainerSpec, memoryMb: number, cpus: number, settings: HardeningSettings): ContainerSpec {
  return { ...spec, memoryBytes: memoryMb * MB, pidsLimit: settings.pidsLimit, cpus, tmpfsBytes: settings.tmpfsMb * MB };
}

/** Non-root, no capabilities, no privilege gain, read-only rootfs, network only if asked for. */
export function isolationStep(spec: ContainerSpec, wantsNetwork: boolean, settings: HardeningSettings): ContainerSpec {
  return {
    ...spec,
    user: FUNCTION_USER,
    networkMode: wantsNetwork ? settings.functionNetwork : 'none',
    readOnlyRootfs: true,
    dropAllCapabilities: true,
    noNewPrivileges: true,
  };
}
