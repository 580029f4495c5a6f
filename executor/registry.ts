/**
 * The functions this executor can run, by name@version. DEPLOY adds a version (its bundle
 * verified and extracted first); the newest version of a name is current, older ones stay
 * runnable so calls already routed to them still work; UNDEPLOY forgets every version.
 */
import type { FunctionLimits, FunctionSpec } from '../bus/index.ts';
import { SkiffError } from '../errors.ts';
import type { BundleStore } from './bundles.ts';

/** A deployed function version, ready to start containers from. */
export interface DeployedFunction {
  key: string;
  spec: FunctionSpec;
  /** Extracted code directory; '' for image functions. */
  codeDir: string;
}

/** The pool/registry key of one function version. */
export function functionKey(name: string, version: number): string {
  return `${name}@${version}`;
}

function invalid(message: string): SkiffError {
  return new SkiffError('INVALID_FUNCTION_DEFINITION', message);
}

function isPositiveInt(value: unknown): value is number {
  return typeof value === 'number' && Number.isInteger(value) && value > 0;
}

/** Structural checks of a spec that crossed the bus; limits missing fields are defaulted. */
export function normalizeSpec(raw: FunctionSpec, defaults: FunctionLimits): FunctionSpec {
  if (typeof raw !== 'object' || raw === null) throw invalid('spec must be an object');
  if (typeof raw.name !== 'string' || raw.name === '') throw invalid('spec.name must be a non-empty string');
  if (!Number.isInteger(raw.version) || raw.version < 0) throw invalid('spec.version must be a non-negative integer');
  if (raw.runtime !== 'node20' && raw.runtime !== 'image') throw invalid(`spec.runtime must be 'node20' or 'image', got ${JSON.stringify(raw.runtime)}`);
  if (raw.runtime === 'image' && (typeof raw.image !== 'string' || raw.image === '')) throw invalid("spec.image must name an image for runtime 'image'");
  if (raw.runtime === 'node20' && (typeof raw.handler !== 'string' || raw.handler === '')) throw invalid('spec.handler must name the entry file');
  const limits: FunctionLimits = { ...defaults, ...(raw.limits ?? {}) };
  for (const key of ['memoryMB', 'timeoutMs', 'concurrency'] as const) {
    if (!isPositiveInt(limits[key])) throw invalid(`spec.limits.${key} must be a positive integer`);
  }
  if (limits.cpus !== undefined && !(typeof limits.cpus === 'number' && Number.isFinite(limits.cpus) && limits.cpus > 0)) throw invalid('spec.limits.cpus must be a positive number of cores');
  if (raw.network !== undefined && typeof raw.network !== 'boolean') throw invalid('spec.network must be true or false');
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(raw.env ?? {})) {
    if (typeof v !== 'string' || !/^[A-Za-z_][A-Za-z0-9_]*$/.test(k)) throw invalid(`spec.env.${k} must be a string variable with a plain name`);
    env[k] = v;
  }
  return { ...raw, namespace: raw.namespace ?? '', image: raw.image ?? '', codeHash: raw.codeHash ?? '', handler: raw.handler ?? '', env, limits };
}

export class FunctionRegistry {
  readonly #bundles: BundleStore;
  readonly #defaults: FunctionLimits;
  readonly #deployed = new Map<string, DeployedFunction>();
  readonly #latest = new Map<string, number>();
  readonly #pending = new Map<string, Promise<DeployedFunction>>();
  /** Why a version's deploy failed: calls to it say so instead of "not found". */
  readonly #failed = new Map<string, SkiffError>();
  /** Bumped by undeploy so a deploy finishing afterwards is dropped. */
  readonly #generation = new Map<string, number>();

  constructor(bundles: BundleStore, defaults: FunctionLimits) {
    this.#bundles = bundles;
    this.#defaults = defaults;
  }

  /**
   * Deploys one version. Resolves with it and the keys of older versions it superseded (their
   * idle containers can go); rejects with INVALID_FUNCTION_DEFINITION on a bad spec or bundle.
   */
  deploy(rawSpec: FunctionSpec, bundle: Buffer): Promise<{ deployed: DeployedFunction; superseded: string[] }> {
    let spec: FunctionSpec;
    try {
      spec = normalizeSpec(rawSpec, this.#defaults);
    } catch (err) {
      return Promise.reject(err);
    }
    const key = functionKey(spec.name, spec.version);
    const generation = this.#generation.get(spec.name) ?? 0;
    const job = (async (): Promise<DeployedFunction> => {
      const codeDir = spec.runtime === 'image' ? '' : await this.#bundles.ensure(spec.codeHash, bundle);
      return { key, spec, codeDir };
    })();
    this.#pending.set(key, job);
    return job.then(
      (deployed) => {
        if (this.#pending.get(key) === job) this.#pending.delete(key);
        if ((this.#generation.get(spec.name) ?? 0) !== generation) return { deployed, superseded: [] };
        this.#failed.delete(key);
        this.#deployed.set(key, deployed);
        const previous = this.#latest.get(spec.name);
        const superseded: string[] = [];
        if (previous === undefined || spec.version >= previous) {
          this.#latest.set(spec.name, spec.version);
          for (const other of this.#deployed.values()) {
            if (other.spec.name === spec.name && other.spec.version < spec.version) superseded.push(other.key);
          }
        }
        return { deployed, superseded };
      },
      (err: unknown) => {
        if (this.#pending.get(key) === job) this.#pending.delete(key);
        const error = err instanceof SkiffError ? err : new SkiffError('INVALID_FUNCTION_DEFINITION', String(err), { cause: err });
        if (!this.#deployed.has(key)) this.#failed.set(key, error);
        throw error;
      },
    );
  }

  /**
   * The deployed version `name@version`, waiting for a deploy of it still in progress. Undefined
   * when unknown; throws FUNCTION_START_FAILED when its deploy failed.
   */
  async resolve(name: string, version: number): Promise<DeployedFunction | undefined> {
    const key = functionKey(name, version);
    const pending = this.#pending.get(key);
    if (pending) await pending.catch(() => {});
    const deployed = this.#deployed.get(key);
    if (deployed) return deployed;
    const failed = this.#failed.get(key);
    if (failed) throw new SkiffError('FUNCTION_START_FAILED', `${key} could not be deployed on this executor: ${failed.message}`, { cause: failed });
    return undefined;
  }

  /** True while `key` is deployed and the newest version of its name. */
  isCurrent(key: string): boolean {
    const deployed = this.#deployed.get(key);
    return deployed !== undefined && this.#latest.get(deployed.spec.name) === deployed.spec.version;
  }

  /** Forgets every version of `name`; returns their keys. */
  undeploy(name: string): string[] {
    this.#generation.set(name, (this.#generation.get(name) ?? 0) + 1);
    this.#latest.delete(name);
    const keys: string[] = [];
    for (const [key, deployed] of this.#deployed) {
      if (deployed.spec.name !== name) continue;
      this.#deployed.delete(key);
      keys.push(key);
    }
    for (const key of this.#failed.keys()) if (key.startsWith(`${name}@`)) this.#failed.delete(key);
    return keys;
  }
}
