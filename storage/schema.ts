/**
 * The one schema text both backends accept: chDB 26.x and ClickHouse server 18.16. Hence only
 * String and UInt* columns (no DateTime64, LowCardinality, Nullable, Map or Bool), epoch-ms/µs as
 * UInt64, partitions computed from them, and TabSeparated for batch inserts (JSONEachRow for the
 * registry's few rows and for spool files of earlier versions).
 *
 * The same tables are generated for one server (chDB or a ClickHouse server) and for a ClickHouse
 * cluster (storage.cluster): there each table is a `<table>_local` on every server, created
 * ON CLUSTER (ReplicatedReplacingMergeTree when the shards are replicated), with a Distributed
 * table of the plain name in front, so queries and writers name the same tables either way.
 * Pure text: the chDB and encoder workers import this module.
 */
import type { StorageCluster } from './types.ts';

export type ColumnType = 'String' | 'UInt8' | 'UInt16' | 'UInt32' | 'UInt64';

interface TableSpec {
  readonly columns: readonly (readonly [name: string, type: ColumnType])[];
  /** ReplacingMergeTree's version column (the newest row of an identity survives merges); none: any one. */
  readonly replacingVersion?: string;
  readonly partitionBy?: string;
  readonly orderBy: string;
  /** The cluster's sharding key: every copy of a row's identity lands on one shard, where merges collapse them. */
  readonly shardingKey: string;
}

/** Monthly partitions from an epoch-ms column (18.16 needs no DateTime column for this). */
const monthOf = (msColumn: string): string => `toYYYYMM(toDateTime(intDiv(${msColumn}, 1000)))`;

/*
 * Why ReplacingMergeTree plus query-time dedup: a batch that timed out may still have landed, and a
 * spooled batch may be replayed after a partial success, so the same row can arrive twice. Server
 * 18.16 deduplicates inserts only on Replicated tables (insert_deduplication_token and the
 * non-replicated window came in 20.x/22.x), so the batch id cannot do it server-side. Instead every
 * row has an identity — (id, attempt) for invocations, line_id for logs, event_id for events — that
 * is the table's sorting key, so merges collapse duplicates eventually; merges are late and per
 * partition, so every read also dedups with LIMIT 1 BY on that identity. FINAL would do the same
 * but runs single-threaded on 18.16.
 */
export const TABLES = {
  invocations: {
    columns: [
      ['id', 'String'],
      ['namespace', 'String'],
      ['function', 'String'],
      ['version', 'UInt32'],
      ['executor', 'String'],
      ['container_id', 'String'],
      ['trigger', 'String'],
      ['attempt', 'UInt16'],
      ['status', 'String'],
      ['error_code', 'String'],
      ['http_status', 'UInt16'],
      ['start', 'String'],
      ['received_at_ms', 'UInt64'],
      ['queued_at_ms', 'UInt64'],
      ['started_at_ms', 'UInt64'],
      ['finished_at_ms', 'UInt64'],
      ['queue_us', 'UInt64'],
      ['init_us', 'UInt64'],
      // Of init_us: creating and starting the container (cold starts; 0 for warm and stem-cell starts). Version 3.
      ['create_us', 'UInt64'],
      ['run_us', 'UInt64'],
      ['total_us', 'UInt64'],
      ['request_bytes', 'UInt64'],
      ['response_bytes', 'UInt64'],
      ['trace_id', 'String'],
    ],
    replacingVersion: 'finished_at_ms',
    partitionBy: monthOf('received_at_ms'),
    // By function and time for lists and stats; (id, attempt) last makes it the row's identity.
    orderBy: '(`function`, received_at_ms, id, attempt)',
    // Every attempt of a call on one shard; an even spread even when one function is hot.
    shardingKey: 'cityHash64(id)',
  },
  logs: {
    columns: [
      ['invocation_id', 'String'],
      ['function', 'String'],
      ['container_id', 'String'],
      ['time_ms', 'UInt64'],
      ['seq', 'UInt64'],
      ['line_id', 'String'],
      ['stream', 'String'],
      ['line', 'String'],
      ['truncated', 'UInt8'],
    ],
    partitionBy: monthOf('time_ms'),
    orderBy: '(`function`, invocation_id, time_ms, seq, line_id)',
    // An invocation's lines on one shard.
    shardingKey: 'cityHash64(invocation_id)',
  },
  container_events: {
    columns: [
      ['event_id', 'String'],
      ['time_ms', 'UInt64'],
      ['node_id', 'String'],
      ['container_id', 'String'],
      ['function', 'String'],
      ['version', 'UInt32'],
      ['kind', 'String'],
      ['detail', 'String'],
    ],
    partitionBy: monthOf('time_ms'),
    orderBy: '(`function`, container_id, time_ms, event_id)',
    // A container's history on one shard.
    shardingKey: 'cityHash64(container_id)',
  },
  functions: {
    columns: [
      ['name', 'String'],
      ['namespace', 'String'],
      ['version', 'UInt32'],
      ['runtime', 'String'],
      ['image', 'String'],
      ['code_hash', 'String'],
      ['code', 'String'],
      ['handler', 'String'],
      ['env', 'String'],
      ['memory_mb', 'UInt32'],
      ['timeout_ms', 'UInt32'],
      ['concurrency', 'UInt32'],
      ['created_at_ms', 'UInt64'],
      ['deleted', 'UInt8'],
    ],
    replacingVersion: 'created_at_ms',
    orderBy: '(name, namespace, version)',
    // Every version of a function on one shard, so its newest is picked where its rows are.
    shardingKey: 'cityHash64(name, namespace)',
  },
  schema_migrations: {
    columns: [
      ['version', 'UInt32'],
      ['name', 'String'],
      ['applied_at_ms', 'UInt64'],
    ],
    replacingVersion: 'applied_at_ms',
    orderBy: 'version',
    shardingKey: 'version',
  },
} as const satisfies Record<string, TableSpec>;

export type TableName = keyof typeof TABLES;

/** Every table, schema_migrations included. */
export const TABLE_NAMES = Object.keys(TABLES) as TableName[];

/** `db`.`table` */
export function qualified(database: string, table: TableName): string {
  return `\`${database}\`.\`${table}\``;
}

/** The table's column names, in schema order. */
export function columnNames(table: TableName): string[] {
  return TABLES[table].columns.map(([name]) => name);
}

/** The table's columns, backquoted, for SELECT and INSERT lists. */
export function columnList(table: TableName): string {
  return TABLES[table].columns.map(([name]) => `\`${name}\``).join(', ');
}

/** The ClickHouse type of one column of `table`; throws for a column the schema does not have. */
export function columnType(table: TableName, column: string): ColumnType {
  const found = TABLES[table].columns.find(([name]) => name === column);
  if (!found) throw new Error(`${table} has no column ${column}`);
  return found[1];
}

/** Where the schema lives: one server (chDB or a ClickHouse server), or every server of a cluster. */
export interface SchemaTarget {
  readonly database: string;
  /** Set: `<table>_local` tables ON CLUSTER with Distributed tables in front (storage.cluster). */
  readonly cluster?: StorageCluster;
}

/** The name of the per-server table behind a cluster's Distributed table. */
export function localTableName(table: TableName): string {
  return `${table}_local`;
}

/**
 * The names the schema occupies on a server, each with the engine it must have: on a cluster the
 * Distributed table and its local table, on one server the table itself.
 */
export function expectedEngines(target: SchemaTarget, table: TableName): { name: string; engine: string }[] {
  if (!target.cluster) return [{ name: table, engine: 'ReplacingMergeTree' }];
  return [
    { name: table, engine: 'Distributed' },
    { name: localTableName(table), engine: target.cluster.replicated ? 'ReplicatedReplacingMergeTree' : 'ReplacingMergeTree' },
  ];
}

const onCluster = (target: SchemaTarget): string => (target.cluster ? ` ON CLUSTER \`${target.cluster.name}\`` : '');

/**
 * The ZooKeeper path of one table's replicas: `{database}` and `{table}` are filled here (18.16
 * does not know them), `{shard}` and the other macros by each server from its `<macros>`.
 */
export function zooKeeperPathOf(cluster: StorageCluster, database: string, table: TableName): string {
  return cluster.zooKeeperPath.replaceAll('{database}', database).replaceAll('{table}', table);
}

function engineOf(target: SchemaTarget, table: TableName): string {
  const spec: TableSpec = TABLES[table];
  const version = spec.replacingVersion ? [spec.replacingVersion] : [];
  if (!target.cluster?.replicated) return `ReplacingMergeTree(${version.join(', ')})`;
  // Path and replica name are validated (config.ts) to need no escaping inside quotes.
  const args = [`'${zooKeeperPathOf(target.cluster, target.database, table)}'`, `'${target.cluster.replicaName}'`, ...version];
  return `ReplicatedReplacingMergeTree(${args.join(', ')})`;
}

/** CREATE DATABASE IF NOT EXISTS (on every server of a cluster), the first migration step. */
export function createDatabaseSql(target: SchemaTarget): string {
  return `CREATE DATABASE IF NOT EXISTS \`${target.database}\`${onCluster(target)}`;
}

/**
 * The idempotent CREATE TABLE statements of `table`, in order: on one server the table; on a
 * cluster its local table on every server, then the Distributed table of the plain name, built
 * AS the local table so each server's copy has exactly its local table's columns.
 */
export function createTableStatements(target: SchemaTarget, table: TableName): string[] {
  const spec: TableSpec = TABLES[table];
  const columns = spec.columns.map(([name, type]) => `  \`${name}\` ${type}`).join(',\n');
  const partition = spec.partitionBy ? `\nPARTITION BY ${spec.partitionBy}` : '';
  const stored = target.cluster ? `\`${target.database}\`.\`${localTableName(table)}\`` : qualified(target.database, table);
  const create = `CREATE TABLE IF NOT EXISTS ${stored}${onCluster(target)}\n(\n${columns}\n)\nENGINE = ${engineOf(target, table)}${partition}\nORDER BY ${spec.orderBy}`;
  return target.cluster ? [create, createDistributedSql(target, table, 'CREATE')] : [create];
}

function createDistributedSql(target: SchemaTarget, table: TableName, verb: 'CREATE' | 'ATTACH'): string {
  const cluster = target.cluster;
  if (!cluster) throw new Error('a Distributed table needs storage.cluster');
  const db = `\`${target.database}\``;
  return `${verb} TABLE IF NOT EXISTS ${qualified(target.database, table)}${onCluster(target)} AS ${db}.\`${localTableName(table)}\`\nENGINE = Distributed(\`${cluster.name}\`, ${db}, \`${localTableName(table)}\`, ${TABLES[table].shardingKey})`;
}

/**
 * ALTER … ADD COLUMN of `column` (its type from TABLES, placed after `after`) on the table that
 * stores the rows: the table itself, or on a cluster the local tables on every server (a
 * Replicated table passes the change to its replicas). Not idempotent on 18.16 (no IF NOT
 * EXISTS): callers check the columns first.
 */
export function addColumnSql(target: SchemaTarget, table: TableName, column: string, after: string): string {
  const stored = target.cluster ? `\`${target.database}\`.\`${localTableName(table)}\`` : qualified(target.database, table);
  return `ALTER TABLE ${stored}${onCluster(target)} ADD COLUMN \`${column}\` ${columnType(table, column)} AFTER \`${after}\``;
}

/**
 * Re-creates a cluster's Distributed table from its local table after the local table's columns
 * changed. 18.16 refuses ALTER ON CLUSTER of a non-replicated table on a cluster whose shards are
 * replicated (internal_replication), and a Distributed table is one, so: DETACH then ATTACH … AS
 * the local table. Unlike DROP, DETACH keeps the table's directory, so blocks of asynchronous
 * inserts still waiting to be sent to the shards are sent after the ATTACH. Both steps are
 * idempotent; inserts in between fail, are retried, and spool if the gap outlasts the retries.
 */
export function rebuildDistributedStatements(target: SchemaTarget, table: TableName): string[] {
  return [`DETACH TABLE IF EXISTS ${qualified(target.database, table)}${onCluster(target)}`, createDistributedSql(target, table, 'ATTACH')];
}
