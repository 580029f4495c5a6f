/**
 * Specializing a stem cell for one function without starting a container: the function's
 * extracted bundle is injected into the stem cell's iofs directory (hard links when that is safe,
 * else copies; read-only for the function user), then one `POST /specialize` on the stem cell's
 * control socket makes the bootstrap load it and publish its listener.
 */
import { copyFile, link, mkdir, readdir, readlink, symlink } from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import { SkiffError } from '../errors.ts';
import { functionEnv, IOFS_TARGET, INJECTED_CODE_DIR } from './container-spec.ts';
import { resolveListener, STEM_FILE, waitForListener } from './listener.ts';
import type { DeployedFunction } from './registry.ts';
import { RUNTIME_USER } from './runtime/index.ts';

/**
 * Hard links share the bundle cache's inodes: only safe when the function user cannot write them,
 * i.e. the executor does not itself run as that user (then the files are not the function's).
 */
const LINK_SAFE = process.getuid?.() !== RUNTIME_USER.uid;

/** Copies (or hard-links) the tree `src` to `dest` (which must not exist). */
export async function injectTree(src: string, dest: string, useLinks = LINK_SAFE): Promise<void> {
  await mkdir(dest, { mode: 0o755 });
  for (const entry of await readdir(src, { withFileTypes: true })) {
    const from = path.join(src, entry.name);
    const to = path.join(dest, entry.name);
    if (entry.isDirectory()) await injectTree(from, to, useLinks);
    else if (entry.isSymbolicLink()) await symlink(await readlink(from), to);
    else if (entry.isFile()) {
      if (useLinks) await link(from, to).catch(() => copyFile(from, to));
      else await copyFile(from, to);
    }
  }
}

interface SpecializeReply {
  status: number;
  body: string;
}

/** One POST on the stem cell's control socket. */
function postSpecialize(socketPath: string, payload: Buffer, timeoutMs: number): Promise<SpecializeReply> {
  return new Promise((resolve, reject) => {
    const req = http.request({ socketPath, path: '/specialize', method: 'POST', headers: { 'content-type': 'application/json', 'content-length': payload.length }, agent: false, timeout: timeoutMs });
    req.once('timeout', () => req.destroy(new SkiffError('FUNCTION_START_FAILED', `the stem cell did not load the function within executor.startTimeoutMs (${timeoutMs} ms)`)));
    req.once('error', reject);
    req.once('response', (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.once('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
      res.once('error', reject);
    });
    req.end(payload);
  });
}

/**
 * Injects `deployed`'s code into the stem cell whose iofs directory is `iofsDir` and has it load
 * the function; resolves with the host path of the function's listener socket.
 */
export async function specializeStemCell(
  iofsDir: string,
  deployed: DeployedFunction,
  timeoutMs: number,
  exited: Promise<number>,
  describeExit: (code: number) => string,
): Promise<string> {
  const codeInside = `${IOFS_TARGET}/${INJECTED_CODE_DIR}`;
  await injectTree(deployed.codeDir, path.join(iofsDir, INJECTED_CODE_DIR));
  const spec = deployed.spec;
  const payload = Buffer.from(JSON.stringify({ functionName: spec.name, handler: `${codeInside}/${spec.handler}`, cwd: codeInside, env: functionEnv(spec, codeInside) }));
  let reply: SpecializeReply;
  try {
    reply = await postSpecialize(await resolveListener(iofsDir, STEM_FILE), payload, timeoutMs);
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
  if (style === 'served') return resolveListener(iofsDir);
  // A program (fdk style) opens the listener itself, after loading.
  return waitForListener(iofsDir, timeoutMs, exited, describeExit);
}
