/**
 * Storage on a real ClickHouse 18.16 cluster: a private ZooKeeper and two private servers (two
 * shards of one replica each, both on 127.0.0.1), migrated ON CLUSTER by the same migration code
 * as one server, written to through the normal writer on both nodes and read back through the
 * Distributed tables with dedup intact.
 */
import os from 'node:os';
import path from 'node:path';
import { rm } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openStorage, type InvocationRecord, type Storage, type StorageCluster, type StorageOptions } from '../../storage/index.ts';
import { rebuildDistributedStatements } from '../../storage/schema.ts';
import { freePort, privateClickHouse, privateZooKeeper, type PrivateClickHouse, type PrivateZooKeeper } from './private-clickhouse.ts';

const CLUSTER = 'skiff_test';
/** The same two servers as shards whose tables are not replicated (internal_replication false). */
const PLAIN_CLUSTER = 'skiff_test_plain';
const TABLES = ['invocations', 'logs', 'container_events', 'functions', 'schema_migrations'] as const;
const NOW = 1_790_000_000_000;
const runId = `${Date.now()}_${process.pid}`;

async function sql(server: PrivateClickHouse, query: string): Promise<string> {
  const res = await fetch(server.url, { method: 'POST', body: query });
  const text = await res.text();
  if (!res.ok) throw new Error(text);
  return text.trim();
}

function invocation(id: string, overrides: Partial<InvocationRecord> = {}): InvocationRecord {
  return {
    id,
    namespace: 'default',
    function: 'clustered',
    version: 1,
    executor: 'node-a',
    containerId: 'c-1',
    trigger: 'sync',
    attempt: 1,
    status: 'ok',
    errorCode: '',
    httpStatus: 200,
    start: 'warm',
    receivedAtMs: NOW,
    queuedAtMs: NOW,
    startedAtMs: NOW + 1,
    finishedAtMs: NOW + 5,
    queueUs: 100,
    initUs: 0,
    createUs: 0,
    runUs: 4000,
    totalUs: 5000,
    requestBytes: 10,
    responseBytes: 20,
    traceId: '',
    ...overrides,
  };
}

describe('storage on a ClickHouse 18.16 cluster (ZooKeeper, two shards)', () => {
  let zooKeeper: PrivateZooKeeper;
  let servers: PrivateClickHouse[] = [];
  const opened: Storage[] = [];
  const spoolRoot = path.join(os.tmpdir(), `skiff-cluster-spool-${runId}`);

  const cluster: StorageCluster = { name: CLUSTER, replicated: true, zooKeeperPath: '/clickhouse/tables/{shard}/{database}/{table}', replicaName: '{replica}' };
  const optionsFor = (server: PrivateClickHouse, database: string, overrides: Partial<StorageOptions> = {}): StorageOptions => ({
    backend: 'server',
    clickhouseUrl: server.url,
    dataDir: '',
    database,
    cluster,
    flushIntervalMs: 60_000,
    maxBatchRows: 1000,
    maxBatchBytes: 8 * 1024 * 1024,
    maxQueuedBatches: 4,
    spoolDir: path.join(spoolRoot, `${database}-${server.tcpPort}`),
    spoolMaxBytes: 64 * 1024 * 1024,
    retryDelaysMs: [1, 1],
    replayMaxDelayMs: 50,
    ...overrides,
  });
  const open = async (options: StorageOptions): Promise<Storage> => {
    const storage = await openStorage(options);
    opened.push(storage);
    return storage;
  };

  beforeAll(async () => {
    zooKeeper = await privateZooKeeper();
    const ports = [
      { httpPort: await freePort(), tcpPort: await freePort() },
      { httpPort: await freePort(), tcpPort: await freePort() },
    ];
    const shards = (internalReplication: boolean): string =>
      ports.map((p) => `<shard><internal_replication>${internalReplication}</internal_replication><replica><host>127.0.0.1</host><port>${p.tcpPort}</port></replica></shard>`).join('');
    const remoteServers = `<${CLUSTER}>${shards(true)}</${CLUSTER}><${PLAIN_CLUSTER}>${shards(false)}</${PLAIN_CLUSTER}>`;
    servers = await Promise.all(
      ports.map((p, i) =>
        privateClickHouse({
          ...p,
          remoteServers,
          macros: { shard: String(i + 1), replica: `r${i + 1}` },
          zooKeeperPort: zooKeeper.port,
          // As docs/deploy.md asks: an insert returns once the shards have its rows.
          profile: { insert_distributed_sync: '1' },
        }),
      ),
    );
    await Promise.all(servers.map((s) => s.start()));
  });

  afterAll(async () => {
    for (const storage of opened) await storage.close().catch(() => undefined);
    await Promise.all(servers.map((s) => s.destroy()));
    await zooKeeper?.destroy();
    await rm(spoolRoot, { recursive: true, force: true });
  });

  it('migrates ON CLUSTER: a replicated _local table and a Distributed table of each name on both servers, versions recorded once', async () => {
    const database = `skiff_m_${runId}`;
    const [a, b] = servers;
    await open(optionsFor(a, database));
    for (const server of servers) {
      const engines = await sql(server, `SELECT name, engine FROM system.tables WHERE database = '${database}' ORDER BY name FORMAT TSV`);
      expect(engines.split('\n')).toEqual(
        [...TABLES].sort().flatMap((t) => [`${t}\tDistributed`, `${t}_local\tReplicatedReplacingMergeTree`]),
      );
    }
    // Each shard's replicas register under their own {shard} path, named by {table}.
    const paths = await sql(a, `SELECT zookeeper_path FROM system.replicas WHERE database = '${database}' AND table = 'invocations_local' FORMAT TSV`);
    expect(paths).toBe(`/clickhouse/tables/1/${database}/invocations`);
    expect(await sql(b, `SELECT zookeeper_path FROM system.replicas WHERE database = '${database}' AND table = 'invocations_local' FORMAT TSV`)).toBe(`/clickhouse/tables/2/${database}/invocations`);
    // An open through the other server (a second gateway) migrates nothing again.
    const second = await open(optionsFor(b, database));
    await second.migrate();
    expect(await sql(b, `SELECT version, count() FROM ${database}.schema_migrations GROUP BY version ORDER BY version FORMAT TSV`)).toBe('1\t1\n2\t1\n3\t1');
    await expect(second.checkWritable()).resolves.toBeUndefined();
  });

  it('writes through the normal writer on both servers and reads every invocation once through the Distributed tables, from either server', async () => {
    const database = `skiff_w_${runId}`;
    const [a, b] = servers;
    const onA = await open(optionsFor(a, database));
    const onB = await open(optionsFor(b, database));
    // No merges for now, so the duplicates stay stored and only the reads' dedup can hide them.
    for (const server of servers) await sql(server, `SYSTEM STOP MERGES ${database}.invocations_local`);
    const ids = Array.from({ length: 40 }, (_, i) => `call-${String(i).padStart(2, '0')}`);
    // A writes 0..29, B writes 20..39: ids 20..29 arrive twice (a replayed batch), in different batches.
    onA.recordInvocation(invocation('retried', { attempt: 1, status: 'error', errorCode: 'FUNCTION_CRASHED', httpStatus: 502, finishedAtMs: NOW + 5 }));
    for (const id of ids.slice(0, 30)) onA.recordInvocation(invocation(id, { start: 'cold', initUs: 900_000, createUs: 650_000 }));
    for (const id of ids.slice(20)) onB.recordInvocation(invocation(id, { start: 'cold', initUs: 900_000, createUs: 650_000 }));
    onB.recordInvocation(invocation('retried', { attempt: 2, finishedAtMs: NOW + 50 }));
    onA.recordLogs([{ invocationId: 'call-25', function: 'clustered', containerId: 'c-1', timeMs: NOW + 2, stream: 'stdout', line: 'hello from a shard', truncated: false }]);
    await Promise.all([onA.drain(), onB.drain()]);
    expect(onA.stats()).toMatchObject({ spooledBatches: 0, deadLetteredRows: 0, droppedRows: 0 });
    expect(onB.stats()).toMatchObject({ spooledBatches: 0, deadLetteredRows: 0, droppedRows: 0 });

    // The rows are really spread over both shards, and the duplicates are really stored.
    const local = await Promise.all(servers.map(async (s) => Number(await sql(s, `SELECT count() FROM ${database}.invocations_local`))));
    expect(local.every((n) => n > 0)).toBe(true);
    expect(local[0] + local[1]).toBe(30 + 20 + 2);

    for (const storage of [onA, onB]) {
      const page = await storage.listInvocations({ function: 'clustered', limit: 1000 });
      expect(page.records.map((r) => r.id).sort()).toEqual([...ids, 'retried'].sort());
      expect(page.records.find((r) => r.id === 'retried')).toMatchObject({ attempt: 2, status: 'ok' });
      expect(page.records.find((r) => r.id === 'call-25')).toMatchObject({ start: 'cold', initUs: 900_000, createUs: 650_000 });
      const stats = await storage.functionStats('clustered', NOW - 1, NOW + 1);
      expect(stats).toMatchObject({ count: 41, coldStarts: 40, statuses: { ok: 41, error: 0, timeout: 0, rejected: 0 } });
      const found = await storage.getInvocation('call-25');
      expect(found?.logs.map((l) => l.line)).toEqual(['hello from a shard']);
    }
  });

  it('adds create_us to a cluster schema of version 2: ALTER of the local tables ON CLUSTER, the Distributed tables re-attached', async () => {
    const database = `skiff_v2_${runId}`;
    const [a, b] = servers;
    const target = { database, cluster };
    // Today's schema, taken back to version 2 by hand: create_us dropped, version 3 unrecorded.
    await (await open(optionsFor(a, database))).close();
    await sql(a, `ALTER TABLE ${database}.invocations_local ON CLUSTER ${CLUSTER} DROP COLUMN create_us`);
    for (const statement of rebuildDistributedStatements(target, 'invocations')) await sql(a, statement);
    await sql(a, `DROP TABLE ${database}.schema_migrations ON CLUSTER ${CLUSTER}`);
    await sql(a, `DROP TABLE ${database}.schema_migrations_local ON CLUSTER ${CLUSTER}`);
    await sql(a, `CREATE TABLE ${database}.schema_migrations_local ON CLUSTER ${CLUSTER} (version UInt32, name String, applied_at_ms UInt64) ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/${database}/schema_migrations_v2', '{replica}', applied_at_ms) ORDER BY version`);
    await sql(a, `CREATE TABLE ${database}.schema_migrations ON CLUSTER ${CLUSTER} AS ${database}.schema_migrations_local ENGINE = Distributed(${CLUSTER}, ${database}, schema_migrations_local, version)`);
    await sql(a, `INSERT INTO ${database}.schema_migrations VALUES (1, 'v1', 1), (2, 'v2', 2)`);
    for (const server of servers) expect(await sql(server, `SELECT count() FROM system.columns WHERE database = '${database}' AND name = 'create_us'`)).toBe('0');
    await sql(b, `INSERT INTO ${database}.invocations (id, \`function\`, start, init_us, received_at_ms, finished_at_ms) VALUES ('before-v3', 'clustered', 'cold', 700000, ${NOW}, ${NOW + 9})`);

    const migrated = await open(optionsFor(b, database));
    for (const server of servers) {
      for (const table of ['invocations_local', 'invocations']) {
        const columns = await sql(server, `SELECT name FROM system.columns WHERE database = '${database}' AND table = '${table}' AND name IN ('init_us', 'create_us', 'run_us') FORMAT TSV`);
        expect(columns.split('\n')).toEqual(['init_us', 'create_us', 'run_us']);
      }
    }
    expect(await sql(a, `SELECT version FROM ${database}.schema_migrations ORDER BY version FORMAT TSV`)).toBe('1\n2\n3');
    migrated.recordInvocation(invocation('after-v3', { start: 'cold', initUs: 800_000, createUs: 500_000 }));
    await migrated.drain();
    const records = (await migrated.listInvocations({ function: 'clustered' })).records.map(({ id, initUs, createUs }) => ({ id, initUs, createUs }));
    expect(records.sort((x, y) => x.id.localeCompare(y.id))).toEqual([
      { id: 'after-v3', initUs: 800_000, createUs: 500_000 },
      { id: 'before-v3', initUs: 700_000, createUs: 0 },
    ]);
    await migrated.migrate();
  });

  it('keeps plain ReplacingMergeTree shards when storage.cluster.replicated is false', async () => {
    const database = `skiff_p_${runId}`;
    const [a, b] = servers;
    const plain = await open(optionsFor(a, database, { cluster: { ...cluster, name: PLAIN_CLUSTER, replicated: false } }));
    expect(await sql(b, `SELECT engine FROM system.tables WHERE database = '${database}' AND name = 'logs_local' FORMAT TSV`)).toBe('ReplacingMergeTree');
    for (let i = 0; i < 10; i++) plain.recordInvocation(invocation(`plain-${i}`));
    for (let i = 5; i < 10; i++) plain.recordInvocation(invocation(`plain-${i}`));
    await plain.drain();
    expect((await plain.listInvocations({ function: 'clustered' })).records).toHaveLength(10);
  });

  it('refuses a cluster the server does not define, and a single-server database under storage.cluster, naming the option', async () => {
    const [a] = servers;
    await expect(openStorage(optionsFor(a, `skiff_x_${runId}`, { cluster: { ...cluster, name: 'no_such_cluster' } }))).rejects.toMatchObject({
      code: 'STORAGE_UNAVAILABLE',
      message: expect.stringContaining('storage.cluster.name "no_such_cluster" is not a cluster'),
    });
    const database = `skiff_single_${runId}`;
    await (await open(optionsFor(a, database, { cluster: undefined }))).close();
    await expect(openStorage(optionsFor(a, database))).rejects.toMatchObject({
      code: 'STORAGE_UNAVAILABLE',
      message: expect.stringContaining(`${database}.invocations is a ReplacingMergeTree table, but storage.cluster.name is "${CLUSTER}"`),
    });
    await expect(openStorage(optionsFor(a, database, { backend: 'chdb', dataDir: '/tmp/unused' }))).rejects.toThrow('storage.cluster.name needs storage.clickhouseUrl');
  });
});
