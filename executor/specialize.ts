/**
 * Specializing a stem cell for one function without starting a container: the function's
 * extracted bundle is injected into the stem cell's iofs directory (hard links when that is safe,
 * else copies; read-only for the function user), then one `POST /specialize` on the connection the
 * executor already holds to the stem cell's call socket makes the bootstrap load it; the first call
 * then goes on that same, warm connection (no new socket to find or connect to).
 */
import { copyFile, link, mkdir, readdir, readlink, symlink } from 'node:fs/promises';
import path from 'node:path';
import { SkiffError } from '../errors.ts';
import type { ContainerClient, ControlReply } from './container-client.ts';
import { functionEnv, IOFS_TARGET, INJECTED_CODE_DIR } from './container-spec.ts';
import { waitForListener } from './listener.ts';
import type { DeployedFunction } from './registry.ts';
import { RUNTIME_USER } from './runtime/index.ts';

/**
 * Hard links share the bundle cache's inodes: only safe when the function user cannot write them,
 * i.e. the executor does not itself run as that user (then the files are not the function's).
 */
const LINK_SAFE = process.getuid?.() !== RUNTIME_USER.uid;

/**
 * Copies (or hard-links) the tree `src` to `dest` (which must not exist). The entries of a
 * directory go in parallel: this is on the specialization's critical path.
 */
export async function injectTree(src: string, dest: string, useLinks = LINK_SAFE): Promise<void> {
  const [entries] = await Promise.all([readdir(src, { withFileTypes: true }), mkdir(dest, { mode: 0o755 })]);
  await Promise.all(
    entries.map(async (entry) => {
      const from = path.join(src, entry.name);
      const to = path.join(dest, entry.name);
      if (entry.isDirectory()) await injectTree(from, to, useLinks);
      else if (entry.isSymbolicLink()) await symlink(await readlink(from), to);
      else if (entry.isFile()) {
        if (useLinks) await link(from, to).catch(() => copyFile(from, to));
        else await copyFile(from, to);
      }
    }),
  );
}

/**
 * Checks a started stem cell answers GET /ready on its call socket; this also opens the connection
 * `client` keeps for the specialization and the first call. Throws FUNCTION_START_FAILED if not.
 */
export async function checkStemCell(client: ContainerClient, timeoutMs: number): Promise<void> {
  let reply: ControlReply;
  try {
    reply = await client.control('GET', '/ready', undefined, timeoutMs);
  } catch (err) {
    if (err instanceof SkiffError) throw err;
    throw new SkiffError('FUNCTION_START_FAILED', `the stem cell did not answer on its socket: ${(err as Error).message}`, { cause: err });
  }
  if (reply.status !== 200) throw new SkiffError('FUNCTION_START_FAILED', `the stem cell answered GET /ready with ${reply.status}: ${reply.body}`);
}

/**
 * Injects `deployed`'s code into the stem cell whose iofs directory is `iofsDir` and has it load
 * the function over `client` (connected to the stem cell's call socket). Resolves with undefined
 * when `client` now serves the function's calls, or with the host path of the listener a program
 * (fdk style) opened itself.
 */
export async function specializeStemCell(
  iofsDir: string,
  client: ContainerClient,
  deployed: DeployedFunction,
  timeoutMs: number,
  exited: Promise<number>,
  describeExit: (code: number) => string,
): Promise<string | undefined> {
  const codeInside = `${IOFS_TARGET}/${INJECTED_CODE_DIR}`;
  await injectTree(deployed.codeDir, path.join(iofsDir, INJECTED_CODE_DIR));
  const spec = deployed.spec;
  const payload = Buffer.from(JSON.stringify({ functionName: spec.name, handler: `${codeInside}/${spec.handler}`, cwd: codeInside, env: functionEnv(spec, codeInside) }));
  let reply: ControlReply;
  try {
    reply = await client.control('POST', '/specialize', payload, timeoutMs);
  } catch (err) {
    if (err instanceof SkiffError) throw err;
    throw new SkiffError('FUNCTION_START_FAILED', `the stem cell could not be specialized: ${(err as Error).message}`, { cause: err });
  }
  if (reply.status !== 200) {
    let message = reply.body;
    try {
      message = (JSON.parse(reply.body) as { error?: { message?: string } }).error?.message ?? reply.body;
    } catch {
      // not JSON: keep the raw text
    }
    throw new SkiffError('FUNCTION_START_FAILED', `the function could not be loaded: ${message}`);
  }
  const style = (JSON.parse(reply.body) as { style?: string }).style;
  if (style === 'served') return undefined;
  // A program (fdk style) opens the listener itself, after loading.
  return waitForListener(iofsDir, timeoutMs, exited, describeExit);
}
