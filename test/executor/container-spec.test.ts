import { describe, expect, it } from 'vitest';
import type { FunctionSpec } from '../../bus/index.ts';
import { buildContainerSpec, buildStemCellSpec } from '../../executor/container-spec.ts';
import { toCreateOptions } from '../../executor/docker-driver.ts';

const hardening = { pidsLimit: 128, tmpfsMb: 64, defaultCpus: 1, functionNetwork: 'bridge' };
const place = { nodeId: 'node-1', iofsDir: '/data/iofs/abc', codeDir: '/data/bundles/h', runtimeImage: 'skiff/runtime-node20:test', hardening };

function spec(overrides: Partial<FunctionSpec> = {}): FunctionSpec {
  return { name: 'echo', namespace: '', version: 7, runtime: 'node20', image: '', codeHash: 'h', handler: 'index.js', env: { GREETING: 'hi', FN_LISTENER: 'nope' }, limits: { memoryMB: 64, timeoutMs: 1000, concurrency: 1 }, ...overrides };
}

describe('function container spec', () => {
  it('builds hardened Docker create options with the http-stream environment', () => {
    const options = toCreateOptions(buildContainerSpec(spec(), place));
    expect(options.Image).toBe('skiff/runtime-node20:test');
    expect(options.User).toBe('1000');
    expect(options.name).toMatch(/^skiff-echo-[0-9a-f]{8}$/);
    expect(options.Labels).toEqual({ 'skiff.managed': 'true', 'skiff.node': 'node-1', 'skiff.function': 'echo', 'skiff.version': '7' });
    expect(options.Env).toEqual(
      expect.arrayContaining(['GREETING=hi', 'FN_LISTENER=unix:/tmp/iofs/lsnr.sock', 'FN_FORMAT=http-stream', 'SKIFF_HANDLER=/function/index.js', 'SKIFF_FUNCTION_NAME=echo']),
    );
    expect(options.Env).not.toContain('FN_LISTENER=nope');
    // No network: not even a libnetwork sandbox.
    expect(options.NetworkDisabled).toBe(true);
    expect(options.HostConfig).toMatchObject({
      NetworkMode: 'none',
      Memory: 64 * 1024 * 1024,
      MemorySwap: 64 * 1024 * 1024,
      CapDrop: ['ALL'],
      SecurityOpt: ['no-new-privileges'],
      ReadonlyRootfs: true,
      AutoRemove: false,
      Binds: ['/data/iofs/abc:/tmp/iofs:rw', '/data/bundles/h:/function:ro'],
    });
    expect(options.HostConfig?.Tmpfs?.['/tmp']).toMatch(/size=67108864,/);
    expect(options.HostConfig).toMatchObject({ PidsLimit: 128, CpuPeriod: 100_000, CpuQuota: 100_000 });
    expect(options.HostConfig?.Binds?.some((b) => b.includes('docker.sock'))).toBe(false);
  });

  it('gives a function its own CPU limit and network only when it asks for it', () => {
    const options = toCreateOptions(buildContainerSpec(spec({ network: true, limits: { memoryMB: 256, timeoutMs: 1000, concurrency: 1, cpus: 0.5 } }), place));
    expect(options.HostConfig).toMatchObject({ NetworkMode: 'bridge', Memory: 256 * 1024 * 1024, MemorySwap: 256 * 1024 * 1024, CpuQuota: 50_000 });
    expect(options.NetworkDisabled).toBeUndefined();
  });

  it('builds a stem cell: the runtime in stem mode, no code mounted, hardened like a function', () => {
    const options = toCreateOptions(buildStemCellSpec({ runtime: 'node20', memoryMb: 128, cpus: 1 }, place));
    expect(options.name).toMatch(/^skiff-stemcell-node20-[0-9a-f]{8}$/);
    expect(options.Labels).toEqual({ 'skiff.managed': 'true', 'skiff.node': 'node-1', 'skiff.stemcell': 'node20' });
    expect(options.NetworkDisabled).toBe(true);
    expect(options.Env).toEqual(expect.arrayContaining(['SKIFF_STEMCELL=1', 'FN_LISTENER=unix:/tmp/iofs/lsnr.sock']));
    expect(options.Env?.some((e) => e.startsWith('SKIFF_HANDLER='))).toBe(false);
    expect(options.HostConfig).toMatchObject({
      NetworkMode: 'none',
      Memory: 128 * 1024 * 1024,
      MemorySwap: 128 * 1024 * 1024,
      CapDrop: ['ALL'],
      SecurityOpt: ['no-new-privileges'],
      ReadonlyRootfs: true,
      Binds: ['/data/iofs/abc:/tmp/iofs:rw'],
    });
    expect(options.User).toBe('1000');
  });

  it('runs an image function from its own image without mounting code', () => {
    const options = toCreateOptions(buildContainerSpec(spec({ runtime: 'image', image: 'acme/fn:1', codeHash: '' }), { ...place, codeDir: '' }));
    expect(options.Image).toBe('acme/fn:1');
    expect(options.HostConfig?.Binds).toEqual(['/data/iofs/abc:/tmp/iofs:rw']);
    expect(options.Env?.some((e) => e.startsWith('SKIFF_HANDLER='))).toBe(false);
  });
});
