import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import zlib from 'node:zlib';
import tar from 'tar-stream';
import { afterEach, describe, expect, it } from 'vitest';
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
    const [a, b] = await Promise.all([s.ensure(hash, bundle), s.ensure(hash, bundle)]);
    expect(a).toBe(path.join(root, hash));
    expect(b).toBe(a);
    expect(readFileSync(path.join(a, 'link.js'), 'utf8')).toBe('module.exports = 1');
    expect(statSync(path.join(a, 'index.js')).mode & 0o777).toBe(0o644);
    expect(statSync(path.join(a, 'lib')).mode & 0o777).toBe(0o755);
    expect(statSync(path.join(a, 'lib/run.sh')).mode & 0o777).toBe(0o755);
    expect(readdirSync(root)).toEqual([hash]);
  });

  it('rejects a bundle whose sha256 is not its codeHash', async () => {
    const bundle = await tarGz([{ name: 'index.js', body: 'x' }]);
    await expect(store().store.ensure('0'.repeat(64), bundle)).rejects.toMatchObject({ code: 'INVALID_FUNCTION_DEFINITION', message: expect.stringContaining('sha256') });
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
    await expect(s.ensure(bundleHash(bundle), bundle)).rejects.toMatchObject({ code: 'INVALID_FUNCTION_DEFINITION' });
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
    await expect(s.ensure(bundleHash(bundle), bundle)).rejects.toMatchObject({ code: 'INVALID_FUNCTION_DEFINITION', message: expect.stringContaining('through other symlinks') });
    expect(readdirSync(root)).toEqual([]);
  });

  it('rejects a symlink target with .. after a directory', async () => {
    const bundle = await tarGz([
      { name: 'a/', type: 'directory' },
      { name: 'l', type: 'symlink', linkname: 'a/../index.js' },
    ]);
    await expect(store().store.ensure(bundleHash(bundle), bundle)).rejects.toMatchObject({ code: 'INVALID_FUNCTION_DEFINITION' });
  });

  it('rejects bytes that are not a .tar.gz', async () => {
    const bundle = Buffer.from('not gzip at all');
    await expect(store().store.ensure(bundleHash(bundle), bundle)).rejects.toMatchObject({ code: 'INVALID_FUNCTION_DEFINITION' });
  });
});
