/**
 * The outage test, end to end: a real `skiff up` on a private ClickHouse server (its own
 * ports and data dir; the shared one on 8123 is never touched), 10,000 invocations, the server
 * killed in the middle of the run and restarted; after the spool drains exactly the accepted
 * records are in ClickHouse, none shown twice, nothing dropped, the spool empty.
 */
import path from 'node:path';
import { Pool } from 'undici';
import { GatewayClient } from '../../cli/client.ts';
import { packFunctionDir } from '../../cli/pack.ts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { privateClickHouse, type PrivateClickHouse } from '../storage/private-clickhouse.ts';
import { call, eventually, json, REPO_ROOT, startSkiff, type SkiffUnderTest } from './harness.ts';

const CALLS = 10_000;
const CONNECTIONS = 16;
const KILL_AFTER = 2_500;
const RESTART_AFTER = 6_000;
const DATABASE = 'skiff_outage';
/** examples/echo with one container serving every connection: the test is about storage, not container scaling. */
const FUNCTION = 'outage-echo';

interface StorageStatsReply {
  storage: { recordsWritten: number; batchesSpooled: number; batchesReplayed: number; spooledBatches: number; spooledBytes: number; droppedRows: number; pendingRows: number; queuedBatches: number; deadLetteredRows: number };
}

async function clickhouse(url: string, sql: string): Promise<string> {
  const res = await fetch(url, { method: 'POST', body: sql });
  const text = await res.text();
  if (!res.ok) throw new Error(text);
  return text.trim();
}

describe('storage through a ClickHouse outage', () => {
  let server: PrivateClickHouse;
  let skiff: SkiffUnderTest;

  beforeAll(async () => {
    server = await privateClickHouse();
    await server.start();
    skiff = await startSkiff({ backend: 'server', examples: false, env: { CLICKHOUSE_URL: server.url, SKIFF_CLICKHOUSE_DATABASE: DATABASE } });
    const client = new GatewayClient(skiff.url);
    const code = (await packFunctionDir(path.join(REPO_ROOT, 'examples', 'echo'))).toString('base64');
    await client.json('PUT', `/system/functions/${FUNCTION}`, { code, limits: { concurrency: CONNECTIONS, memoryMB: 256 } });
    expect((await client.call('POST', `/function/${FUNCTION}`, 'warm-up')).status).toBe(200);
    await client.close();
  });

  afterAll(async () => {
    await skiff?.stop();
    await server?.destroy();
  });

  it('keeps every accepted record exactly once when the server dies mid-run and comes back', async () => {
    const stats = async (): Promise<StorageStatsReply['storage']> => json<StorageStatsReply>(await call(`${skiff.url}/system/stats`)).storage;
    const pool = new Pool(skiff.url, { connections: CONNECTIONS });
    let next = 0;
    let done = 0;
    let accepted = 0;
    let killed: Promise<void> | undefined;
    let restarted: Promise<void> | undefined;
    let restartChecking = false;
    const statuses = new Map<number, number>();
    const failures: string[] = [];
    const worker = async (): Promise<void> => {
      while (next < CALLS) {
        const i = next++;
        const res = await pool.request({ path: `/function/${FUNCTION}`, method: 'POST', body: `call ${i}`, headers: { 'x-call-id': `outage-${i}` } });
        const text = await res.body.text();
        if (res.statusCode !== 200 && failures.length < 5) failures.push(`${i}: ${res.statusCode} ${text.slice(0, 200)}`);
        statuses.set(res.statusCode, (statuses.get(res.statusCode) ?? 0) + 1);
        accepted += 1; // every answered call, whatever its status, is an invocation record
        done += 1;
        if (done === KILL_AFTER) killed = server.kill();
        // Restart once storage has spooled (the outage outlasted the retries), not after a fixed time.
        if (done >= RESTART_AFTER && killed && !restarted && !restartChecking) {
          restartChecking = true;
          void stats().then((s) => {
            if (s.batchesSpooled > 0) restarted = killed!.then(() => server.start());
            restartChecking = false;
          });
        }
      }
    };
    await Promise.all(Array.from({ length: CONNECTIONS }, worker));
    await pool.close();
    expect(killed).toBeDefined();
    await killed;
    if (!restarted) {
      await eventually(async () => ((await stats()).batchesSpooled > 0 ? true : undefined), 30_000, 'batches in the spool');
      restarted = server.start();
    }
    await restarted;

    const drained = await eventually(async () => {
      const s = await stats();
      return s.spooledBatches === 0 && s.pendingRows === 0 && s.queuedBatches === 0 && s.recordsWritten > 0 ? s : undefined;
    }, 60_000, 'the spool to drain');

    const rawRows = Number(await clickhouse(server.url, `SELECT count() FROM ${DATABASE}.invocations WHERE function = '${FUNCTION}' AND startsWith(id, 'outage-')`));
    const distinctIds = Number(await clickhouse(server.url, `SELECT uniqExact(id) FROM ${DATABASE}.invocations WHERE function = '${FUNCTION}' AND startsWith(id, 'outage-')`));
    const fnStats = json<{ count: number }>(await call(`${skiff.url}/system/functions/${FUNCTION}/stats?window=1h`));
    // The closing note of the issue quotes this line.
    process.stdout.write(
      `storage outage: calls=${CALLS} accepted=${accepted} statuses=${JSON.stringify(Object.fromEntries(statuses))} rawRows=${rawRows} distinctIds=${distinctIds} ` +
        `queryCount=${fnStats.count - 1} spooledBatches=${drained.batchesSpooled} replayed=${drained.batchesReplayed} dropped=${drained.droppedRows} deadLettered=${drained.deadLetteredRows}\n`,
    );
    expect(failures).toEqual([]);
    expect(accepted).toBe(CALLS);
    expect(statuses.get(200)).toBe(CALLS); // real invocations: storage is off the hot path, so the outage fails none
    expect(distinctIds).toBe(accepted);
    expect(fnStats.count).toBe(accepted + 1); // and the warm-up call
    expect(drained).toMatchObject({ droppedRows: 0, deadLetteredRows: 0, spooledBatches: 0, spooledBytes: 0 });
    expect(drained.batchesSpooled).toBeGreaterThan(0);
    expect(drained.batchesReplayed).toBeGreaterThan(0);
  }, 240_000);
});
