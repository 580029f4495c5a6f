/**
 * Serves code bundles to executors by content hash (FETCH_BUNDLE → BUNDLE). A bundle comes from
 * the registry's definitions in memory when one has that hash (deployed here, or through a peer
 * gateway: the control channel carries the code), else from the functions table in storage (an
 * older version still running, or one whose control message this gateway missed), so every
 * gateway sharing the storage serves any hash ever deployed. Concurrent requests for one hash
 * share one storage read; nothing read from storage is kept in memory.
 */
import type { BundleHeader } from '../bus/index.ts';
import type { Storage } from '../storage/index.ts';
import type { FunctionRegistry } from './registry.ts';

const SHA256_HEX = /^[0-9a-f]{64}$/;
const EMPTY = Buffer.alloc(0);

export interface BundleServerOptions {
  /** storage.database: where the functions table is. */
  database: string;
  /** gateway.maxDeployBytes: no bundle is larger than the deploy body that carried it. */
  maxBundleBytes: number;
}

/** A BUNDLE frame to send: the header and, when found, the raw .tar.gz. */
export interface BundleAnswer {
  header: BundleHeader;
  body: Buffer;
}

export class BundleServer {
  readonly #registry: FunctionRegistry;
  readonly #storage: Storage;
  readonly #options: BundleServerOptions;
  readonly #reading = new Map<string, Promise<BundleAnswer>>();

  constructor(registry: FunctionRegistry, storage: Storage, options: BundleServerOptions) {
    this.#registry = registry;
    this.#storage = storage;
    this.#options = options;
  }

  /** The answer to FETCH_BUNDLE `codeHash`; never rejects (a failure is a not-found with its reason). */
  serve(codeHash: unknown): Promise<BundleAnswer> {
    if (typeof codeHash !== 'string' || !SHA256_HEX.test(codeHash)) {
      return Promise.resolve(missing(String(codeHash), `${JSON.stringify(codeHash)} is not a lower-case sha256 hex digest`));
    }
    const inMemory = this.#registry.bundleOf(codeHash);
    if (inMemory) return Promise.resolve({ header: { codeHash, found: true, message: '' }, body: inMemory });
    const pending = this.#reading.get(codeHash);
    if (pending) return pending;
    const job = this.#readStored(codeHash).finally(() => this.#reading.delete(codeHash));
    this.#reading.set(codeHash, job);
    return job;
  }

  async #readStored(codeHash: string): Promise<BundleAnswer> {
    let rows: Record<string, string | number>[];
    try {
      // codeHash is checked hex and the database a checked identifier: nothing to escape.
      rows = await this.#storage.query(`SELECT code FROM \`${this.#options.database}\`.functions WHERE code_hash = '${codeHash}' AND code != '' LIMIT 1`);
    } catch (err) {
      return missing(codeHash, `storage could not be read: ${err instanceof Error ? err.message : String(err)}`);
    }
    const code = rows[0]?.code;
    if (typeof code !== 'string' || code === '') return missing(codeHash, 'no function version with this code hash is stored');
    const body = Buffer.from(code, 'base64');
    if (body.length > this.#options.maxBundleBytes) {
      return missing(codeHash, `the stored bundle is ${body.length} bytes, over gateway.maxDeployBytes (${this.#options.maxBundleBytes})`);
    }
    return { header: { codeHash, found: true, message: '' }, body };
  }
}

function missing(codeHash: string, message: string): BundleAnswer {
  return { header: { codeHash, found: false, message }, body: EMPTY };
}
