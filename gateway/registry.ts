/**
 * The function registry of one gateway: every current definition in memory, each version stored
 * in ClickHouse (the source of truth, reloaded at start) before a deploy is answered.
 */
import type { Storage, StoredFunction } from '../storage/index.ts';
import type { SkiffConfig } from '../config.ts';
import { SkiffError } from '../errors.ts';
import { buildDefinition, type DeployRequest, type FunctionDefinition } from './definition.ts';

export class FunctionRegistry {
  readonly #storage: Storage;
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

  get(name: string): FunctionDefinition | undefined {
    return this.#current.get(name);
  }

  /** Like get, but throws FUNCTION_NOT_FOUND. */
  require(name: string): FunctionDefinition {
    const def = this.#current.get(name);
    if (!def) throw new SkiffError('FUNCTION_NOT_FOUND', `function "${name}" is not deployed`);
    return def;
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
