import { afterEach, describe, expect, it } from 'vitest';
import { Dealer } from 'zeromq';
import { BusDealer, BusRouter, encodeFrames, MessageType, type BusMessage, type ExecutorPeer } from '../../bus/index.ts';

const HEARTBEAT_MS = 50;

function deferred<T>(): { promise: Promise<T>; resolve: (value: T) => void } {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

const closers: Array<() => unknown> = [];
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
});

function makeRouter(handlers: Partial<ConstructorParameters<typeof BusRouter>[1]> = {}, bindEndpoint = 'tcp://127.0.0.1:*'): BusRouter {
  const router = new BusRouter(
    { bindEndpoint, heartbeatIntervalMs: HEARTBEAT_MS, heartbeatMissLimit: 3 },
    { onMessage: () => {}, ...handlers },
  );
  closers.push(() => router.close());
  return router;
}

function makeDealer(endpoint: string, handlers: Partial<ConstructorParameters<typeof BusDealer>[1]> = {}): BusDealer {
  const dealer = new BusDealer(
    { endpoint, hello: { nodeId: 'node-a', pid: process.pid, maxInFlight: 8, startedAtMs: Date.now() }, heartbeatIntervalMs: HEARTBEAT_MS, heartbeatMissLimit: 3, inFlight: () => 0 },
    { onMessage: () => {}, ...handlers },
  );
  closers.push(() => dealer.close());
  return dealer;
}

describe('bus router and dealer over real ZeroMQ sockets', () => {
  it('introduces an executor with HELLO and carries its credit', async () => {
    const up = deferred<ExecutorPeer>();
    const credit = deferred<number>();
    const router = makeRouter({ onPeerUp: (p) => up.resolve(p), onCredit: (p) => credit.resolve(p.credits) });
    const endpoint = await router.bind();
    const dealer = makeDealer(endpoint, { onConnected: () => dealer.send(MessageType.CREDIT, { credits: 8, warm: { echo: 2 }, stemCells: { node20: 1 }, memoryFreeMb: 512 }) });
    dealer.start();
    const peer = await up.promise;
    expect(peer.hello.nodeId).toBe('node-a');
    expect(await credit.promise).toBe(8);
    expect(peer).toMatchObject({ warm: { echo: 2 }, stemCells: { node20: 1 }, memoryFreeMb: 512 });
    expect(router.peers()).toHaveLength(1);
  });

  it('delivers INVOKE to the executor and RESULT back with bodies intact', async () => {
    const up = deferred<ExecutorPeer>();
    const result = deferred<BusMessage>();
    const router = makeRouter({ onPeerUp: (p) => up.resolve(p), onMessage: (_p, m) => result.resolve(m) });
    const endpoint = await router.bind();
    const dealer = makeDealer(endpoint, {
      onMessage: (m) => {
        if (m.type !== MessageType.INVOKE) return;
        dealer.send(MessageType.RESULT, { id: m.header.id, status: 200, headers: {}, errorCode: '', errorMessage: '', start: 'warm', containerId: 'c1', initUs: 0, runUs: 5, queueUs: 0 }, Buffer.concat([m.body, m.body]));
      },
    });
    dealer.start();
    const peer = await up.promise;
    const body = Buffer.from([9, 0, 9, 255]);
    router.send(peer.peerId, MessageType.INVOKE, { id: 'x1', fn: { name: 'f', version: 1 }, method: 'POST', path: '/', query: '', headers: {}, deadlineMs: Date.now() + 1000, traceparent: '', receivedAtMs: Date.now() }, body);
    const message = await result.promise;
    expect(message.type).toBe(MessageType.RESULT);
    expect(message.header).toMatchObject({ id: 'x1', status: 200 });
    expect([...message.body]).toEqual([9, 0, 9, 255, 9, 0, 9, 255]);
  });

  it('drops an executor at once when it says BYE', async () => {
    const up = deferred<ExecutorPeer>();
    const down = deferred<string>();
    const router = makeRouter({ onPeerUp: (p) => up.resolve(p), onPeerDown: (_p, reason) => down.resolve(reason) });
    const dealer = makeDealer(await router.bind());
    dealer.start();
    await up.promise;
    await dealer.close('test over');
    expect(await down.promise).toContain('BYE');
    expect(router.peers()).toHaveLength(0);
  });

  it('declares a silent executor lost after the missed heartbeats', async () => {
    const up = deferred<ExecutorPeer>();
    const down = deferred<string>();
    const router = makeRouter({ onPeerUp: (p) => up.resolve(p), onPeerDown: (_p, reason) => down.resolve(reason) });
    const endpoint = await router.bind();
    // A raw DEALER that says HELLO and then nothing: a frozen executor.
    const silent = new Dealer({ linger: 0 });
    closers.push(() => silent.close());
    silent.connect(endpoint);
    await silent.send(encodeFrames(MessageType.HELLO, { nodeId: 'frozen', pid: 1, maxInFlight: 1, startedAtMs: Date.now() }));
    await up.promise;
    const silencedAt = Date.now();
    expect(await down.promise).toContain('no heartbeat');
    expect(Date.now() - silencedAt).toBeGreaterThanOrEqual(HEARTBEAT_MS * 2);
    expect(router.peers()).toHaveLength(0);
  });

  it('re-introduces an executor to a gateway that restarted on the same endpoint', async () => {
    const first = deferred<ExecutorPeer>();
    const router = makeRouter({ onPeerUp: (p) => first.resolve(p) });
    const endpoint = await router.bind();
    const lost = deferred<void>();
    let connections = 0;
    const reconnected = deferred<void>();
    const dealer = makeDealer(endpoint, { onLost: () => lost.resolve(), onConnected: () => { connections++; if (connections === 2) reconnected.resolve(); } });
    dealer.start();
    await first.promise;
    router.close();
    await lost.promise;
    expect(dealer.connected).toBe(false);
    const second = deferred<ExecutorPeer>();
    const restarted = makeRouter({ onPeerUp: (p) => second.resolve(p) }, endpoint);
    await restarted.bind();
    expect((await second.promise).hello.nodeId).toBe('node-a');
    await reconnected.promise;
    expect(dealer.connected).toBe(true);
  });
});


describe('control channel between gateways', () => {
  it('carries a deploy and an undeploy to peer gateways but not back to its publisher', async () => {
    const { ControlChannel } = await import('../../bus/index.ts');
    const deploys: Array<{ from: string; name: string; code: string }> = [];
    const undeploy = deferred<string>();
    const secondGotDeploy = deferred<void>();
    const a = new ControlChannel({ bindEndpoint: 'tcp://127.0.0.1:*', peerEndpoints: [] }, {
      onDeploy: (h, code) => deploys.push({ from: 'a', name: h.spec.name, code: code.toString() }),
      onUndeploy: () => {},
    });
    closers.push(() => a.close());
    const endpointA = await a.start();
    const b = new ControlChannel({ bindEndpoint: 'tcp://127.0.0.1:*', peerEndpoints: [endpointA] }, {
      onDeploy: (h, code) => { deploys.push({ from: 'b', name: h.spec.name, code: code.toString() }); secondGotDeploy.resolve(); },
      onUndeploy: (h) => undeploy.resolve(h.name),
    });
    closers.push(() => b.close());
    await b.start();
    a.addPeer(b.endpoint);
    const spec = { name: 'fn', namespace: 'default', version: 2, runtime: 'node20' as const, image: '', codeHash: 'h', handler: 'index.js', env: {}, limits: { memoryMB: 128, timeoutMs: 1000, concurrency: 1 } };
    // PUB/SUB drops what is published before the subscription is joined: publish until heard.
    const deadline = Date.now() + 5_000;
    let heard = false;
    void secondGotDeploy.promise.then(() => (heard = true));
    while (!heard && Date.now() < deadline) {
      a.publishDeploy({ spec }, Buffer.from('bundle'));
      await new Promise((r) => setTimeout(r, 20));
    }
    expect(deploys.find((d) => d.from === 'b')).toEqual({ from: 'b', name: 'fn', code: 'bundle' });
    expect(deploys.some((d) => d.from === 'a')).toBe(false);
    a.publishUndeploy({ name: 'fn' });
    expect(await undeploy.promise).toBe('fn');
  });
});
