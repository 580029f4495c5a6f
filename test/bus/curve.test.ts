import { afterEach, describe, expect, it } from 'vitest';
import { Dealer } from 'zeromq';
import { BusDealer, BusRouter, encodeFrames, generateCurveKeyPair, isCurveKey, MessageType, z85Encode, ZapAuthenticator, type ExecutorPeer } from '../../bus/index.ts';

const HEARTBEAT_MS = 50;
const closers: Array<() => unknown> = [];
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
});

function deferred<T>(): { promise: Promise<T>; resolve: (value: T) => void } {
  let resolve!: (value: T) => void;
  return { promise: new Promise<T>((r) => (resolve = r)), resolve };
}

function dealerFor(endpoint: string, curve: ConstructorParameters<typeof BusDealer>[0]['curve'], nodeId: string): BusDealer {
  const dealer = new BusDealer(
    { endpoint, hello: { nodeId, pid: process.pid, maxInFlight: 1, startedAtMs: Date.now() }, heartbeatIntervalMs: HEARTBEAT_MS, heartbeatMissLimit: 3, inFlight: () => 0, curve },
    { onMessage: () => {} },
  );
  closers.push(() => dealer.close());
  return dealer;
}

describe('CURVE on the bus', () => {
  it('generates z85 key pairs and encodes binary keys the way libzmq does', () => {
    const pair = generateCurveKeyPair();
    expect(isCurveKey(pair.publicKey)).toBe(true);
    expect(isCurveKey(pair.secretKey)).toBe(true);
    expect(isCurveKey('too short')).toBe(false);
    // The Z85 spec's test vector: 8 bytes → "HelloWorld".
    expect(z85Encode(Uint8Array.from([0x86, 0x4f, 0xd2, 0x6f, 0xb5, 0x59, 0xf7, 0x5b]))).toBe('HelloWorld');
  });

  it('lets an executor with an allowed key in and refuses one with an unknown key', async () => {
    const server = generateCurveKeyPair();
    const allowed = generateCurveKeyPair();
    const stranger = generateCurveKeyPair();
    const up = deferred<ExecutorPeer>();
    const seen: string[] = [];
    const router = new BusRouter(
      { bindEndpoint: 'tcp://127.0.0.1:*', heartbeatIntervalMs: HEARTBEAT_MS, heartbeatMissLimit: 3, curve: { ...server, allowedClientKeys: [allowed.publicKey] } },
      { onMessage: () => {}, onPeerUp: (p) => { seen.push(p.hello.nodeId); if (p.hello.nodeId === 'allowed') up.resolve(p); } },
    );
    closers.push(() => router.close());
    const endpoint = await router.bind();

    dealerFor(endpoint, { ...stranger, serverPublicKey: server.publicKey }, 'stranger').start();
    dealerFor(endpoint, { ...allowed, serverPublicKey: server.publicKey }, 'allowed').start();
    expect((await up.promise).hello.nodeId).toBe('allowed');
    // The stranger's handshake is refused by the ZAP handler (it keeps retrying).
    const deadline = Date.now() + 5_000;
    while (router.rejectedConnections === 0 && Date.now() < deadline) await new Promise((r) => setImmediate(r));
    expect(router.rejectedConnections).toBeGreaterThan(0);
    expect(seen).toEqual(['allowed']);
  });

  it('never hears a plaintext client on an encrypted gateway', async () => {
    const server = generateCurveKeyPair();
    const up = deferred<ExecutorPeer>();
    let plaintextPeers = 0;
    const router = new BusRouter(
      { bindEndpoint: 'tcp://127.0.0.1:*', heartbeatIntervalMs: HEARTBEAT_MS, heartbeatMissLimit: 3, curve: { ...server, allowedClientKeys: [] } },
      { onMessage: () => {}, onPeerUp: (p) => { if (p.hello.nodeId === 'plain') plaintextPeers++; else up.resolve(p); } },
    );
    closers.push(() => router.close());
    const endpoint = await router.bind();
    const plain = new Dealer({ linger: 0 });
    closers.push(() => plain.close());
    plain.connect(endpoint);
    await plain.send(encodeFrames(MessageType.HELLO, { nodeId: 'plain', pid: 1, maxInFlight: 1, startedAtMs: Date.now() }));
    // An encrypted executor (any key: the allow-list is empty) connects after it, and is heard.
    const client = generateCurveKeyPair();
    dealerFor(endpoint, { ...client, serverPublicKey: server.publicKey }, 'encrypted').start();
    expect((await up.promise).hello.nodeId).toBe('encrypted');
    expect(plaintextPeers).toBe(0);
  });
});

describe('the ZAP handler', () => {
  it('starts again at once after the previous one closed (libzmq releases its endpoint asynchronously)', async () => {
    for (let i = 0; i < 50; i++) {
      const zap = await ZapAuthenticator.start([]);
      zap.close();
    }
    const last = await ZapAuthenticator.start([]);
    closers.push(() => last.close());
    expect(last.rejected).toBe(0);
  });
});
