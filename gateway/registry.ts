/**
 * The function registry of one gateway: every current definition in memory, each version stored
 * in ClickHouse (the source of truth, reloaded at start) before a deploy is answered.
 */
import type { Storage, StoredFunction } from '../storage/index.ts';
import type { SkiffConfig } from '../config.ts';
import { SkiffError } from '../errors.ts';
import { buildDefinition, type DeployRequest, type FunctionDefinition } from './definition.ts';

/** Where a change came from: this gateway's API, or a peer gateway over the control channel. */
export type ChangeOrigin = 'local' | 'remote';

export interface RegistryListener {
  onDeployed(definition: FunctionDefinition, origin: ChangeOrigin): void;
  onRemoved(name: string, origin: ChangeOrigin): void;
}

/** A registry reload after a miss happens at most this often. */
const RELOAD_MIN_INTERVAL_MS = 250;

export class FunctionRegistry {
  readonly #storage: Storage;
  readonly #listeners: RegistryListener[] = [];
  #lastReloadMs = 0;
  #reloading: Promise<void> | undefined;
  readonly #config: SkiffConfig;
  readonly #current = new Map<string, FunctionDefinition>();
  /** The highest version ever stored per name, deleted ones included, so versions never repeat. */
  readonly #lastVersion = new Map<string, number>();

  constructor(storage: Storage, config: SkiffConfig) {
    this.#storage = storage;
    this.#config = config;
  }

  /** Loads the latest definition of every function from storage. */
  async load(): Promise<void> {
    for (const stored of await this.#storage.loadFunctions()) {
      this.#lastVersion.set(stored.name, Math.max(stored.version, this.#lastVersion.get(stored.name) ?? 0));
      if (stored.deleted) {
        this.#current.delete(stored.name);
        continue;
      }
      this.#current.set(stored.name, {
        spec: {
          name: stored.name,
          namespace: stored.namespace,
          version: stored.version,
          runtime: stored.runtime === 'image' ? 'image' : 'node20',
          image: stored.image,
          codeHash: stored.codeHash,
          handler: stored.handler,
          env: stored.env,
          limits: stored.limits,
        },
        code: Buffer.from(stored.code, 'base64'),
        createdAtMs: stored.createdAtMs,
      });
    }
  }

  /**
   * Reloads from storage after a lookup missed, at most once per RELOAD_MIN_INTERVAL_MS, so an
   * unknown name cannot turn every call into a query. Functions that appeared are announced.
   */
  reloadOnMiss(): Promise<void> {
    const now = Date.now();
    if (this.#reloading) return this.#reloading;
    if (now - this.#lastReloadMs < RELOAD_MIN_INTERVAL_MS) return Promise.resolve();
    this.#lastReloadMs = now;
    this.#reloading = (async () => {
      const before = new Map([...this.#current].map(([name, def]) => [name, def.spec.version]));
      try {
        await this.load();
      } catch {
        return; // Storage unreachable: the caller answers FUNCTION_NOT_FOUND as before.
      } finally {
        this.#reloading = undefined;
      }
      for (const def of this.#current.values()) {
        if (before.get(def.spec.name) !== def.spec.version) for (const listener of this.#listeners) listener.onDeployed(def, 'remote');
      }
    })();
    return this.#reloading;
  }

  /** Tells `listener` about every deploy and removal from now on. */
  listen(listener: RegistryListener): void {
    this.#listeners.push(listener);
  }

  /** A definition deployed through a peer gateway (already stored by it): newer versions win. */
  applyRemote(definition: FunctionDefinition): void {
    const { name, version } = definition.spec;
    if (version <= (this.#lastVersion.get(name) ?? 0)) return;
    this.#lastVersion.set(name, version);
    this.#current.set(name, definition);
    for (const listener of this.#listeners) listener.onDeployed(definition, 'remote');
  }

  /** A removal made through a peer gateway. */
  removeRemote(name: string): void {
    if (!this.#current.delete(name)) return;
    for (const listener of this.#listeners) listener.onRemoved(name, 'remote');
  }

  get(name: string): FunctionDefinition | undefined {
    return this.#current.get(name);
  }

  /** Like get, but throws FUNCTION_NOT_FOUND. */
  require(name: string): FunctionDefinition {
    const def = this.#current.get(name);
    if (!def) throw new SkiffError('FUNCTION_NOT_FOUND', `function "${name}" is not deployed`);
    return def;
  }

  /** The code bundle of a current definition whose codeHash is `codeHash`, if any (executors fetch it: bundle-server.ts). */
  bundleOf(codeHash: string): Buffer | undefined {
    for (const def of this.#current.values()) if (def.spec.codeHash === codeHash && def.code.length > 0) return def.code;
    return undefined;
  }

  list(): FunctionDefinition[] {
    return [...this.#current.values()].sort((a, b) => a.spec.name.localeCompare(b.spec.name));
  }

  /** Stores a new version; resolves once it is durable. `created` is true for a new name. */
  async deploy(request: DeployRequest & { name: string }): Promise<{ definition: FunctionDefinition; created: boolean }> {
    const created = !this.#current.has(request.name);
    const version = (this.#lastVersion.get(request.name) ?? 0) + 1;
    const definition = buildDefinition(request, version, this.#config);
    await this.#storage.saveFunction(toStored(definition, false));
    this.#lastVersion.set(request.name, version);
    this.#current.set(request.name, definition);
    for (const listener of this.#listeners) listener.onDeployed(definition, 'local');
    return { definition, created };
  }

  /** Removes a function: a deleted marker is stored as a new version. */
  async remove(name: string): Promise<FunctionDefinition> {
    const existing = this.require(name);
    const version = (this.#lastVersion.get(name) ?? existing.spec.version) + 1;
    const marker: FunctionDefinition = { spec: { ...existing.spec, version }, code: Buffer.alloc(0), createdAtMs: Date.now() };
    await this.#storage.saveFunction(toStored(marker, true));
    this.#lastVersion.set(name, version);
    this.#current.delete(name);
    for (const listener of this.#listeners) listener.onRemoved(name, 'local');
    return existing;
  }
}

function toStored(def: FunctionDefinition, deleted: boolean): StoredFunction {
  return {
    name: def.spec.name,
    namespace: def.spec.namespace,
    version: def.spec.version,
    runtime: def.spec.runtime,
    image: def.spec.image,
    codeHash: def.spec.codeHash,
    code: def.code.toString('base64'),
    handler: def.spec.handler,
    env: def.spec.env,
    limits: def.spec.limits,
    createdAtMs: def.createdAtMs,
    deleted,
  };
}
