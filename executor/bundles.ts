/**
 * Code bundles cached by content hash: a bundle (.tar.gz) fetched from a gateway is verified
 * against the spec's codeHash and extracted once into <root>/<codeHash>/, which containers mount
 * read-only at /function. Extraction goes to a temporary directory renamed into place, so a
 * half-written bundle is never mounted; entries that would escape the directory are rejected.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { chmod, mkdir, rename, rm, stat, symlink } from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import zlib from 'node:zlib';
import tar from 'tar-stream';
import { SkiffError } from '../errors.ts';

const gunzip = promisify(zlib.gunzip);

/** An uncompressed bundle larger than this is refused (a gzip bomb stops here). */
const MAX_EXTRACTED_BYTES = 512 * 1024 * 1024;
const DIR_MODE = 0o755;
const FILE_MODE = 0o644;
const EXEC_FILE_MODE = 0o755;
const SHA256_HEX = /^[0-9a-f]{64}$/;

function invalid(message: string, cause?: unknown): SkiffError {
  return new SkiffError('INVALID_FUNCTION_DEFINITION', message, { cause });
}

/** sha256 of a bundle, lower-case hex (the codeHash format). */
export function bundleHash(bundle: Buffer): string {
  return createHash('sha256').update(bundle).digest('hex');
}

/** The safe relative path of a tar entry, or '' for the root itself; throws on escapes. */
export function safeEntryPath(name: string): string {
  if (name.includes('\0')) throw invalid(`bundle entry name contains NUL: ${JSON.stringify(name)}`);
  if (path.posix.isAbsolute(name) || /^[A-Za-z]:/.test(name)) throw invalid(`bundle entry has an absolute path: ${name}`);
  const segments = name.split('/');
  if (segments.includes('..')) throw invalid(`bundle entry escapes the bundle with '..': ${name}`);
  const normalized = path.posix.normalize(name).replace(/\/+$/, '');
  return normalized === '.' ? '' : normalized;
}

function isInside(root: string, target: string): boolean {
  const rel = path.relative(root, target);
  return rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel));
}

/** True when every '..' of a link target comes before its other segments ('../a/b', not 'a/../b'). */
function leadingParentsOnly(linkname: string): boolean {
  let descended = false;
  for (const segment of linkname.split('/')) {
    if (segment === '' || segment === '.') continue;
    if (segment !== '..') descended = true;
    else if (descended) return false;
  }
  return true;
}

/** True when a directory above `rel` is one of the symlinks extracted so far. */
function hasLinkedAncestor(rel: string, links: ReadonlySet<string>): boolean {
  const segments = rel.split('/');
  for (let i = 1; i < segments.length; i++) if (links.has(segments.slice(0, i).join('/'))) return true;
  return false;
}

/** Extracts a .tar.gz into `dest` (which must exist). */
export async function extractBundle(bundle: Buffer, dest: string): Promise<void> {
  let tarBytes: Buffer;
  try {
    tarBytes = await gunzip(bundle, { maxOutputLength: MAX_EXTRACTED_BYTES });
  } catch (err) {
    throw invalid(`the code bundle is not a valid .tar.gz (or is over ${MAX_EXTRACTED_BYTES} bytes uncompressed): ${(err as Error).message}`, err);
  }
  const extract = tar.extract();
  extract.end(tarBytes);
  const links = new Set<string>();
  try {
    for await (const entry of extract) {
      const { header } = entry;
      const rel = safeEntryPath(header.name);
      const target = path.join(dest, rel);
      if (!isInside(dest, target)) throw invalid(`bundle entry escapes the bundle: ${header.name}`);
      switch (header.type) {
        case 'directory':
          entry.resume();
          await mkdir(target, { recursive: true });
          await chmod(target, DIR_MODE);
          break;
        case 'file':
        case 'contiguous-file': {
          if (rel === '') throw invalid('bundle has a file entry without a name');
          await mkdir(path.dirname(target), { recursive: true });
          const mode = (header.mode ?? 0) & 0o111 ? EXEC_FILE_MODE : FILE_MODE;
          await pipeline(entry, createWriteStream(target, { mode }));
          await chmod(target, mode);
          break;
        }
        case 'symlink': {
          entry.resume();
          const linkname = header.linkname ?? '';
          if (linkname === '' || path.isAbsolute(linkname) || !isInside(dest, path.resolve(path.dirname(target), linkname))) {
            throw invalid(`bundle symlink points outside the bundle: ${header.name} -> ${linkname}`);
          }
          // Checked lexically, which is only sound when no '..' follows a (possibly linked)
          // component and the link's own directory is real: then every link stays inside.
          if (!leadingParentsOnly(linkname) || hasLinkedAncestor(rel, links)) {
            throw invalid(`bundle symlink ${header.name} -> ${linkname} must not go through other symlinks`);
          }
          await mkdir(path.dirname(target), { recursive: true });
          await symlink(linkname, target);
          links.add(rel);
          break;
        }
        default:
          entry.resume();
          throw invalid(`bundle entry ${header.name} has an unsupported type (${header.type ?? 'unknown'})`);
      }
    }
  } catch (err) {
    if (err instanceof SkiffError) throw err;
    throw invalid(`the code bundle could not be extracted: ${(err as Error).message}`, err);
  }
}

async function exists(p: string): Promise<boolean> {
  try {
    await stat(p);
    return true;
  } catch {
    return false;
  }
}

/** Gets the bytes of a bundle the cache does not hold (from a gateway: bundle-fetcher.ts). */
export type BundleSource = (codeHash: string) => Promise<Buffer>;

/** True for a codeHash in the only format bundles are addressed by (lower-case sha256 hex). */
export function isCodeHash(value: unknown): value is string {
  return typeof value === 'string' && SHA256_HEX.test(value);
}

/**
 * The on-disk cache of extracted bundles, keyed by codeHash. A bundle it does not hold is got
 * from a BundleSource at first need; concurrent needs of one hash share one fetch and one
 * extraction. Only bytes whose sha256 is the hash are extracted, and a failure is not
 * remembered: the next need tries again.
 */
export class BundleStore {
  readonly #root: string;
  /** Hashes known to be extracted, so a warm call does not touch the disk. */
  readonly #ready = new Set<string>();
  readonly #obtaining = new Map<string, Promise<string>>();

  constructor(root: string) {
    this.#root = root;
  }

  /** The directory a bundle is (or will be) extracted to. */
  dirOf(codeHash: string): string {
    return path.join(this.#root, codeHash);
  }

  /** True when the bundle is extracted on this node. */
  async has(codeHash: string): Promise<boolean> {
    return isCodeHash(codeHash) && (this.#ready.has(codeHash) || (await exists(this.dirOf(codeHash))));
  }

  /**
   * The directory of bundle `codeHash`, got from `source` and extracted first when this node
   * does not hold it. Rejects with BUNDLE_UNAVAILABLE when the source fails or sends other
   * bytes, INVALID_FUNCTION_DEFINITION when the verified bytes are not a safe .tar.gz.
   */
  obtain(codeHash: string, source: BundleSource): Promise<string> {
    if (!isCodeHash(codeHash)) return Promise.reject(invalid(`spec.codeHash must be a lower-case sha256 hex digest, got ${JSON.stringify(codeHash)}`));
    const dir = this.dirOf(codeHash);
    if (this.#ready.has(codeHash)) return Promise.resolve(dir);
    const pending = this.#obtaining.get(codeHash);
    if (pending) return pending;
    const job = (async () => {
      if (!(await exists(dir))) {
        const bundle = await source(codeHash);
        const actual = bundleHash(bundle);
        if (actual !== codeHash) throw new SkiffError('BUNDLE_UNAVAILABLE', `the code bundle received for ${codeHash} has sha256 ${actual}; it was not cached`);
        await this.#extract(codeHash, bundle, dir);
      }
      this.#ready.add(codeHash);
      return dir;
    })().finally(() => this.#obtaining.delete(codeHash));
    this.#obtaining.set(codeHash, job);
    return job;
  }

  async #extract(codeHash: string, bundle: Buffer, dir: string): Promise<string> {
    await mkdir(this.#root, { recursive: true });
    const tmp = path.join(this.#root, `.tmp-${codeHash.slice(0, 16)}-${randomBytes(4).toString('hex')}`);
    await mkdir(tmp);
    try {
      await chmod(tmp, DIR_MODE);
      await extractBundle(bundle, tmp);
      try {
        await rename(tmp, dir);
      } catch (err) {
        // Someone else (another executor sharing dataDir) got there first: same content.
        if (!(await exists(dir))) throw err;
      }
      return dir;
    } finally {
      await rm(tmp, { recursive: true, force: true });
    }
  }
}
