import { describe, expect, it } from 'vitest';
import { hasNamedGateways, resolveGatewayEndpoints, type LookupAll } from '../../executor/gateway-discovery.ts';

const fakeDns: LookupAll = async (host) => {
  if (host === 'tasks.gateway') return [{ address: '10.0.9.3', family: 4 }, { address: '10.0.9.4', family: 4 }, { address: 'fd00::5', family: 6 }];
  if (host === 'gone') throw Object.assign(new Error('getaddrinfo ENOTFOUND gone'), { code: 'ENOTFOUND' });
  return [];
};

describe('gateway discovery', () => {
  it('expands a gateway name to one endpoint per address', async () => {
    expect(await resolveGatewayEndpoints(['tcp://tasks.gateway:7100'], fakeDns)).toEqual([
      'tcp://10.0.9.3:7100',
      'tcp://10.0.9.4:7100',
      'tcp://[fd00::5]:7100',
    ]);
  });

  it('keeps addresses, other transports and names that do not resolve now, without duplicates', async () => {
    expect(await resolveGatewayEndpoints(['tcp://127.0.0.1:7100', 'ipc:///tmp/gw.sock', 'tcp://gone:7100', 'tcp://127.0.0.1:7100'], fakeDns)).toEqual([
      'tcp://127.0.0.1:7100',
      'ipc:///tmp/gw.sock',
      'tcp://gone:7100',
    ]);
  });

  it('resolves real names through the system resolver', async () => {
    const endpoints = await resolveGatewayEndpoints(['tcp://localhost:7100']);
    expect(endpoints).toContain('tcp://127.0.0.1:7100');
  });

  it('says when there are names worth resolving again', () => {
    expect(hasNamedGateways(['tcp://127.0.0.1:1', 'tcp://[::1]:2'])).toBe(false);
    expect(hasNamedGateways(['tcp://127.0.0.1:1', 'tcp://gw:2'])).toBe(true);
  });
});

describe('an executor given a gateway name', () => {
  it('connects to the gateway behind the name', async () => {
    const { mkdtempSync } = await import('node:fs');
    const os = await import('node:os');
    const path = await import('node:path');
    const Dockerode = (await import('dockerode')).default;
    const { BusRouter } = await import('../../bus/index.ts');
    const { loadConfig } = await import('../../config.ts');
    const { ensureRuntimeImage, startExecutor } = await import('../../executor/index.ts');
    const docker = new Dockerode();
    const runtimeImage = await ensureRuntimeImage(docker, {});
    let resolveUp!: (nodeId: string) => void;
    const up = new Promise<string>((r) => (resolveUp = r));
    const router = new BusRouter({ bindEndpoint: 'tcp://127.0.0.1:*', heartbeatIntervalMs: 100, heartbeatMissLimit: 3 }, { onMessage: () => {}, onPeerUp: (p) => resolveUp(p.hello.nodeId) });
    const endpoint = await router.bind();
    const port = endpoint.slice(endpoint.lastIndexOf(':') + 1);
    const nodeId = `discovery-${process.pid}-${Date.now()}`;
    const config = loadConfig({
      dataDir: mkdtempSync(path.join(os.tmpdir(), 'skiff-discovery-')),
      logLevel: 'silent',
      executor: { runtimeImage, nodeId, stemCells: 0, maxStemCells: 0, gatewayEndpoints: [`tcp://localhost:${port}`], gatewayResolveIntervalMs: 200 },
    }, {});
    const executor = await startExecutor(config, { docker });
    try {
      expect(await up).toBe(nodeId);
    } finally {
      await executor.close();
      router.close();
    }
  });
});
