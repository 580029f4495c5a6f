/**
 * Builds Skiff's function runtime image offline: no registry, no FROM. The rootfs is assembled
 * from this host's node binary, the shared libraries `ldd` lists for it (with the loader, and the
 * symlinks on the way, e.g. Debian's /lib -> usr/lib), a minimal /etc, the mount points and the
 * bootstrap, streamed as a tar into `docker import` with the image config set by --change.
 *
 * Tag: skiff/runtime-node20:<first 12 hex of sha256(node, libs, bootstrap, recipe)>, plus :latest.
 * CLI: node --import tsx executor/runtime/build-image.ts [--force]
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, promises as fsp } from 'node:fs';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import Docker from 'dockerode';
import tar from 'tar-stream';
import { RUNTIME_LATEST_TAG, RUNTIME_PATHS, RUNTIME_REPOSITORY, RUNTIME_USER } from './contract.ts';

const execFileAsync = promisify(execFile);

export const BOOTSTRAP_SOURCE = fileURLToPath(new URL('./bootstrap/bootstrap.mjs', import.meta.url));

/** Bump when the layout or the image config below changes: it is part of the content hash. */
const RECIPE_VERSION = 'skiff-runtime-recipe/2';

const IMAGE_CHANGES: readonly string[] = [
  `CMD ${JSON.stringify([RUNTIME_PATHS.node, RUNTIME_PATHS.bootstrap])}`,
  `WORKDIR ${RUNTIME_PATHS.functionDir}`,
  `USER ${RUNTIME_USER.uid}`,
  'ENV NODE_ENV=production',
  'ENV PATH=/usr/local/bin:/usr/bin:/bin',
  `ENV HOME=/home/${RUNTIME_USER.name}`,
  'LABEL skiff.runtime=node20',
];

export interface EnsureRuntimeImageOptions {
  onProgress?: (line: string) => void;
  /** Rebuild even when the tag already exists. */
  force?: boolean;
}

type RootfsEntry =
  | { kind: 'dir'; mode: number; uid?: number; gid?: number }
  | { kind: 'file'; mode: number; source: string; size: number }
  | { kind: 'data'; mode: number; data: Buffer }
  | { kind: 'symlink'; target: string };

/** The rootfs as image path → entry, before it is streamed. */
class Rootfs {
  readonly entries = new Map<string, RootfsEntry>();

  dir(imagePath: string, mode = 0o755, owner?: { uid: number; gid: number }): void {
    this.parents(imagePath);
    const existing = this.entries.get(imagePath);
    if (existing && existing.kind !== 'dir') throw new Error(`rootfs: ${imagePath} is both a ${existing.kind} and a directory`);
    this.entries.set(imagePath, { kind: 'dir', mode, uid: owner?.uid, gid: owner?.gid });
  }

  data(imagePath: string, data: string | Buffer, mode = 0o644): void {
    this.parents(imagePath);
    this.entries.set(imagePath, { kind: 'data', mode, data: Buffer.isBuffer(data) ? data : Buffer.from(data) });
  }

  file(imagePath: string, source: string, mode: number, size: number): void {
    this.parents(imagePath);
    this.entries.set(imagePath, { kind: 'file', mode, source, size });
  }

  symlink(imagePath: string, target: string): void {
    this.parents(imagePath);
    this.entries.set(imagePath, { kind: 'symlink', target });
  }

  private parents(imagePath: string): void {
    for (let dir = path.posix.dirname(imagePath); dir !== '/'; dir = path.posix.dirname(dir)) {
      const existing = this.entries.get(dir);
      if (existing?.kind === 'symlink') throw new Error(`rootfs: ${imagePath} would be written under the symlink ${dir}`);
      if (!existing) this.entries.set(dir, { kind: 'dir', mode: 0o755 });
    }
  }

  /**
   * Copies a host path into the same image path, reproducing every symlink met on the way
   * (a symlinked directory such as /lib -> usr/lib, or a library name -> versioned file).
   */
  async copyHostPath(hostPath: string): Promise<void> {
    let current = path.resolve(hostPath);
    for (let hops = 0; hops < 40; hops++) {
      const parts = current.split('/').filter(Boolean);
      let redirected = false;
      for (let i = 1; i <= parts.length; i++) {
        const prefix = '/' + parts.slice(0, i).join('/');
        const stat = await fsp.lstat(prefix);
        if (stat.isSymbolicLink()) {
          const target = await fsp.readlink(prefix);
          this.symlink(prefix, target);
          current = path.resolve(path.dirname(prefix), target, ...parts.slice(i));
          redirected = true;
          break;
        }
        if (i === parts.length) {
          if (!stat.isFile()) throw new Error(`rootfs: ${prefix} is not a regular file`);
          this.file(prefix, prefix, stat.mode & 0o7777, stat.size);
        } else if (!stat.isDirectory()) {
          throw new Error(`rootfs: ${prefix} is not a directory`);
        } else if (!this.entries.has(prefix)) {
          this.entries.set(prefix, { kind: 'dir', mode: stat.mode & 0o7777 });
        }
      }
      if (!redirected) return;
    }
    throw new Error(`rootfs: too many symlinks resolving ${hostPath}`);
  }
}

/** Shared libraries (and the loader) the dynamic linker maps for `binary`, as ldd lists them. */
export async function listSharedLibraries(binary: string): Promise<string[]> {
  const { stdout } = await execFileAsync('ldd', [binary]);
  const libs = new Set<string>();
  for (const line of stdout.split('\n')) {
    const arrow = /=>\s*(\/\S+)/.exec(line);
    const bare = /^\s*(\/\S+)\s+\(/.exec(line);
    const found = arrow?.[1] ?? bare?.[1];
    if (found) libs.add(found);
    else if (/=>\s*not found/.test(line)) throw new Error(`ldd ${binary}: ${line.trim()}`);
  }
  return [...libs].sort();
}

function passwd(): string {
  return [
    'root:x:0:0:root:/root:/usr/sbin/nologin',
    `${RUNTIME_USER.name}:x:${RUNTIME_USER.uid}:${RUNTIME_USER.gid}:skiff function:/home/${RUNTIME_USER.name}:/usr/sbin/nologin`,
    'nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin',
    '',
  ].join('\n');
}

function group(): string {
  return ['root:x:0:', `${RUNTIME_USER.name}:x:${RUNTIME_USER.gid}:`, 'nogroup:x:65534:', ''].join('\n');
}

interface RuntimeInputs {
  nodeBinary: string;
  libraries: string[];
  bootstrap: string;
}

async function runtimeInputs(): Promise<RuntimeInputs> {
  const nodeBinary = await fsp.realpath(process.execPath);
  return { nodeBinary, libraries: await listSharedLibraries(nodeBinary), bootstrap: BOOTSTRAP_SOURCE };
}

const hashMemo = new Map<string, string>();

/** sha256 over the recipe, the node binary, its libraries and the bootstrap; first 12 hex. */
export async function runtimeHash(inputs?: RuntimeInputs): Promise<string> {
  const { nodeBinary, libraries, bootstrap } = inputs ?? (await runtimeInputs());
  const files = [nodeBinary, ...libraries, bootstrap];
  const stats = await Promise.all(files.map(async (f) => {
    const s = await fsp.stat(f);
    return `${f}:${s.size}:${s.mtimeMs}:${s.ino}`;
  }));
  const memoKey = stats.join('|');
  const memo = hashMemo.get(memoKey);
  if (memo) return memo;
  const hash = createHash('sha256');
  hash.update(RECIPE_VERSION + '\n' + IMAGE_CHANGES.join('\n') + '\n');
  for (const file of files) {
    hash.update(`\n${file === bootstrap ? RUNTIME_PATHS.bootstrap : file}\n`);
    for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  }
  const digest = hash.digest('hex').slice(0, 12);
  hashMemo.set(memoKey, digest);
  return digest;
}

async function assembleRootfs(inputs: RuntimeInputs): Promise<Rootfs> {
  const fs = new Rootfs();
  for (const lib of inputs.libraries) await fs.copyHostPath(lib);
  const nodeStat = await fsp.stat(inputs.nodeBinary);
  fs.file(RUNTIME_PATHS.node, inputs.nodeBinary, 0o755, nodeStat.size);
  const bootstrapStat = await fsp.stat(inputs.bootstrap);
  fs.file(RUNTIME_PATHS.bootstrap, inputs.bootstrap, 0o644, bootstrapStat.size);
  fs.dir('/skiff', 0o755);
  fs.data('/etc/passwd', passwd());
  fs.data('/etc/group', group());
  fs.data('/etc/nsswitch.conf', 'passwd: files\ngroup: files\nhosts: files dns\n');
  fs.data('/etc/hosts', '127.0.0.1 localhost\n::1 localhost\n');
  fs.dir('/tmp', 0o1777);
  fs.dir(RUNTIME_PATHS.iofsDir, 0o777);
  fs.dir(RUNTIME_PATHS.functionDir, 0o755);
  fs.dir(`/home/${RUNTIME_USER.name}`, 0o755, { uid: RUNTIME_USER.uid, gid: RUNTIME_USER.gid });
  fs.dir('/root', 0o700);
  for (const mountPoint of ['/dev', '/proc', '/sys', '/etc']) if (!fs.entries.has(mountPoint)) fs.dir(mountPoint);
  return fs;
}

function writeEntry(pack: tar.Pack, header: Partial<tar.Header> & { name: string }, body?: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    const done = (err?: Error | null) => (err ? reject(err) : resolve());
    if (body) pack.entry(header, body, done);
    else pack.entry(header, done);
  });
}

/** Streams the rootfs as an uncompressed tar into `pack` (sorted, so parents come first). */
async function streamRootfs(rootfs: Rootfs, pack: tar.Pack): Promise<void> {
  const names = [...rootfs.entries.keys()].sort();
  const base = { mtime: new Date(0), uid: 0, gid: 0, uname: 'root', gname: 'root' };
  for (const imagePath of names) {
    const entry = rootfs.entries.get(imagePath)!;
    const name = imagePath.slice(1);
    if (entry.kind === 'dir') {
      await writeEntry(pack, { ...base, name: `${name}/`, type: 'directory', mode: entry.mode, uid: entry.uid ?? 0, gid: entry.gid ?? 0 });
    } else if (entry.kind === 'symlink') {
      await writeEntry(pack, { ...base, name, type: 'symlink', linkname: entry.target, mode: 0o777 });
    } else if (entry.kind === 'data') {
      await writeEntry(pack, { ...base, name, type: 'file', mode: entry.mode, size: entry.data.length }, entry.data);
    } else {
      await new Promise<void>((resolve, reject) => {
        const sink = pack.entry({ ...base, name, type: 'file', mode: entry.mode, size: entry.size }, (err) => (err ? reject(err) : resolve()));
        pipeline(createReadStream(entry.source), sink).catch(reject);
      });
    }
  }
  pack.finalize();
}

async function imageExists(docker: Docker, tag: string): Promise<boolean> {
  try {
    await docker.getImage(tag).inspect();
    return true;
  } catch (error) {
    if ((error as { statusCode?: number }).statusCode === 404) return false;
    throw error;
  }
}

interface ProgressEvent {
  status?: string;
  progress?: string;
  error?: string;
  errorDetail?: { message?: string };
}

function followImport(docker: Docker, stream: NodeJS.ReadableStream, onLine: (line: string) => void): Promise<void> {
  return new Promise((resolve, reject) => {
    docker.modem.followProgress(
      stream,
      (err: Error | null, events: ProgressEvent[]) => {
        if (err) return reject(err);
        const failed = events.find((e) => e.error);
        if (failed) return reject(new Error(`docker import failed: ${failed.error}`));
        resolve();
      },
      (event: ProgressEvent) => {
        if (event.error) onLine(`docker: ${event.error}`);
        else if (event.status) onLine(`docker: ${event.status}${event.progress ? ` ${event.progress}` : ''}`);
      },
    );
  });
}

function formatBytes(bytes: number): string {
  return `${(bytes / (1024 * 1024)).toFixed(1)} MiB`;
}

/**
 * Returns `skiff/runtime-node20:<hash>` (also tagged :latest), building it offline when missing
 * or when `force` is set.
 */
export async function ensureRuntimeImage(docker: Docker, options: EnsureRuntimeImageOptions = {}): Promise<string> {
  const progress = options.onProgress ?? (() => {});
  const inputs = await runtimeInputs();
  const hash = await runtimeHash(inputs);
  const tag = `${RUNTIME_REPOSITORY}:${hash}`;

  if (!options.force && (await imageExists(docker, tag))) {
    progress(`runtime image ${tag} already exists`);
    await docker.getImage(tag).tag({ repo: RUNTIME_REPOSITORY, tag: 'latest' });
    return tag;
  }

  progress(`building runtime image ${tag} from ${inputs.nodeBinary} (${process.version}) and ${inputs.libraries.length} libraries`);
  const rootfs = await assembleRootfs(inputs);
  let total = 0;
  for (const entry of rootfs.entries.values()) {
    if (entry.kind === 'file') total += entry.size;
    else if (entry.kind === 'data') total += entry.data.length;
  }
  progress(`rootfs: ${rootfs.entries.size} entries, ${formatBytes(total)}`);

  const pack = tar.pack();
  const producing = streamRootfs(rootfs, pack);
  producing.catch((error: unknown) => pack.destroy(error as Error));
  const started = Date.now();
  const response = (await docker.importImage(pack as unknown as NodeJS.ReadableStream, {
    repo: RUNTIME_REPOSITORY,
    tag: hash,
    changes: [...IMAGE_CHANGES, `LABEL skiff.runtime.hash=${hash}`],
    message: `skiff runtime ${hash} (${process.version})`,
  })) as NodeJS.ReadableStream;
  await Promise.all([producing, followImport(docker, response, progress)]);
  progress(`imported in ${Date.now() - started} ms`);

  if (!(await imageExists(docker, tag))) throw new Error(`docker import finished but ${tag} is not there`);
  await docker.getImage(tag).tag({ repo: RUNTIME_REPOSITORY, tag: 'latest' });
  progress(`tagged ${tag} and ${RUNTIME_LATEST_TAG}`);
  return tag;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const docker = new Docker();
  ensureRuntimeImage(docker, { force: process.argv.includes('--force'), onProgress: (line) => console.log(line) })
    .then((tag) => console.log(tag))
    .catch((error: unknown) => {
      console.error(error instanceof Error ? error.message : error);
      process.exitCode = 1;
    });
}
