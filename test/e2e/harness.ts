/**
 * End-to-end test helpers: a real Skiff (`skiff up` as a child process: gateway + storage in
 * it, executor as its child, real Docker and ZeroMQ) and HTTP calls against it.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Agent, request } from 'undici';
import { spawnSkiff, type SpawnedSkiff } from '../../cli/spawn.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const CLICKHOUSE_TEST_URL = process.env.SKIFF_TEST_CLICKHOUSE_URL ?? 'http://127.0.0.1:8123';

export type Backend = 'chdb' | 'server';
export type SkiffUnderTest = SpawnedSkiff;

export interface StartOptions {
  backend: Backend;
  tls?: boolean;
  env?: Record<string, string>;
  examples?: boolean;
}

/** Runs a real `skiff up` with the chosen storage backend. */
export function startSkiff(options: StartOptions): Promise<SkiffUnderTest> {
  return spawnSkiff({
    clickhouseUrl: options.backend === 'server' ? CLICKHOUSE_TEST_URL : undefined,
    tls: options.tls,
    examples: options.examples,
    env: options.env,
  });
}

export interface Reply {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
}

const insecureAgent = new Agent({ connect: { rejectUnauthorized: false } });

/** One HTTP call; accepts self-signed certificates (the `--tls` instance). */
export async function call(url: string, init: { method?: string; body?: Buffer | string; headers?: Record<string, string> } = {}): Promise<Reply> {
  const res = await request(url, { method: (init.method ?? 'GET') as 'GET', body: init.body, headers: init.headers, dispatcher: insecureAgent });
  const body = Buffer.from(await res.body.arrayBuffer());
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(res.headers)) if (v !== undefined) headers[k] = Array.isArray(v) ? v.join(', ') : v;
  return { status: res.statusCode, headers, body };
}

export function json<T = Record<string, unknown>>(reply: Reply): T {
  return JSON.parse(reply.body.toString('utf8')) as T;
}

/** Polls `probe` until it returns a value (records reach storage in batches), bounded in time. */
export async function eventually<T>(probe: () => Promise<T | undefined>, timeoutMs = 15_000, what = 'condition'): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** Fetches an invocation record once storage has it. */
export function invocationRecord(base: string, id: string): Promise<Record<string, unknown> & { logs: Array<{ line: string; stream: string }> }> {
  return eventually(async () => {
    const reply = await call(`${base}/system/invocations/${id}`);
    return reply.status === 200 ? json<Record<string, unknown> & { logs: Array<{ line: string; stream: string }> }>(reply) : undefined;
  }, 15_000, `invocation ${id} in storage`);
}

export const REPO_ROOT = ROOT;
