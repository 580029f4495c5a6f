/**
 * Packs a function folder into the deploy bundle: a deterministic .tar.gz (sorted entries, mtime 0,
 * uid/gid 0, permission bits kept, node_modules included, .git skipped), so the same folder always
 * gives the same bytes and therefore the same content hash. Also reads the folder's skiff.json.
 */
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import zlib from 'node:zlib';
import tar from 'tar-stream';
import { z } from 'zod';

const gzip = promisify(zlib.gzip);

/** Directory names never packed, at any depth. */
const SKIPPED_NAMES = new Set(['.git']);
/** Handler files tried, in order, when skiff.json names none. */
export const DEFAULT_HANDLERS = ['index.js', 'index.mjs', 'func.js'] as const;
export const MANIFEST_FILE = 'skiff.json';

interface PackEntry {
  /** POSIX path relative to the folder. */
  name: string;
  type: 'directory' | 'file' | 'symlink';
  mode: number;
  absolute: string;
  linkname?: string;
}

function isInside(root: string, candidate: string): boolean {
  const rel = path.relative(root, candidate);
  return rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel));
}

async function collectEntries(root: string): Promise<PackEntry[]> {
  const entries: PackEntry[] = [];
  const walk = async (dir: string): Promise<void> => {
    for (const dirent of await fsp.readdir(dir, { withFileTypes: true })) {
      if (SKIPPED_NAMES.has(dirent.name)) continue;
      const absolute = path.join(dir, dirent.name);
      const name = path.relative(root, absolute).split(path.sep).join('/');
      const stat = await fsp.lstat(absolute);
      const mode = stat.mode & 0o777;
      if (stat.isDirectory()) {
        entries.push({ name, type: 'directory', mode, absolute });
        await walk(absolute);
      } else if (stat.isFile()) {
        entries.push({ name, type: 'file', mode, absolute });
      } else if (stat.isSymbolicLink()) {
        const linkname = await fsp.readlink(absolute);
        if (path.isAbsolute(linkname) || !isInside(root, path.resolve(path.dirname(absolute), linkname))) {
          throw new Error(`${name} is a symlink to ${linkname}, outside the function folder; copy the target in instead`);
        }
        entries.push({ name, type: 'symlink', mode: 0o777, absolute, linkname });
      }
      // Sockets, FIFOs and devices are not code: left out.
    }
  };
  await walk(root);
  // Plain code-unit order: stable across machines and locales; a parent sorts before its children.
  return entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

function addEntry(pack: tar.Pack, header: Partial<tar.Header> & { name: string }, body?: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    const done = (err?: Error | null) => (err ? reject(err) : resolve());
    if (body) pack.entry(header, body, done);
    else pack.entry(header, done);
  });
}

/** The folder as a deterministic .tar.gz (see the file header for what "deterministic" covers). */
export async function packFunctionDir(dir: string): Promise<Buffer> {
  const root = path.resolve(dir);
  const rootStat = await fsp.stat(root);
  if (!rootStat.isDirectory()) throw new Error(`${dir} is not a directory`);
  const entries = await collectEntries(root);

  const pack = tar.pack();
  const chunks: Buffer[] = [];
  pack.on('data', (chunk: unknown) => chunks.push(chunk as Buffer));
  const ended = new Promise<void>((resolve, reject) => {
    pack.once('end', resolve);
    pack.once('error', reject);
  });
  const base = { mtime: new Date(0), uid: 0, gid: 0, uname: '', gname: '' };
  for (const entry of entries) {
    if (entry.type === 'directory') {
      await addEntry(pack, { ...base, name: `${entry.name}/`, type: 'directory', mode: entry.mode });
    } else if (entry.type === 'symlink') {
      await addEntry(pack, { ...base, name: entry.name, type: 'symlink', mode: entry.mode, linkname: entry.linkname });
    } else {
      const body = await fsp.readFile(entry.absolute);
      await addEntry(pack, { ...base, name: entry.name, type: 'file', mode: entry.mode, size: body.length }, body);
    }
  }
  pack.finalize();
  await ended;
  // Node's gzip header has mtime 0 and a fixed OS byte: same tar, same .tar.gz.
  return gzip(Buffer.concat(chunks), { level: 9 });
}

const positiveInt = (name: string) =>
  z.number({ error: `limits.${name} must be a positive integer` }).int(`limits.${name} must be a positive integer`).positive(`limits.${name} must be a positive integer`);

const manifestSchema = z.looseObject({
  handler: z.string({ error: 'handler must be a file name' }).min(1, 'handler must be a file name').optional(),
  limits: z
    .strictObject({
      memoryMB: positiveInt('memoryMB').optional(),
      timeoutMs: positiveInt('timeoutMs').optional(),
      concurrency: positiveInt('concurrency').optional(),
      cpus: z.number({ error: 'limits.cpus must be a positive number of cores' }).positive('limits.cpus must be a positive number of cores').optional(),
    })
    .optional(),
  network: z.boolean({ error: 'network must be true or false' }).optional(),
  env: z.record(z.string(), z.string({ error: 'env values must be strings' }), { error: 'env must be an object of strings' }).optional(),
});

/** Per-function limits from skiff.json; what is missing comes from config.functionDefaults. */
export interface FunctionLimits {
  memoryMB?: number;
  timeoutMs?: number;
  concurrency?: number;
  cpus?: number;
}

/** skiff.json after defaults: `handler` is a path relative to the folder that exists. */
export interface FunctionManifest {
  handler: string;
  limits: FunctionLimits;
  /** Environment variables for the function (skiff.json `env`). */
  env?: Record<string, string>;
  /** Any other skiff.json keys, kept for the deployer. */
  [key: string]: unknown;
}

async function isFile(file: string): Promise<boolean> {
  try {
    return (await fsp.stat(file)).isFile();
  } catch {
    return false;
  }
}

/**
 * Reads `<dir>/skiff.json` (optional) and fills the defaults: the handler is the first existing
 * of index.js, index.mjs, func.js. Throws naming the problem when the manifest is invalid or the
 * handler file does not exist.
 */
export async function readFunctionManifest(dir: string): Promise<FunctionManifest> {
  const root = path.resolve(dir);
  const manifestPath = path.join(root, MANIFEST_FILE);
  let raw: unknown = {};
  let text: string | undefined;
  try {
    text = await fsp.readFile(manifestPath, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
  if (text !== undefined) {
    try {
      raw = JSON.parse(text);
    } catch (error) {
      throw new Error(`${manifestPath}: invalid JSON (${(error as Error).message})`);
    }
  }
  const parsed = manifestSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const where = issue.path.join('.');
    throw new Error(`${manifestPath}: ${issue.message.includes(where) || where === '' ? issue.message : `${where}: ${issue.message}`}`);
  }
  const { handler: configured, limits, ...rest } = parsed.data;

  let handler: string | undefined;
  if (configured !== undefined) {
    const normalized = path.posix.normalize(configured.split(path.sep).join('/')).replace(/^\.\//, '');
    if (path.posix.isAbsolute(normalized) || normalized.startsWith('../') || normalized === '..') {
      throw new Error(`${manifestPath}: handler must be a path inside the function folder, got "${configured}"`);
    }
    if (!(await isFile(path.join(root, normalized)))) throw new Error(`${manifestPath}: handler ${configured} does not exist`);
    handler = normalized;
  } else {
    for (const candidate of DEFAULT_HANDLERS) {
      if (await isFile(path.join(root, candidate))) {
        handler = candidate;
        break;
      }
    }
    if (handler === undefined) throw new Error(`${dir} has no ${MANIFEST_FILE} handler and none of ${DEFAULT_HANDLERS.join(', ')}`);
  }
  return { ...rest, handler, limits: { ...limits } };
}
