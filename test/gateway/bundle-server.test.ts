/**
 * The gateway's bundle server on real storage (chDB and the ClickHouse server): the current
 * version's bundle from memory, older versions and functions this gateway never held from the
 * functions table.
 */
import { execFileSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { packFunctionDir } from '../../cli/pack.ts';
import { loadConfig, type SkiffConfig } from '../../config.ts';
import { bundleHash } from '../../executor/bundles.ts';
import { BundleServer } from '../../gateway/bundle-server.ts';
import { FunctionRegistry } from '../../gateway/registry.ts';
import { openStorage, storageOptionsFromConfig, type Storage } from '../../storage/index.ts';

const REPO_ROOT = path.resolve(import.meta.dirname, '../..');
const SERVER_URL = process.env.SKIFF_TEST_CLICKHOUSE_URL ?? 'http://127.0.0.1:8123';
const MAX_BUNDLE_BYTES = 64 * 1024 * 1024;

describe.each(['chdb', 'server'] as const)('bundle server on %s storage', (backend) => {
  let dataDir: string;
  let config: SkiffConfig;
  let storage: Storage;
  let registry: FunctionRegistry;
  let v1: Buffer;
  let v2: Buffer;

  beforeAll(async () => {
    dataDir = await mkdtemp(path.join(os.tmpdir(), 'skiff-bundle-server-'));
    if (backend === 'server') execFileSync('bash', [path.join(REPO_ROOT, 'scripts/start-clickhouse.sh')], { stdio: 'inherit' });
    const database = `skiff_bundles_${Date.now()}_${process.pid}`;
    config = loadConfig({ dataDir, logLevel: 'silent', storage: { database, clickhouseUrl: backend === 'server' ? SERVER_URL : '' } }, {});
    storage = await openStorage(storageOptionsFromConfig(config));
    registry = new FunctionRegistry(storage, config);
    v1 = await packFunctionDir(path.join(REPO_ROOT, 'examples', 'echo'));
    v2 = await packFunctionDir(path.join(REPO_ROOT, 'examples', 'hello'));
    await registry.deploy({ name: 'versions', code: v1.toString('base64'), handler: 'index.js' });
    await registry.deploy({ name: 'versions', code: v2.toString('base64'), handler: 'index.js' });
  });

  afterAll(async () => {
    await storage?.close();
    if (backend === 'server' && config) await fetch(SERVER_URL, { method: 'POST', body: `DROP DATABASE IF EXISTS ${config.storage.database}` });
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  });

  const serverOf = (reg: FunctionRegistry) => new BundleServer(reg, storage, { database: config.storage.database, maxBundleBytes: MAX_BUNDLE_BYTES });

  it('serves the current version from memory without reading storage', async () => {
    const query = vi.spyOn(storage, 'query');
    const answer = await serverOf(registry).serve(bundleHash(v2));
    expect(answer.header).toEqual({ codeHash: bundleHash(v2), found: true, message: '' });
    expect(answer.body.equals(v2)).toBe(true);
    expect(query).not.toHaveBeenCalled();
    query.mockRestore();
  });

  it('serves a superseded version from the functions table, one read for concurrent requests', async () => {
    const query = vi.spyOn(storage, 'query');
    const server = serverOf(registry);
    const answers = await Promise.all([server.serve(bundleHash(v1)), server.serve(bundleHash(v1)), server.serve(bundleHash(v1))]);
    for (const answer of answers) {
      expect(answer.header).toEqual({ codeHash: bundleHash(v1), found: true, message: '' });
      expect(answer.body.equals(v1)).toBe(true);
    }
    expect(query).toHaveBeenCalledTimes(1);
    query.mockRestore();
  });

  it('serves a bundle deployed through another gateway that this one never held', async () => {
    const elsewhere = new FunctionRegistry(storage, config);
    expect(elsewhere.get('versions')).toBeUndefined();
    const answer = await serverOf(elsewhere).serve(bundleHash(v2));
    expect(answer.header.found).toBe(true);
    expect(answer.body.equals(v2)).toBe(true);
  });

  it('answers not found, with the reason, for a hash nobody deployed', async () => {
    const answer = await serverOf(registry).serve('0'.repeat(64));
    expect(answer.header).toEqual({ codeHash: '0'.repeat(64), found: false, message: 'no function version with this code hash is stored' });
    expect(answer.body.length).toBe(0);
  });

  it('refuses a codeHash that is not a sha256 without querying storage', async () => {
    const query = vi.spyOn(storage, 'query');
    const answer = await serverOf(registry).serve("' OR 1=1 --");
    expect(answer.header.found).toBe(false);
    expect(answer.header.message).toContain('is not a lower-case sha256 hex digest');
    expect(query).not.toHaveBeenCalled();
    query.mockRestore();
  });

  it('refuses a stored bundle over the size limit', async () => {
    const answer = await new BundleServer(new FunctionRegistry(storage, config), storage, { database: config.storage.database, maxBundleBytes: 16 }).serve(bundleHash(v1));
    expect(answer.header.found).toBe(false);
    expect(answer.header.message).toContain('over gateway.maxDeployBytes (16)');
  });
});
