import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import zlib from 'node:zlib';
import tar from 'tar-stream';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { BundleStore, bundleHash } from '../../executor/bundles.ts';

type Entry = Partial<tar.Header> & { name: string; body?: string };

async function tarGz(entries: Entry[]): Promise<Buffer> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  pack.on('data', (c: unknown) => chunks.push(c as Buffer));
  const ended = new Promise<void>((resolve) => pack.once('end', () => resolve()));
  for (const { body, ...header } of entries) {
    await new Promise<void>((resolve, reject) => pack.entry(header, body ?? '', (err) => (err ? reject(err) : resolve())));
  }
  pack.finalize();
  await ended;
  return promisify(zlib.gzip)(Buffer.concat(chunks));
}

const roots: string[] = [];
function store(): { store: BundleStore; root: string } {
  const root = mkdtempSync(path.join(os.tmpdir(), 'skiff-bundles-'));
  roots.push(root);
  return { store: new BundleStore(root), root };
}

/** A BundleSource that hands out `bundle` (whatever hash is asked for). */
const serving = (bundle: Buffer) => async () => bundle;

afterEach(() => {
  for (const root of roots.splice(0)) rmSync(root, { recursive: true, force: true });
});

describe('code bundle cache', () => {
  it('extracts a bundle once under its hash with readable files and executable bits kept', async () => {
    const bundle = await tarGz([
      { name: 'index.js', body: 'module.exports = 1', mode: 0o600 },
      { name: 'lib/', type: 'directory', mode: 0o700 },
      { name: 'lib/run.sh', body: '#!/bin/sh', mode: 0o700 },
      { name: 'link.js', type: 'symlink', linkname: 'index.js' },
    ]);
    const { store: s, root } = store();
    const hash = bundleHash(bundle);
    const source = vi.fn(serving(bundle));
    const [a, b] = await Promise.all([s.obtain(hash, source), s.obtain(hash, source)]);
    expect(source).toHaveBeenCalledTimes(1);
    expect(a).toBe(path.join(root, hash));
    expect(b).toBe(a);
    expect(readFileSync(path.join(a, 'link.js'), 'utf8')).toBe('module.exports = 1');
    expect(statSync(path.join(a, 'index.js')).mode & 0o777).toBe(0o644);
    expect(statSync(path.join(a, 'lib')).mode & 0o777).toBe(0o755);
    expect(statSync(path.join(a, 'lib/run.sh')).mode & 0o777).toBe(0o755);
    expect(readdirSync(root)).toEqual([hash]);
  });

  it('rejects a bundle whose sha256 is not its codeHash, caches nothing, and takes the right bytes next time', async () => {
    const right = await tarGz([{ name: 'index.js', body: 'right' }]);
    const wrong = await tarGz([{ name: 'index.js', body: 'wrong' }]);
    const hash = bundleHash(right);
    const { store: s, root } = store();
    await expect(s.obtain(hash, serving(wrong))).rejects.toMatchObject({ code: 'BUNDLE_UNAVAILABLE', message: expect.stringContaining(`sha256 ${bundleHash(wrong)}`) });
    expect(readdirSync(root)).toEqual([]);
    expect(await s.has(hash)).toBe(false);
    const dir = await s.obtain(hash, serving(right));
    expect(readFileSync(path.join(dir, 'index.js'), 'utf8')).toBe('right');
  });

  it('gives every caller waiting on a failed fetch its error and fetches again on the next need', async () => {
    const bundle = await tarGz([{ name: 'index.js', body: 'x' }]);
    const hash = bundleHash(bundle);
    const { store: s } = store();
    const failing = vi.fn(async () => {
      throw new Error('gateway went away');
    });
    const results = await Promise.allSettled([s.obtain(hash, failing), s.obtain(hash, failing)]);
    expect(failing).toHaveBeenCalledTimes(1);
    expect(results.map((r) => (r.status === 'rejected' ? (r.reason as Error).message : 'fulfilled'))).toEqual(['gateway went away', 'gateway went away']);
    const source = vi.fn(serving(bundle));
    expect(await s.obtain(hash, source)).toBe(s.dirOf(hash));
    expect(source).toHaveBeenCalledTimes(1);
  });

  it('does not fetch a bundle already on disk, even from a previous run', async () => {
    const bundle = await tarGz([{ name: 'index.js', body: 'x' }]);
    const hash = bundleHash(bundle);
    const { store: first, root } = store();
    await first.obtain(hash, serving(bundle));
    const second = new BundleStore(root);
    const source = vi.fn(serving(bundle));
    expect(await second.has(hash)).toBe(true);
    expect(await second.obtain(hash, source)).toBe(path.join(root, hash));
    expect(await second.obtain(hash, source)).toBe(path.join(root, hash));
    expect(source).not.toHaveBeenCalled();
  });

  it('refuses a codeHash that is not a lower-case sha256 before fetching anything', async () => {
    const source = vi.fn(serving(Buffer.from('x')));
    await expect(store().store.obtain('../../etc', source)).rejects.toMatchObject({ code: 'INVALID_FUNCTION_DEFINITION', message: expect.stringContaining('sha256') });
    expect(source).not.toHaveBeenCalled();
  });

  it.each([
    ['a parent path', { name: '../evil.js', body: 'x' }],
    ['a nested parent path', { name: 'a/../../evil.js', body: 'x' }],
    ['an absolute path', { name: '/etc/evil.js', body: 'x' }],
    ['a symlink out of the bundle', { name: 'out', type: 'symlink', linkname: '../../etc/passwd' }],
    ['an absolute symlink', { name: 'out', type: 'symlink', linkname: '/etc/passwd' }],
    ['a device', { name: 'dev', type: 'character-device', devmajor: 1, devminor: 3 }],
    ['a hard link', { name: 'hard', type: 'link', linkname: 'index.js' }],
  ] as Array<[string, Entry]>)('rejects a bundle with %s and leaves nothing behind', async (_what, entry) => {
    const bundle = await tarGz([{ name: 'index.js', body: 'x' }, entry]);
    const { store: s, root } = store();
    await expect(s.obtain(bundleHash(bundle), serving(bundle))).rejects.toMatchObject({ code: 'INVALID_FUNCTION_DEFINITION' });
    expect(readdirSync(root)).toEqual([]);
  });

  it('rejects a symlink that would escape through another symlink', async () => {
    // 'x' -> '.' is harmless, but 'x/up' -> '..' is lexically inside and physically outside.
    const bundle = await tarGz([
      { name: 'x', type: 'symlink', linkname: '.' },
      { name: 'x/up', type: 'symlink', linkname: '..' },
      { name: 'x/up/escaped.js', body: 'x' },
    ]);
    const { store: s, root } = store();
    await expect(s.obtain(bundleHash(bundle), serving(bundle))).rejects.toMatchObject({ code: 'INVALID_FUNCTION_DEFINITION', message: expect.stringContaining('through other symlinks') });
    expect(readdirSync(root)).toEqual([]);
  });

  it('rejects a symlink target with .. after a directory', async () => {
    const bundle = await tarGz([
      { name: 'a/', type: 'directory' },
      { name: 'l', type: 'symlink', linkname: 'a/../index.js' },
    ]);
    await expect(store().store.obtain(bundleHash(bundle), serving(bundle))).rejects.toMatchObject({ code: 'INVALID_FUNCTION_DEFINITION' });
  });

  it('rejects bytes that are not a .tar.gz', async () => {
    const bundle = Buffer.from('not gzip at all');
    await expect(store().store.obtain(bundleHash(bundle), serving(bundle))).rejects.toMatchObject({ code: 'INVALID_FUNCTION_DEFINITION' });
  });
});
