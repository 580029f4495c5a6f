/**
 * The one schema text both backends accept: chDB 26.x and ClickHouse server 18.16. Hence only
 * String and UInt* columns (no DateTime64, LowCardinality, Nullable, Map or Bool), epoch-ms/µs as
 * UInt64, partitions computed from them, and JSONEachRow for every insert.
 */

export type ColumnType = 'String' | 'UInt8' | 'UInt16' | 'UInt32' | 'UInt64';

interface TableSpec {
  readonly columns: readonly (readonly [name: string, type: ColumnType])[];
  readonly engine: string;
  readonly partitionBy?: string;
  readonly orderBy: string;
}

/** Monthly partitions from an epoch-ms column (18.16 needs no DateTime column for this). */
const monthOf = (msColumn: string): string => `toYYYYMM(toDateTime(intDiv(${msColumn}, 1000)))`;

// ReplacingMergeTree keyed by each row's id collapses a retried batch on merge, but merges are late
// and per partition, so reads dedup with LIMIT 1 BY id: it picks the newest version by an explicit order.
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
      ['finished_at_ms', 'UInt64'],
      ['queue_us', 'UInt64'],
      ['init_us', 'UInt64'],
      ['run_us', 'UInt64'],
      ['total_us', 'UInt64'],
      ['request_bytes', 'UInt64'],
      ['response_bytes', 'UInt64'],
      ['trace_id', 'String'],
    ],
    engine: 'ReplacingMergeTree(finished_at_ms)',
    partitionBy: monthOf('received_at_ms'),
    orderBy: '(`function`, id)',
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
    engine: 'ReplacingMergeTree()',
    partitionBy: monthOf('time_ms'),
    orderBy: '(`function`, invocation_id, time_ms, seq, line_id)',
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
    engine: 'ReplacingMergeTree()',
    partitionBy: monthOf('time_ms'),
    orderBy: '(`function`, container_id, time_ms, event_id)',
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
    engine: 'ReplacingMergeTree(created_at_ms)',
    orderBy: '(name, namespace, version)',
  },
  schema_migrations: {
    columns: [
      ['version', 'UInt32'],
      ['name', 'String'],
      ['applied_at_ms', 'UInt64'],
    ],
    engine: 'ReplacingMergeTree(applied_at_ms)',
    orderBy: 'version',
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

/** CREATE DATABASE IF NOT EXISTS, the first migration step. */
export function createDatabaseSql(database: string): string {
  return `CREATE DATABASE IF NOT EXISTS \`${database}\``;
}

/** The idempotent CREATE TABLE of `table` in `database`. */
export function createTableSql(database: string, table: TableName): string {
  const spec: TableSpec = TABLES[table];
  const columns = spec.columns.map(([name, type]) => `  \`${name}\` ${type}`).join(',\n');
  const partition = spec.partitionBy ? `\nPARTITION BY ${spec.partitionBy}` : '';
  return `CREATE TABLE IF NOT EXISTS ${qualified(database, table)}\n(\n${columns}\n)\nENGINE = ${spec.engine}${partition}\nORDER BY ${spec.orderBy}`;
}

/** One schema version: applied once, then recorded in schema_migrations. */
export interface Migration {
  readonly version: number;
  readonly name: string;
  /** Statements to run in order; each must be idempotent (a crash may stop between them). */
  statements(database: string): string[];
}

/** Applied in version order; schema_migrations itself is created before any of them. */
export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'create invocations, logs, container_events, functions',
    statements: (db) => (['invocations', 'logs', 'container_events', 'functions'] as const).map((t) => createTableSql(db, t)),
  },
];
