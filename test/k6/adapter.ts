/**
 * Test helpers around the k6 adapter (run-script.ts): run one k6 script in its own Node process
 * and read back what it did; the routes docs/ documents, as patterns to match requests against.
 */
import { execFile } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { AdapterState } from './shim/state.ts';

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const RUNNER = path.join(REPO, 'test', 'k6', 'run-script.ts');
const RESULT_PREFIX = 'K6_ADAPTER_RESULT ';

export interface AdapterRun extends AdapterState {
  options: { thresholds?: Record<string, unknown> } | null;
  /** The message of an exception from setup() or the script's init code ('' if none). */
  error: string;
}

/** The k6 scripts: every .ts file at the top of k6/. */
export function k6Scripts(): string[] {
  return readdirSync(path.join(REPO, 'k6'))
    .filter((f) => f.endsWith('.ts'))
    .sort()
    .map((f) => path.join('k6', f));
}

/** Runs `script` under the adapter with `env`; resolves with what it did. */
export function runK6Script(script: string, env: Record<string, string>, timeoutMs = 120_000): Promise<AdapterRun> {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, ['--import', 'tsx', RUNNER, script], { cwd: REPO, env: { ...process.env, ...env }, timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      const line = stdout.split('\n').find((l) => l.startsWith(RESULT_PREFIX));
      if (!line) return reject(new Error(`${script}: no adapter result (${err?.message ?? 'no error'})\n${stderr}`));
      resolve(JSON.parse(line.slice(RESULT_PREFIX.length)) as AdapterRun);
    });
  });
}

export interface DocumentedRoute {
  method: string;
  path: string;
  pattern: RegExp;
}

/** Every `METHOD /path` written in backticks in docs/*.md, as a matcher (`:x` and `<x>` are parameters). */
export function documentedRoutes(): DocumentedRoute[] {
  const docsDir = path.join(REPO, 'docs');
  const routes = new Map<string, DocumentedRoute>();
  for (const file of readdirSync(docsDir).filter((f) => f.endsWith('.md'))) {
    for (const match of readFileSync(path.join(docsDir, file), 'utf8').matchAll(/`(ANY|GET|POST|PUT|DELETE|PATCH) (\/[^`\s?]*)[^`]*`/g)) {
      const [, method, route] = match;
      const source = route
        .split('/')
        .map((part) => (part.startsWith(':') ? '[^/]+' : /^<.+>$/.test(part) ? '.+' : part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')))
        .join('/');
      routes.set(`${method} ${route}`, { method, path: route, pattern: new RegExp(`^${source}$`) });
    }
  }
  return [...routes.values()];
}

/** The documented route a request matches, if any. */
export function matchRoute(routes: readonly DocumentedRoute[], method: string, url: string): DocumentedRoute | undefined {
  const { pathname } = new URL(url);
  return routes.find((r) => (r.method === 'ANY' || r.method === method) && r.pattern.test(pathname));
}
