/**
 * `skiff up --tls` serves the same routes over HTTPS, and the `skiff` CLI drives a running
 * instance: deploy, invoke, ls, logs.
 */
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call, eventually, json, REPO_ROOT, startSkiff, type SkiffUnderTest } from './harness.ts';

const run = promisify(execFile);

async function skiffCli(...args: string[]): Promise<string> {
  const { stdout } = await run(process.execPath, ['--import', 'tsx', path.join(REPO_ROOT, 'cli', 'bin.ts'), ...args], { cwd: REPO_ROOT });
  return stdout;
}

describe('skiff over HTTPS, driven by its CLI', () => {
  let skiff: SkiffUnderTest;

  beforeAll(async () => {
    skiff = await startSkiff({ backend: 'chdb', tls: true });
  });

  afterAll(async () => {
    await skiff?.stop();
  });

  it('calls a function over HTTPS with a self-signed certificate', async () => {
    expect(skiff.url.startsWith('https://127.0.0.1:')).toBe(true);
    const reply = await call(`${skiff.url}/function/hello?name=tls`);
    expect(reply.status).toBe(200);
    expect(json(reply)).toMatchObject({ message: expect.stringContaining('tls') });
  });

  it('deploys, invokes, lists and shows logs with the CLI', async () => {
    const deployed = await skiffCli('deploy', 'examples/echo', '--name', 'cli-echo', '--url', skiff.url, '--insecure');
    expect(deployed).toMatch(/name\s+version/);
    expect(deployed).toMatch(/cli-echo\s+1/);

    const invoked = await skiffCli('invoke', 'cli-echo', '--data', 'from the cli', '--include', '--url', skiff.url, '--insecure');
    expect(invoked).toContain('HTTP 200');
    expect(invoked).toContain('from the cli');
    const callId = /x-call-id: (\S+)/.exec(invoked)?.[1];
    expect(callId).toBeTruthy();

    const listed = await skiffCli('ls', '--url', skiff.url, '--insecure');
    expect(listed).toMatch(/cli-echo\s+1\s+node20/);
    expect(listed).toMatch(/echo\s+1\s+node20/);

    const logs = await eventually(async () => {
      const out = await skiffCli('logs', callId!, '--url', skiff.url, '--insecure');
      return out.includes('echo 12 bytes') ? out : undefined;
    }, 20_000, 'the log line through the CLI');
    expect(logs).toContain(callId!);
    expect(logs).toMatch(/stdout echo 12 bytes/);

    const recent = await skiffCli('logs', 'cli-echo', '--url', skiff.url, '--insecure');
    expect(recent).toContain(callId!);
  });

  it('prints storage counters and every process\'s GC pauses and event-loop delay with `skiff stats`', async () => {
    // The executor's figures come with its heartbeats: wait for the first.
    const stats = await eventually(async () => {
      const out = await skiffCli('stats', '--url', skiff.url, '--insecure');
      return /executor \S+\s+[\d.]+ s ago\s+[\d.]+ s/.test(out) ? out : undefined;
    }, 10_000, 'an executor with its runtime in `skiff stats`');
    expect(stats).toMatch(/^table\s+records written\s+batches/m);
    expect(stats).toMatch(/^invocations\s+\d+/m);
    expect(stats).toMatch(/^logs\s+\d+/m);
    expect(stats).toMatch(/^all\s+\d+/m);
    expect(stats).toMatch(/^spool: \d+ batches, \d+ bytes in \//m);
    expect(stats).toMatch(/^gateway\s+[\d.]+ s\s+[\d.]+ \/ [\d.]+ \/ [\d.]+\s+\d+ \/ [\d.]+ \/ [\d.]+/m);
  });
});
