import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { Dealer } from 'zeromq';
import { BusDealer, BusRouter, creditsNow, encodeFrames, generateCurveKeyPair, LOG_ROW_COLUMNS, LogRowEncoder, MessageType, type BusMessage, type CurveServerOptions, type ExecutorPeer } from '../../bus/index.ts';

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

  it('takes INVOKEs still in transit off an executor\'s credit', async () => {
    const up = deferred<ExecutorPeer>();
    const got = deferred<void>();
    const credits: number[] = [];
    const router = makeRouter({ onPeerUp: (p) => up.resolve(p), onCredit: (p) => credits.push(p.credits) });
    const endpoint = await router.bind();
    let received = 0;
    const dealer = makeDealer(endpoint, {
      onMessage: (m) => {
        if (m.type === MessageType.INVOKE && ++received === 5) got.resolve();
      },
    });
    dealer.start();
    const peer = await up.promise;
    const invoke = (id: string) =>
      router.send(peer.peerId, MessageType.INVOKE, { id, fn: { name: 'f', version: 1 }, method: 'POST', path: '/', query: '', headers: {}, deadlineMs: Date.now() + 1000, traceparent: '', receivedAtMs: Date.now() }, Buffer.alloc(0));
    for (let i = 0; i < 5; i++) expect(invoke(`c${i}`)).toBe(true);
    expect(peer.invokesSent).toBe(5);
    await got.promise;
    expect(dealer.invokesReceived).toBe(5);
    // A CREDIT written when only 3 of the 5 had arrived: the other 2 are still owed.
    dealer.send(MessageType.CREDIT, { credits: 8, invokesReceived: 3 });
    // One written after all 5 arrived counts none as in transit.
    dealer.send(MessageType.CREDIT, { credits: 3, invokesReceived: 5 });
    // An executor that does not report the count is taken at its word.
    dealer.send(MessageType.CREDIT, { credits: 7 });
    await vi.waitFor(() => expect(credits).toEqual([6, 3, 7]));
  });

  it('computes the credit left after calls in transit', () => {
    expect(creditsNow({ invokesSent: 10 }, { credits: 4, invokesReceived: 7 })).toBe(1);
    expect(creditsNow({ invokesSent: 10 }, { credits: 2, invokesReceived: 7 })).toBe(0);
    // A count from before a re-HELLO can exceed what this gateway sent since: nothing is owed.
    expect(creditsNow({ invokesSent: 1 }, { credits: 4, invokesReceived: 9 })).toBe(4);
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

  it('still records the LOGS a dropped executor sent, but not its RESULTs', async () => {
    const up = deferred<ExecutorPeer>();
    const down = deferred<void>();
    const delivered: MessageType[] = [];
    const logsArrived = deferred<void>();
    const router = new BusRouter(
      // A wider silence window than the others: the LOGS below must arrive within it after the drop.
      { bindEndpoint: 'tcp://127.0.0.1:*', heartbeatIntervalMs: 200, heartbeatMissLimit: 3 },
      {
        onPeerUp: (p) => up.resolve(p),
        onPeerDown: () => down.resolve(),
        onMessage: (_p, m) => {
          delivered.push(m.type);
          if (m.type === MessageType.LOGS) logsArrived.resolve();
        },
      },
    );
    closers.push(() => router.close());
    const endpoint = await router.bind();
    const late = new Dealer({ routingId: 'late-executor', linger: 0 });
    closers.push(() => late.close());
    late.connect(endpoint);
    await late.send(encodeFrames(MessageType.HELLO, { nodeId: 'late', pid: 1, maxInFlight: 1, startedAtMs: Date.now() }));
    await up.promise;
    await down.promise;
    // Sent before the gateway's verdict reached it: the result of a call that has already failed
    // (and may run elsewhere), then the lines that call wrote.
    await late.send(encodeFrames(MessageType.RESULT, { id: 'x1', status: 200, headers: {}, errorCode: '', errorMessage: '', start: 'warm', containerId: 'c1', initUs: 0, runUs: 5, queueUs: 0 }));
    const rows = new LogRowEncoder('late').encode({ invocationId: 'x1', function: 'f', containerId: 'c1', timeMs: Date.now(), stream: 'stdout', line: 'hello', truncated: false });
    await late.send(encodeFrames(MessageType.LOGS, { columns: [...LOG_ROW_COLUMNS] }, Buffer.from(rows)));
    await logsArrived.promise;
    expect(delivered).toEqual([MessageType.LOGS]);
    expect(router.peers()).toHaveLength(0);
  });

  it('re-introduces an executor to a gateway that restarted on the same endpoint', async () => {
    const first = deferred<ExecutorPeer>();
    const router = makeRouter({ onPeerUp: (p) => first.resolve(p) });
    const endpoint = await router.bind();
    const lost = deferred<void>();
    let connections = 0;
    const connected = deferred<void>();
    const reconnected = deferred<void>();
    const dealer = makeDealer(endpoint, { onLost: () => lost.resolve(), onConnected: () => { connections++; if (connections === 1) connected.resolve(); if (connections === 2) reconnected.resolve(); } });
    dealer.start();
    await first.promise;
    // Only a dealer that heard the gateway can lose it.
    await connected.promise;
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


const DEALER_PROCESS = path.join(path.dirname(fileURLToPath(import.meta.url)), 'dealer-process.ts');
/**
 * Heartbeats so slow that the silence deadline (3 intervals) lies past the test timeout: a peer
 * that is dropped at all was dropped because its connection went.
 */
const SLOW_HEARTBEAT_MS = 60_000;

/** A BusDealer in a child process (test/bus/dealer-process.ts); resolves once the gateway answered it. */
async function dealerProcess(endpoint: string, nodeId: string, curve?: object): Promise<ChildProcess> {
  const child = spawn(process.execPath, ['--import', 'tsx', DEALER_PROCESS], {
    env: { ...process.env, SKIFF_TEST_ENDPOINT: endpoint, SKIFF_TEST_NODE_ID: nodeId, SKIFF_TEST_HEARTBEAT_MS: String(SLOW_HEARTBEAT_MS), SKIFF_TEST_CURVE: curve ? JSON.stringify(curve) : '' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  closers.push(() => child.kill('SIGKILL'));
  const output: string[] = [];
  child.stderr?.on('data', (chunk: Buffer) => output.push(chunk.toString()));
  await new Promise<void>((resolve, reject) => {
    child.stdout?.on('data', (chunk: Buffer) => {
      if (chunk.toString().includes('connected')) resolve();
    });
    child.once('exit', (code) => reject(new Error(`dealer process ${nodeId} exited (${code}) before connecting: ${output.join('')}`)));
  });
  return child;
}

describe.each([
  { bus: 'plaintext', curve: false },
  { bus: 'CURVE', curve: true },
])('a killed executor process on a $bus bus', ({ curve }) => {
  it('is dropped because its connection dropped, while the executor beside it stays', async () => {
    const serverKeys = generateCurveKeyPair();
    const clientKeys = generateCurveKeyPair();
    const curveServer: CurveServerOptions | undefined = curve ? { ...serverKeys, allowedClientKeys: [clientKeys.publicKey] } : undefined;
    const curveClient = curve ? { ...clientKeys, serverPublicKey: serverKeys.publicKey } : undefined;
    const events: string[] = [];
    const down = deferred<{ nodeId: string; reason: string }>();
    const router = new BusRouter(
      { bindEndpoint: 'tcp://127.0.0.1:*', heartbeatIntervalMs: SLOW_HEARTBEAT_MS, heartbeatMissLimit: 3, curve: curveServer },
      {
        onMessage: () => {},
        onPeerUp: (p) => events.push(`up ${p.hello.nodeId}`),
        onPeerDown: (p, reason) => {
          events.push(`down ${p.hello.nodeId}`);
          down.resolve({ nodeId: p.hello.nodeId, reason });
        },
      },
    );
    closers.push(() => router.close());
    const endpoint = await router.bind();
    const doomed = await dealerProcess(endpoint, 'doomed', curveClient);
    await dealerProcess(endpoint, 'survivor', curveClient);
    expect(router.peers().map((p) => p.hello.nodeId).sort()).toEqual(['doomed', 'survivor']);

    // SIGKILL: no BYE, the kernel closes the TCP connection.
    doomed.kill('SIGKILL');
    const lost = await down.promise;
    expect(lost.nodeId).toBe('doomed');
    expect(lost.reason).toContain('connection dropped');
    expect(router.disconnects).toBeGreaterThanOrEqual(1);
    expect(router.peers().map((p) => p.hello.nodeId)).toEqual(['survivor']);
    expect(events.filter((e) => e.startsWith('down'))).toEqual(['down doomed']);
  });
});

describe('an executor whose gateway connection drops', () => {
  it('counts the gateway lost at once and says HELLO again as soon as it has reconnected', async () => {
    const first = deferred<ExecutorPeer>();
    const router = new BusRouter({ bindEndpoint: 'tcp://127.0.0.1:*', heartbeatIntervalMs: SLOW_HEARTBEAT_MS, heartbeatMissLimit: 3 }, { onMessage: () => {}, onPeerUp: (p) => first.resolve(p) });
    closers.push(() => router.close());
    const endpoint = await router.bind();
    const lost = deferred<void>();
    const credits: number[] = [];
    const connected = deferred<void>();
    const reconnected = deferred<void>();
    const dealer: BusDealer = new BusDealer(
      { endpoint, hello: { nodeId: 'node-b', pid: process.pid, maxInFlight: 4, startedAtMs: Date.now() }, heartbeatIntervalMs: SLOW_HEARTBEAT_MS, heartbeatMissLimit: 3, inFlight: () => 0 },
      {
        onMessage: () => {},
        onLost: () => lost.resolve(),
        onConnected: () => {
          credits.push(dealer.send(MessageType.CREDIT, { credits: 4 }) ? 4 : 0);
          if (credits.length === 1) connected.resolve();
          if (credits.length === 2) reconnected.resolve();
        },
      },
    );
    closers.push(() => dealer.close());
    dealer.start();
    await first.promise;
    await connected.promise;
    // With 60 s heartbeats neither side's silence deadline can pass during the test: what
    // happens here happens because the connection dropped.
    router.close();
    await lost.promise;
    expect(dealer.connected).toBe(false);
    const restarted = deferred<ExecutorPeer>();
    const credited = deferred<number>();
    const second = new BusRouter({ bindEndpoint: endpoint, heartbeatIntervalMs: SLOW_HEARTBEAT_MS, heartbeatMissLimit: 3 }, { onMessage: () => {}, onPeerUp: (p) => restarted.resolve(p), onCredit: (p) => credited.resolve(p.credits) });
    closers.push(() => second.close());
    await second.bind();
    expect((await restarted.promise).hello.nodeId).toBe('node-b');
    await reconnected.promise;
    expect(await credited.promise).toBe(4);
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
