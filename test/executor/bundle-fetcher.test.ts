import { afterEach, describe, expect, it } from 'vitest';
import { BundleFetcher, type BundleGateway } from '../../executor/bundle-fetcher.ts';

const HASH_A = 'a'.repeat(64);
const HASH_B = 'b'.repeat(64);
const HASH_C = 'c'.repeat(64);

/** A gateway that records the FETCH_BUNDLE requests sent to it; the test answers them. */
class RecordingGateway implements BundleGateway {
  readonly requests: string[] = [];
  connected = true;
  acceptsRequests = true;
  constructor(readonly endpoint: string) {}
  requestBundle(codeHash: string): boolean {
    if (!this.acceptsRequests) return false;
    this.requests.push(codeHash);
    return true;
  }
}

const fetchers: BundleFetcher[] = [];
function fetcherFor(gateways: BundleGateway[], options: { timeoutMs?: number; maxConcurrent?: number; maxBundleBytes?: number } = {}): BundleFetcher {
  const fetcher = new BundleFetcher({ gateways: () => gateways, timeoutMs: options.timeoutMs ?? 60_000, maxConcurrent: options.maxConcurrent ?? 4, maxBundleBytes: options.maxBundleBytes ?? 1024 });
  fetchers.push(fetcher);
  return fetcher;
}

const found = (codeHash: string) => ({ codeHash, found: true, message: '' });
const notFound = (codeHash: string, message = 'not here') => ({ codeHash, found: false, message });

afterEach(() => {
  for (const fetcher of fetchers.splice(0)) fetcher.close();
});

describe('bundle fetcher', () => {
  it('sends one request for concurrent needs of the same hash and gives all of them the bytes', async () => {
    const gateway = new RecordingGateway('tcp://g1');
    const fetcher = fetcherFor([gateway]);
    const needs = [fetcher.fetch(HASH_A, 'tcp://g1'), fetcher.fetch(HASH_A, 'tcp://g1'), fetcher.fetch(HASH_A)];
    expect(gateway.requests).toEqual([HASH_A]);
    fetcher.onBundle('tcp://g1', found(HASH_A), Buffer.from('bytes'));
    expect((await Promise.all(needs)).map((b) => b.toString())).toEqual(['bytes', 'bytes', 'bytes']);
    expect(fetcher.active).toBe(0);
  });

  it('asks the gateway the call came from first, then the others when it does not have the bundle', async () => {
    const g1 = new RecordingGateway('tcp://g1');
    const g2 = new RecordingGateway('tcp://g2');
    const fetcher = fetcherFor([g1, g2]);
    const need = fetcher.fetch(HASH_A, 'tcp://g2');
    expect([g1.requests, g2.requests]).toEqual([[], [HASH_A]]);
    fetcher.onBundle('tcp://g2', notFound(HASH_A), Buffer.alloc(0));
    expect(g1.requests).toEqual([HASH_A]);
    fetcher.onBundle('tcp://g1', found(HASH_A), Buffer.from('from g1'));
    expect((await need).toString()).toBe('from g1');
    expect(fetcher.requests).toBe(2);
  });

  it('fails with BUNDLE_UNAVAILABLE naming every refusal when no connected gateway has the bundle', async () => {
    const g1 = new RecordingGateway('tcp://g1');
    const g2 = new RecordingGateway('tcp://g2');
    const down = new RecordingGateway('tcp://down');
    down.connected = false;
    const fetcher = fetcherFor([g1, down, g2]);
    const need = fetcher.fetch(HASH_A, 'tcp://g1');
    fetcher.onBundle('tcp://g1', notFound(HASH_A, 'no function version with this code hash is stored'), Buffer.alloc(0));
    fetcher.onBundle('tcp://g2', notFound(HASH_A, 'storage could not be read'), Buffer.alloc(0));
    await expect(need).rejects.toMatchObject({
      code: 'BUNDLE_UNAVAILABLE',
      message: `code bundle ${HASH_A} could not be fetched: no connected gateway has it (tcp://g1: no function version with this code hash is stored; tcp://g2: storage could not be read)`,
    });
    expect(down.requests).toEqual([]);
  });

  it('fails at once when no gateway is connected', async () => {
    const gateway = new RecordingGateway('tcp://g1');
    gateway.connected = false;
    await expect(fetcherFor([gateway]).fetch(HASH_A)).rejects.toMatchObject({ code: 'BUNDLE_UNAVAILABLE', message: expect.stringContaining('no gateway is connected') });
  });

  it('moves on to the next gateway when the bus queue to one is full', async () => {
    const full = new RecordingGateway('tcp://full');
    full.acceptsRequests = false;
    const g2 = new RecordingGateway('tcp://g2');
    const fetcher = fetcherFor([full, g2]);
    const need = fetcher.fetch(HASH_A, 'tcp://full');
    expect(g2.requests).toEqual([HASH_A]);
    fetcher.onBundle('tcp://g2', found(HASH_A), Buffer.from('ok'));
    expect((await need).toString()).toBe('ok');
  });

  it('times out with BUNDLE_UNAVAILABLE naming executor.bundleFetchTimeoutMs, and the next need asks again', async () => {
    const gateway = new RecordingGateway('tcp://g1');
    const fetcher = fetcherFor([gateway], { timeoutMs: 50 });
    await expect(fetcher.fetch(HASH_A)).rejects.toMatchObject({ code: 'BUNDLE_UNAVAILABLE', message: expect.stringContaining('within 50 ms (executor.bundleFetchTimeoutMs)') });
    // The late answer to the timed-out request finds nobody and is dropped.
    fetcher.onBundle('tcp://g1', found(HASH_A), Buffer.from('late'));
    expect(fetcher.active).toBe(0);
    const again = fetcher.fetch(HASH_A);
    expect(gateway.requests).toEqual([HASH_A, HASH_A]);
    fetcher.onBundle('tcp://g1', found(HASH_A), Buffer.from('second try'));
    expect((await again).toString()).toBe('second try');
  });

  it('runs at most maxConcurrent fetches at once; the others wait their turn in order', async () => {
    const gateway = new RecordingGateway('tcp://g1');
    const fetcher = fetcherFor([gateway], { maxConcurrent: 2 });
    const needs = [HASH_A, HASH_B, HASH_C].map((hash) => fetcher.fetch(hash));
    expect(gateway.requests).toEqual([HASH_A, HASH_B]);
    expect([fetcher.active, fetcher.queued]).toEqual([2, 1]);
    fetcher.onBundle('tcp://g1', notFound(HASH_B), Buffer.alloc(0));
    expect(gateway.requests).toEqual([HASH_A, HASH_B, HASH_C]);
    fetcher.onBundle('tcp://g1', found(HASH_A), Buffer.from('a'));
    fetcher.onBundle('tcp://g1', found(HASH_C), Buffer.from('c'));
    const outcomes = await Promise.allSettled(needs);
    expect(outcomes.map((o) => o.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    expect([fetcher.active, fetcher.queued]).toEqual([0, 0]);
  });

  it('asks the next gateway when the one it asked stops answering', async () => {
    const g1 = new RecordingGateway('tcp://g1');
    const g2 = new RecordingGateway('tcp://g2');
    const fetcher = fetcherFor([g1, g2]);
    const need = fetcher.fetch(HASH_A, 'tcp://g1');
    g1.connected = false;
    fetcher.gatewayLost('tcp://g1');
    expect(g2.requests).toEqual([HASH_A]);
    // g1 is gone: a late answer from it no longer counts.
    fetcher.onBundle('tcp://g1', found(HASH_A), Buffer.from('stale'));
    fetcher.onBundle('tcp://g2', found(HASH_A), Buffer.from('from g2'));
    expect((await need).toString()).toBe('from g2');
  });

  it('refuses a bundle over the size limit and asks the next gateway', async () => {
    const g1 = new RecordingGateway('tcp://g1');
    const g2 = new RecordingGateway('tcp://g2');
    const fetcher = fetcherFor([g1, g2], { maxBundleBytes: 4 });
    const need = fetcher.fetch(HASH_A, 'tcp://g1');
    fetcher.onBundle('tcp://g1', found(HASH_A), Buffer.from('too large'));
    fetcher.onBundle('tcp://g2', found(HASH_A), Buffer.from('ok'));
    expect((await need).toString()).toBe('ok');
    expect(g1.requests).toEqual([HASH_A]);
  });

  it('ignores an answer from a gateway it did not ask', async () => {
    const g1 = new RecordingGateway('tcp://g1');
    const g2 = new RecordingGateway('tcp://g2');
    const fetcher = fetcherFor([g1, g2]);
    const need = fetcher.fetch(HASH_A, 'tcp://g1');
    fetcher.onBundle('tcp://g2', notFound(HASH_A), Buffer.alloc(0));
    fetcher.onBundle('tcp://g2', found(HASH_A), Buffer.from('unasked'));
    expect(g2.requests).toEqual([]);
    fetcher.onBundle('tcp://g1', found(HASH_A), Buffer.from('asked'));
    expect((await need).toString()).toBe('asked');
  });

  it('fails fetches in progress and waiting when closed, and every later one', async () => {
    const gateway = new RecordingGateway('tcp://g1');
    const fetcher = fetcherFor([gateway], { maxConcurrent: 1 });
    const needs = [fetcher.fetch(HASH_A), fetcher.fetch(HASH_B)];
    fetcher.close();
    for (const need of needs) await expect(need).rejects.toMatchObject({ code: 'BUNDLE_UNAVAILABLE', message: expect.stringContaining('shutting down') });
    await expect(fetcher.fetch(HASH_C)).rejects.toMatchObject({ code: 'BUNDLE_UNAVAILABLE' });
    expect(gateway.requests).toEqual([HASH_A]);
  });
});
