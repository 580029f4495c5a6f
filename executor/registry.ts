/**
 * The functions this executor can run, by name@version. DEPLOY adds a version's spec (no code:
 * its bundle is got by hash at the first call that needs it, and cached on disk for every later
 * one); the newest version of a name is current, older ones stay runnable so calls already
 * routed to them still work; UNDEPLOY forgets every version.
 */
import type { FunctionLimits, FunctionSpec } from '../bus/index.ts';
import { SkiffError } from '../errors.ts';
import { isCodeHash, type BundleSource, type BundleStore } from './bundles.ts';

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
  /** Deployed versions by key, with or without their code on this node yet. */
  readonly #specs = new Map<string, FunctionSpec>();
  /** Versions whose code is on disk: the warm path's lookup, no await on the disk or the bus. */
  readonly #ready = new Map<string, DeployedFunction>();
  readonly #latest = new Map<string, number>();

  constructor(bundles: BundleStore, defaults: FunctionLimits) {
    this.#bundles = bundles;
    this.#defaults = defaults;
  }

  /**
   * Deploys one version (its spec only). Returns its key and the keys of older versions it
   * superseded (their idle containers can go); throws INVALID_FUNCTION_DEFINITION on a bad spec.
   */
  deploy(rawSpec: FunctionSpec): { key: string; superseded: string[] } {
    const spec = normalizeSpec(rawSpec, this.#defaults);
    if (spec.runtime === 'node20' && !isCodeHash(spec.codeHash)) {
      throw invalid(`spec.codeHash must be a lower-case sha256 hex digest, got ${JSON.stringify(spec.codeHash)}`);
    }
    const key = functionKey(spec.name, spec.version);
    this.#specs.set(key, spec);
    this.#ready.delete(key);
    const previous = this.#latest.get(spec.name);
    const superseded: string[] = [];
    if (previous === undefined || spec.version >= previous) {
      this.#latest.set(spec.name, spec.version);
      for (const other of this.#specs.values()) {
        if (other.name === spec.name && other.version < spec.version) superseded.push(functionKey(other.name, other.version));
      }
    }
    return { key, superseded };
  }

  /**
   * The deployed version `name@version` with its code on disk, its bundle got from `source`
   * first when this node does not hold it (concurrent calls share one fetch). Undefined when the
   * version is unknown; throws BUNDLE_UNAVAILABLE when the bundle cannot be got, and
   * FUNCTION_START_FAILED when it is not a valid bundle.
   */
  async resolve(name: string, version: number, source: BundleSource): Promise<DeployedFunction | undefined> {
    const key = functionKey(name, version);
    const ready = this.#ready.get(key);
    if (ready) return ready;
    const spec = this.#specs.get(key);
    if (!spec) return undefined;
    let codeDir = '';
    if (spec.runtime !== 'image') {
      try {
        codeDir = await this.#bundles.obtain(spec.codeHash, source);
      } catch (err) {
        if (err instanceof SkiffError && err.code === 'BUNDLE_UNAVAILABLE') throw err;
        const message = err instanceof Error ? err.message : String(err);
        throw new SkiffError('FUNCTION_START_FAILED', `${key} could not be deployed on this executor: ${message}`, { cause: err });
      }
    }
    // Undeployed or redeployed meanwhile: answer for what is deployed now.
    if (this.#specs.get(key) !== spec) return this.#specs.has(key) ? this.resolve(name, version, source) : undefined;
    const deployed: DeployedFunction = { key, spec, codeDir };
    this.#ready.set(key, deployed);
    return deployed;
  }

  /** True while `key` is deployed and the newest version of its name. */
  isCurrent(key: string): boolean {
    const spec = this.#specs.get(key);
    return spec !== undefined && this.#latest.get(spec.name) === spec.version;
  }

  /** Forgets every version of `name`; returns their keys. */
  undeploy(name: string): string[] {
    this.#latest.delete(name);
    const keys: string[] = [];
    for (const [key, spec] of this.#specs) {
      if (spec.name !== name) continue;
      this.#specs.delete(key);
      this.#ready.delete(key);
      keys.push(key);
    }
    return keys;
  }
}
