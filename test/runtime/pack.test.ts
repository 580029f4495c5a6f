import { promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { gunzipSync } from 'node:zlib';
import tar from 'tar-stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { packFunctionDir, readFunctionManifest } from '../../cli/pack.ts';

const EXAMPLES = fileURLToPath(new URL('../../examples/', import.meta.url));

interface ListedEntry {
  name: string;
  type: string;
  mode: number;
  mtime: number;
  uid: number;
  gid: number;
  linkname: string | null;
  body: Buffer;
}

async function listArchive(archive: Buffer): Promise<ListedEntry[]> {
  const extract = tar.extract();
  const entries: ListedEntry[] = [];
  const done = (async () => {
    for await (const entry of extract) {
      const chunks: Buffer[] = [];
      for await (const chunk of entry) chunks.push(chunk as Buffer);
      const h = entry.header;
      entries.push({ name: h.name, type: h.type, mode: h.mode, mtime: h.mtime.getTime(), uid: h.uid, gid: h.gid, linkname: h.linkname ?? null, body: Buffer.concat(chunks) });
    }
  })();
  extract.end(gunzipSync(archive));
  await done;
  return entries;
}

let scratch = '';
beforeAll(async () => {
  scratch = await fsp.mkdtemp(path.join(os.tmpdir(), 'skiff-pack-test-'));
});
afterAll(async () => {
  await fsp.rm(scratch, { recursive: true, force: true });
});

async function makeFolder(name: string, files: Record<string, string | { content: string; mode: number }>): Promise<string> {
  const dir = path.join(scratch, name);
  for (const [rel, spec] of Object.entries(files)) {
    const file = path.join(dir, rel);
    await fsp.mkdir(path.dirname(file), { recursive: true });
    const { content, mode } = typeof spec === 'string' ? { content: spec, mode: 0o644 } : spec;
    await fsp.writeFile(file, content);
    await fsp.chmod(file, mode);
  }
  return dir;
}

describe('packFunctionDir', () => {
  it('gives identical bytes when the same folder is packed twice, even after its mtimes change', async () => {
    const dir = path.join(EXAMPLES, 'fdk-echo');
    const first = await packFunctionDir(dir);
    const copy = path.join(scratch, 'fdk-echo-copy');
    await fsp.cp(dir, copy, { recursive: true, verbatimSymlinks: true });
    const second = await packFunctionDir(dir);
    const ofCopy = await packFunctionDir(copy);
    expect(second.equals(first)).toBe(true);
    expect(ofCopy.equals(first)).toBe(true);
  });

  it('lists the function files and its vendored node_modules in sorted order', async () => {
    const entries = await listArchive(await packFunctionDir(path.join(EXAMPLES, 'fdk-echo')));
    const names = entries.map((e) => e.name);
    expect(names).toEqual([...names].sort());
    expect(names).toEqual(expect.arrayContaining([
      'func.js',
      'package.json',
      'skiff.json',
      'node_modules/',
      'node_modules/@fnproject/fdk/fn-fdk.js',
      'node_modules/@fnproject/fdk/package.json',
      'node_modules/cross-spawn/index.js',
    ]));
    const bin = entries.find((e) => e.name === 'node_modules/.bin/node-which');
    expect(bin).toMatchObject({ type: 'symlink', linkname: '../which/bin/node-which' });
    const func = entries.find((e) => e.name === 'func.js')!;
    expect(func.body.equals(await fsp.readFile(path.join(EXAMPLES, 'fdk-echo', 'func.js')))).toBe(true);
  });

  it('writes mtime 0 and uid/gid 0, keeps permission bits and skips .git', async () => {
    const dir = await makeFolder('modes', {
      'index.js': 'module.exports = async () => "ok";\n',
      'bin/tool.sh': { content: '#!/bin/sh\necho hi\n', mode: 0o755 },
      'secret.txt': { content: 'owner only\n', mode: 0o600 },
      '.git/HEAD': 'ref: refs/heads/main\n',
      'lib/.git/config': '[core]\n',
    });
    const entries = await listArchive(await packFunctionDir(dir));
    expect(entries.map((e) => e.name)).toEqual(['bin/', 'bin/tool.sh', 'index.js', 'lib/', 'secret.txt']);
    for (const e of entries) expect({ mtime: e.mtime, uid: e.uid, gid: e.gid }).toEqual({ mtime: 0, uid: 0, gid: 0 });
    expect(entries.find((e) => e.name === 'bin/tool.sh')!.mode).toBe(0o755);
    expect(entries.find((e) => e.name === 'secret.txt')!.mode).toBe(0o600);
    expect(entries.find((e) => e.name === 'index.js')!.mode).toBe(0o644);
  });

  it('refuses a symlink that points outside the folder', async () => {
    const dir = await makeFolder('escape', { 'index.js': 'module.exports = () => 1;\n' });
    await fsp.symlink('/etc/passwd', path.join(dir, 'passwd'));
    await expect(packFunctionDir(dir)).rejects.toThrow(/passwd is a symlink to \/etc\/passwd, outside the function folder/);
  });
});

describe('readFunctionManifest', () => {
  it('reads skiff.json from an example folder', async () => {
    expect(await readFunctionManifest(path.join(EXAMPLES, 'fdk-echo'))).toMatchObject({ handler: 'func.js', limits: { memoryMB: 128, timeoutMs: 10_000 } });
    expect(await readFunctionManifest(path.join(EXAMPLES, 'hello'))).toMatchObject({ handler: 'index.mjs' });
  });

  it.each([
    [{ 'index.js': '', 'index.mjs': '', 'func.js': '' }, 'index.js'],
    [{ 'index.mjs': '', 'func.js': '' }, 'index.mjs'],
    [{ 'func.js': '' }, 'func.js'],
  ])('defaults the handler to the first existing of index.js, index.mjs, func.js (%#)', async (files, handler) => {
    const dir = await makeFolder(`defaults-${handler}`, files);
    expect(await readFunctionManifest(dir)).toEqual({ handler, limits: {} });
  });

  it('reads env and keeps unknown skiff.json keys for the deployer', async () => {
    const dir = await makeFolder('extra', { 'main.js': '', 'skiff.json': JSON.stringify({ handler: './main.js', env: { A: 'b' }, network: true }) });
    expect(await readFunctionManifest(dir)).toEqual({ handler: 'main.js', limits: {}, env: { A: 'b' }, network: true });
  });

  it.each([
    ['no-handler', { 'README.md': '' }, /has no skiff\.json handler and none of index\.js, index\.mjs, func\.js/],
    ['bad-json', { 'index.js': '', 'skiff.json': '{ nope' }, /skiff\.json: invalid JSON/],
    ['missing-handler', { 'skiff.json': '{"handler":"app.js"}' }, /skiff\.json: handler app\.js does not exist/],
    ['outside-handler', { 'skiff.json': '{"handler":"../x.js"}' }, /handler must be a path inside the function folder/],
    ['bad-limit', { 'index.js': '', 'skiff.json': '{"limits":{"memoryMB":-1}}' }, /limits\.memoryMB must be a positive integer/],
    ['bad-env', { 'index.js': '', 'skiff.json': '{"env":{"A":1}}' }, /env.A: env values must be strings/],
    ['unknown-limit', { 'index.js': '', 'skiff.json': '{"limits":{"gpus":2}}' }, /limits.*gpus/],
    ['bad-cpus', { 'index.js': '', 'skiff.json': '{"limits":{"cpus":-1}}' }, /limits\.cpus must be a positive number of cores/],
    ['bad-network', { 'index.js': '', 'skiff.json': '{"network":"yes"}' }, /network must be true or false/],
  ])('rejects %s with a message naming the problem', async (name, files, message) => {
    const dir = await makeFolder(`invalid-${name}`, files);
    await expect(readFunctionManifest(dir)).rejects.toThrow(message);
  });
});
