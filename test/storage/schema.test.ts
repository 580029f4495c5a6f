/** The schema text and the row codecs must agree, and inlined literals must be safe. */
import { describe, expect, it } from 'vitest';
import { literal, clampLimit, decodeCursor, encodeCursor, MAX_LIST_LIMIT, DEFAULT_LIST_LIMIT } from '../../storage/queries.ts';
import { encodeRows, decodeRows, MAX_STORED_LOG_LINE_CHARS, type RecordOf } from '../../storage/rows.ts';
import { addColumnSql, columnNames, createDatabaseSql, createTableStatements, rebuildDistributedStatements, TABLE_NAMES, type SchemaTarget, type TableName } from '../../storage/schema.ts';
import type { StorageCluster } from '../../storage/types.ts';

const SAMPLES: { [T in TableName]: RecordOf[T] } = {
  invocations: {
    id: 'i', namespace: 'n', function: 'f', version: 1, executor: 'e', containerId: 'c', trigger: 'sync', attempt: 1, status: 'ok', errorCode: '',
    httpStatus: 200, start: 'cold', receivedAtMs: 1, queuedAtMs: 1, startedAtMs: 2, finishedAtMs: 2, queueUs: 3, initUs: 4, createUs: 2, runUs: 5, totalUs: 6, requestBytes: 7, responseBytes: 8, traceId: 't',
  },
  logs: { invocationId: 'i', function: 'f', containerId: 'c', timeMs: 1, seq: 2, lineId: 'l', stream: 'stderr', line: 'x', truncated: true },
  container_events: { eventId: 'e', timeMs: 1, nodeId: 'n', containerId: 'c', function: 'f', version: 2, kind: 'evicted', detail: 'd' },
  functions: {
    name: 'f', namespace: 'n', version: 1, runtime: 'node20', image: '', codeHash: 'h', code: 'Y29kZQ==', handler: 'index.js', env: { A: 'b' },
    limits: { memoryMB: 128, timeoutMs: 1000, concurrency: 1 }, createdAtMs: 5, deleted: false,
  },
  schema_migrations: { version: 1, name: 'm', appliedAtMs: 9 },
};

describe('schema and codecs', () => {
  it.each(TABLE_NAMES)('encodes %s records into exactly the columns of its table, and decodes them back', (table) => {
    const [row] = encodeRows(table, [SAMPLES[table]]);
    expect(Object.keys(row)).toEqual(columnNames(table));
    expect(decodeRows(table, [row])).toEqual([SAMPLES[table]]);
    expect(createTableStatements({ database: 'db' }, table)).toEqual([expect.stringContaining('ENGINE = ReplacingMergeTree(')]);
  });

  it('decodes 64-bit integers that ClickHouse quotes in JSON', () => {
    const [row] = encodeRows('invocations', [SAMPLES.invocations]);
    const quoted = Object.fromEntries(Object.entries(row).map(([k, v]) => [k, String(v)]));
    expect(decodeRows('invocations', [quoted])).toEqual([SAMPLES.invocations]);
  });

  it('clamps numbers a column cannot hold instead of failing the batch', () => {
    const bad = { ...SAMPLES.invocations, attempt: 70_000, httpStatus: -1, totalUs: 1.5, queueUs: Number.NaN };
    expect(encodeRows('invocations', [bad])[0]).toMatchObject({ attempt: 65_535, http_status: 0, total_us: 1, queue_us: 0 });
  });

  it('derives queued and started times a writer did not give: received, and finished minus run time', () => {
    const { queuedAtMs: _q, startedAtMs: _s, ...bare } = SAMPLES.invocations;
    const [row] = encodeRows('invocations', [{ ...bare, receivedAtMs: 1000, finishedAtMs: 1100, runUs: 40_000 }]);
    expect(row).toMatchObject({ queued_at_ms: 1000, started_at_ms: 1060 });
  });

  it('cuts log lines over MAX_STORED_LOG_LINE_CHARS and marks them truncated', () => {
    const long = 'x'.repeat(MAX_STORED_LOG_LINE_CHARS + 10);
    const [row] = encodeRows('logs', [{ ...SAMPLES.logs, line: long, truncated: false }]);
    expect(row).toMatchObject({ line: 'x'.repeat(MAX_STORED_LOG_LINE_CHARS), truncated: 1 });
  });

  it('round-trips a cursor and refuses one it did not make with BAD_REQUEST', () => {
    expect(decodeCursor(encodeCursor({ receivedAtMs: 42, id: "a'b" }))).toEqual({ receivedAtMs: 42, id: "a'b" });
    expect(() => decodeCursor('not-a-cursor')).toThrow(expect.objectContaining({ code: 'BAD_REQUEST' }));
    expect(() => decodeCursor(Buffer.from('[-1,"x"]').toString('base64url'))).toThrow(expect.objectContaining({ code: 'BAD_REQUEST' }));
  });

  it('escapes quotes and backslashes in string literals', () => {
    expect(literal("it's")).toBe("'it\\'s'");
    expect(literal('a\\')).toBe("'a\\\\'");
    expect(literal("\\'; DROP TABLE x; --")).toBe("'\\\\\\'; DROP TABLE x; --'");
  });

  it('defaults the list limit to 50 and caps it at 1000', () => {
    expect(clampLimit(undefined)).toBe(DEFAULT_LIST_LIMIT);
    expect(clampLimit(5000)).toBe(MAX_LIST_LIMIT);
    expect(clampLimit(0)).toBe(1);
  });
});

const CLUSTER: StorageCluster = { name: 'skiff', replicated: true, zooKeeperPath: '/clickhouse/tables/{shard}/{database}/{table}', replicaName: '{replica}' };
const ON_CLUSTER: SchemaTarget = { database: 'db', cluster: CLUSTER };

// The text only; test/storage/cluster.test.ts runs it on a real ClickHouse 18.16 cluster.
describe('cluster schema text', () => {
  it.each(TABLE_NAMES)('creates %s as a replicated local table on every server and a Distributed table of its name', (table) => {
    const [local, distributed] = createTableStatements(ON_CLUSTER, table);
    expect(local).toContain(`CREATE TABLE IF NOT EXISTS \`db\`.\`${table}_local\` ON CLUSTER \`skiff\``);
    expect(local).toContain(`ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/db/${table}', '{replica}'`);
    expect(distributed).toMatch(new RegExp(`^CREATE TABLE IF NOT EXISTS \`db\`\\.\`${table}\` ON CLUSTER \`skiff\` AS \`db\`\\.\`${table}_local\`\\nENGINE = Distributed\\(\`skiff\`, \`db\`, \`${table}_local\`, `));
  });

  it('keeps the ReplacingMergeTree version column after the replication arguments', () => {
    const [local] = createTableStatements(ON_CLUSTER, 'invocations');
    expect(local).toContain("ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/db/invocations', '{replica}', finished_at_ms)");
    expect(local).toContain('ORDER BY (`function`, received_at_ms, id, attempt)');
  });

  it('creates plain ReplacingMergeTree shards when the cluster is not replicated', () => {
    const [local] = createTableStatements({ database: 'db', cluster: { ...CLUSTER, replicated: false } }, 'logs');
    expect(local).toContain('ON CLUSTER `skiff`');
    expect(local).toContain('ENGINE = ReplacingMergeTree()');
  });

  it('alters the local tables ON CLUSTER and re-attaches the Distributed table to add a column', () => {
    expect(addColumnSql(ON_CLUSTER, 'invocations', 'create_us', 'init_us')).toBe('ALTER TABLE `db`.`invocations_local` ON CLUSTER `skiff` ADD COLUMN `create_us` UInt64 AFTER `init_us`');
    expect(addColumnSql({ database: 'db' }, 'invocations', 'create_us', 'init_us')).toBe('ALTER TABLE `db`.`invocations` ADD COLUMN `create_us` UInt64 AFTER `init_us`');
    const [detach, attach] = rebuildDistributedStatements(ON_CLUSTER, 'invocations');
    expect(detach).toBe('DETACH TABLE IF EXISTS `db`.`invocations` ON CLUSTER `skiff`');
    expect(attach).toMatch(/^ATTACH TABLE IF NOT EXISTS `db`\.`invocations` ON CLUSTER `skiff` AS `db`\.`invocations_local`/);
  });

  it('creates the database on every server of the cluster, or on the one server', () => {
    expect(createDatabaseSql(ON_CLUSTER)).toBe('CREATE DATABASE IF NOT EXISTS `db` ON CLUSTER `skiff`');
    expect(createDatabaseSql({ database: 'db' })).toBe('CREATE DATABASE IF NOT EXISTS `db`');
  });
});
