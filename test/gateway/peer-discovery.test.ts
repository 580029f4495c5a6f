/**
 * Gateways finding their peers by name: a control-channel peer entry such as
 * `tcp://skiff-gateway:7200` stands for every gateway replica, is resolved again periodically
 * (replicas joining and leaving), and never includes the gateway itself. Real ZeroMQ sockets on
 * loopback addresses (127.0.0.1–3 share one port, as replicas behind one name do); the resolver is
 * injected where the test needs a name to change, and the system resolver is used for `localhost`.
 */
import { createServer } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { ControlChannel, ownEndpoints, type LookupAll } from '../../bus/index.ts';
import type { PeerChange } from '../../bus/control.ts';
import { ConfigError, loadConfig } from '../../config.ts';

const spec = (name: string) => ({ name, namespace: 'default', version: 1, runtime: 'node20' as const, image: '', codeHash: 'h', handler: 'index.js', env: {}, limits: { memoryMB: 128, timeoutMs: 1000, concurrency: 1 } });

interface TestGateway {
  channel: ControlChannel;
  /** Names of the deploys it heard from peers. */
  heard: Set<string>;
  changes: PeerChange[];
  /** Resolves with the next peer change. */
  nextChange(): Promise<PeerChange>;
}

const open: ControlChannel[] = [];
afterEach(() => {
  for (const channel of open.splice(0)) channel.close();
});

async function gateway(options: { bind: string; peers: string[]; lookup?: LookupAll; resolveIntervalMs?: number }): Promise<TestGateway> {
  const heard = new Set<string>();
  const changes: PeerChange[] = [];
  let waiter: ((change: PeerChange) => void) | undefined;
  const channel = new ControlChannel(
    { bindEndpoint: options.bind, peerEndpoints: options.peers, lookup: options.lookup, resolveIntervalMs: options.resolveIntervalMs },
    {
      onDeploy: (header) => heard.add(header.spec.name),
      onUndeploy: () => {},
      onPeersChanged: (change) => {
        changes.push(change);
        waiter?.(change);
        waiter = undefined;
      },
    },
  );
  open.push(channel);
  await channel.start();
  return { channel, heard, changes, nextChange: () => new Promise((resolve) => (waiter = resolve)) };
}

/** PUB/SUB drops what is published before a subscription is joined: publish until heard. */
async function publishUntilHeard(from: TestGateway, to: TestGateway, name: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!to.heard.has(name)) {
    if (Date.now() > deadline) throw new Error(`${name} not heard by ${to.channel.endpoint}`);
    from.channel.publishDeploy({ spec: spec(name) }, Buffer.from('bundle'));
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** A TCP port free on loopback now (a plain listener, closed at once, so the port is free again). */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

function portOf(endpoint: string): string {
  return endpoint.slice(endpoint.lastIndexOf(':') + 1);
}

describe('gateway peers given by name', () => {
  it('subscribes to every address of the name except its own, follows replicas joining and leaving', async () => {
    // Replicas bind the same port, each on its own loopback address.
    const port = await freePort();
    let replicas = ['127.0.0.1', '127.0.0.2'];
    const lookups: string[] = [];
    const dns: LookupAll = async (host) => {
      lookups.push(host);
      if (host !== 'skiff-gateway') throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${host}`), { code: 'ENOTFOUND' });
      return replicas.map((address) => ({ address, family: 4 }));
    };
    const peers = [`tcp://skiff-gateway:${port}`];
    const a = await gateway({ bind: `tcp://127.0.0.1:${port}`, peers, lookup: dns, resolveIntervalMs: 50 });
    const b = await gateway({ bind: `tcp://127.0.0.2:${port}`, peers, lookup: dns, resolveIntervalMs: 50 });
    expect(a.channel.peers).toEqual([`tcp://127.0.0.2:${port}`]);
    expect(b.channel.peers).toEqual([`tcp://127.0.0.1:${port}`]);
    expect(lookups).toContain('skiff-gateway');
    await publishUntilHeard(a, b, 'from-a');
    await publishUntilHeard(b, a, 'from-b');

    // A third replica joins the name: the others subscribe to it at their next resolution.
    const c = await gateway({ bind: `tcp://127.0.0.3:${port}`, peers, lookup: dns, resolveIntervalMs: 50 });
    const joined = a.nextChange();
    replicas = ['127.0.0.1', '127.0.0.2', '127.0.0.3'];
    expect(await joined).toEqual({ added: [`tcp://127.0.0.3:${port}`], removed: [], peers: [`tcp://127.0.0.2:${port}`, `tcp://127.0.0.3:${port}`] });
    await publishUntilHeard(c, a, 'from-c');

    // The second leaves the name: dropped.
    const left = a.nextChange();
    replicas = ['127.0.0.1', '127.0.0.3'];
    expect(await left).toEqual({ added: [], removed: [`tcp://127.0.0.2:${port}`], peers: [`tcp://127.0.0.3:${port}`] });
    expect(a.channel.peers).toEqual([`tcp://127.0.0.3:${port}`]);
  });

  it('keeps a name that does not resolve now and replaces it with its addresses once it does', async () => {
    const target = await gateway({ bind: 'tcp://127.0.0.1:*', peers: [] });
    const port = portOf(target.channel.endpoint);
    let resolvable = false;
    const dns: LookupAll = async (host) => {
      if (!resolvable) throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${host}`), { code: 'ENOTFOUND' });
      return [{ address: '127.0.0.1', family: 4 }];
    };
    const follower = await gateway({ bind: 'tcp://127.0.0.1:*', peers: [`tcp://later:${port}`], lookup: dns, resolveIntervalMs: 50 });
    expect(follower.channel.peers).toEqual([`tcp://later:${port}`]);
    const resolved = follower.nextChange();
    resolvable = true;
    expect(await resolved).toEqual({ added: [`tcp://127.0.0.1:${port}`], removed: [`tcp://later:${port}`], peers: [`tcp://127.0.0.1:${port}`] });
    await publishUntilHeard(target, follower, 'after-resolving');
  });

  it('resolves only at start without a resolve interval, and not at all for address entries', async () => {
    let lookups = 0;
    const dns: LookupAll = async () => {
      lookups++;
      return [{ address: '127.0.0.9', family: 4 }];
    };
    const byName = await gateway({ bind: '', peers: ['tcp://gw:7200'], lookup: dns });
    expect(byName.channel.peers).toEqual(['tcp://127.0.0.9:7200']);
    await byName.channel.resolvePeers();
    expect(lookups).toBe(2);
    const byAddress = await gateway({ bind: '', peers: ['tcp://127.0.0.8:7200'], lookup: dns, resolveIntervalMs: 10 });
    expect(byAddress.channel.peers).toEqual(['tcp://127.0.0.8:7200']);
    expect(lookups).toBe(2);
  });

  it('resolves real names through the system resolver and hears the gateway behind them, never itself', async () => {
    const target = await gateway({ bind: 'tcp://127.0.0.1:*', peers: [] });
    const port = portOf(target.channel.endpoint);
    const follower = await gateway({ bind: 'tcp://127.0.0.1:*', peers: [`tcp://localhost:${port}`], resolveIntervalMs: 10_000 });
    expect(follower.channel.peers).toContain(`tcp://127.0.0.1:${port}`);
    await publishUntilHeard(target, follower, 'via-localhost');
    // A gateway given its own name (every replica gets the same list) leaves itself out.
    const ownPort = await freePort();
    const self = await gateway({ bind: `tcp://127.0.0.1:${ownPort}`, peers: [`tcp://localhost:${ownPort}`] });
    expect(self.channel.endpoint).toBe(`tcp://127.0.0.1:${ownPort}`);
    expect(self.channel.peers).not.toContain(self.channel.endpoint);
  });
});

describe('own endpoints', () => {
  const interfaces = {
    lo: [{ address: '127.0.0.1', family: 'IPv4' }, { address: '::1', family: 'IPv6' }],
    eth0: [{ address: '10.0.9.3', family: 'IPv4' }],
  } as unknown as Parameters<typeof ownEndpoints>[1];

  it.each([
    ['tcp://10.0.9.3:7200', ['tcp://10.0.9.3:7200']],
    ['tcp://0.0.0.0:7200', ['tcp://127.0.0.1:7200', 'tcp://[::1]:7200', 'tcp://10.0.9.3:7200']],
    ['tcp://[::]:7200', ['tcp://127.0.0.1:7200', 'tcp://[::1]:7200', 'tcp://10.0.9.3:7200']],
    ['ipc:///tmp/control.sock', ['ipc:///tmp/control.sock']],
    ['', []],
  ])('of a publisher bound to %j are %j', (bind, expected) => {
    expect([...ownEndpoints(bind, interfaces)]).toEqual(expected);
  });
});

describe('bus.peerResolveIntervalMs', () => {
  it('defaults to 10 s and is set by SKIFF_PEER_RESOLVE_INTERVAL_MS', () => {
    expect(loadConfig({}, {}).bus.peerResolveIntervalMs).toBe(10_000);
    expect(loadConfig({}, { SKIFF_PEER_RESOLVE_INTERVAL_MS: '2500' }).bus.peerResolveIntervalMs).toBe(2500);
  });

  it.each([0, -1, 1.5])('rejects %j naming the option', (value) => {
    expect(() => loadConfig({ bus: { peerResolveIntervalMs: value } } as never, {})).toThrow(ConfigError);
    expect(() => loadConfig({ bus: { peerResolveIntervalMs: value } } as never, {})).toThrow('bus.peerResolveIntervalMs must be a positive integer');
  });
});
