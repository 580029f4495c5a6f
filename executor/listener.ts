/**
 * Waits for a starting container to publish its http-stream listener: the bootstrap creates
 * <iofs>/lsnr.sock (a relative symlink to the real socket) when it is ready to take calls. We
 * watch the directory and also poll on a bounded interval (fs.watch can miss events on some
 * filesystems), give up after executor.startTimeoutMs, and fail fast if the container exits.
 */
import fs from 'node:fs';
import { lstat, readlink } from 'node:fs/promises';
import path from 'node:path';
import { SkiffError } from '../errors.ts';
import { IOFS_TARGET, LISTENER_FILE } from './container-spec.ts';

/** Fallback poll interval while waiting for the listener. */
const LISTENER_POLL_MS = 50;
/** A stem cell's control socket, published like the listener (bootstrap.mjs, stem cell mode). */
export const STEM_FILE = 'stem.sock';

/**
 * The host path of the socket behind <iofsDir>/lsnr.sock. A relative link resolves in the same
 * directory; an absolute one names a path inside the container, which is mapped onto iofsDir.
 */
export async function resolveListener(iofsDir: string, file: string = LISTENER_FILE): Promise<string> {
  const link = path.join(iofsDir, file);
  const stat = await lstat(link);
  if (!stat.isSymbolicLink()) return link;
  const target = await readlink(link);
  if (!path.isAbsolute(target)) return path.join(iofsDir, target);
  const inside = path.posix.relative(IOFS_TARGET, target);
  return path.join(iofsDir, inside.startsWith('..') ? path.basename(target) : inside);
}

async function listenerExists(iofsDir: string, file: string): Promise<boolean> {
  try {
    await lstat(path.join(iofsDir, file));
    return true;
  } catch {
    return false;
  }
}

/**
 * Resolves with the host socket path once the container published its listener. Rejects with
 * FUNCTION_START_FAILED when `timeoutMs` passes or `exited` settles first (its value is the exit
 * code; `describeExit` adds what the container printed).
 */
export function waitForListener(
  iofsDir: string,
  timeoutMs: number,
  exited: Promise<number>,
  describeExit: (code: number) => string,
  file: string = LISTENER_FILE,
): Promise<string> {
  return new Promise<string>((resolve, reject) => {
    let settled = false;
    let checking = false;
    let watcher: fs.FSWatcher | undefined;
    const finish = (err: SkiffError | undefined, socketPath?: string) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      clearInterval(poll);
      watcher?.close();
      if (err) reject(err);
      else resolve(socketPath as string);
    };
    const check = async () => {
      if (settled || checking) return;
      checking = true;
      try {
        if (await listenerExists(iofsDir, file)) finish(undefined, await resolveListener(iofsDir, file));
      } catch (err) {
        finish(new SkiffError('FUNCTION_START_FAILED', `the container published an unusable listener: ${(err as Error).message}`, { cause: err }));
      } finally {
        checking = false;
      }
    };
    const timer = setTimeout(() => {
      finish(new SkiffError('FUNCTION_START_FAILED', `the function did not open its listener within executor.startTimeoutMs (${timeoutMs} ms)`));
    }, timeoutMs);
    const poll = setInterval(() => void check(), LISTENER_POLL_MS);
    try {
      watcher = fs.watch(iofsDir, () => void check());
      watcher.on('error', () => {
        // The poll keeps going; a broken watcher only costs latency.
      });
    } catch {
      // Same: poll only.
    }
    exited.then(
      (code) => finish(new SkiffError('FUNCTION_START_FAILED', `the function container exited with code ${code} before opening its listener${describeExit(code)}`)),
      (err: unknown) => finish(err instanceof SkiffError ? err : new SkiffError('CONTAINER_RUNTIME_ERROR', String(err), { cause: err })),
    );
    void check();
  });
}
