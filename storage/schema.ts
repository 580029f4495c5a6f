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
      ['run_us', 'UInt64'],
      ['total_us', 'UInt64'],
      ['request_bytes', 'UInt64'],
      ['response_bytes', 'UInt64'],
      ['trace_id', 'String'],
    ],
    engine: 'ReplacingMergeTree(finished_at_ms)',
    partitionBy: monthOf('received_at_ms'),
    // By function and time for lists and stats; (id, attempt) last makes it the row's identity.
    orderBy: '(`function`, received_at_ms, id, attempt)',
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

/** What a migration step may ask of the database (a subset of Backend, so schema.ts stays pure). */
export interface MigrationContext {
  command(sql: string): Promise<void>;
  /** True when `database`.`table` exists. */
  tableExists(table: string): Promise<boolean>;
  /** Column names of `database`.`table` ([] when it does not exist). */
  columnsOf(table: string): Promise<string[]>;
}

/** One schema version: applied once, then recorded in schema_migrations. */
export interface Migration {
  readonly version: number;
  readonly name: string;
  /** Runs the migration; it must be idempotent (a crash may stop it anywhere, and it runs again). */
  apply(database: string, ctx: MigrationContext): Promise<void>;
}

/** Version 1's invocations table (ordered by function and id; no queued/started timestamps). */
const INVOCATIONS_V1_OLD = 'invocations_v1_old';
/** Columns v2 added to invocations, with the value they take for rows written by v1. */
const INVOCATIONS_V2_FILL: Readonly<Record<string, string>> = { queued_at_ms: 'received_at_ms', started_at_ms: 'received_at_ms' };

/** Applied in version order; schema_migrations itself is created before any of them. */
export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'create invocations, logs, container_events, functions',
    async apply(db, ctx) {
      // A fresh database gets the current shape at once; v2 then finds nothing to convert.
      for (const t of ['invocations', 'logs', 'container_events', 'functions'] as const) await ctx.command(createTableSql(db, t));
    },
  },
  {
    version: 2,
    name: 'invocations ordered by function and time, identity (id, attempt), queued/started timestamps',
    async apply(db, ctx) {
      // Sorting keys cannot be altered on 18.16: rename the v1 table aside, create v2, copy, drop.
      // Each step is guarded, and a repeated copy only adds duplicates that reads dedup anyway.
      const current = await ctx.columnsOf('invocations');
      if (current.length > 0 && !current.includes('started_at_ms')) {
        await ctx.command(`RENAME TABLE \`${db}\`.\`invocations\` TO \`${db}\`.\`${INVOCATIONS_V1_OLD}\``);
      }
      await ctx.command(createTableSql(db, 'invocations'));
      if (!(await ctx.tableExists(INVOCATIONS_V1_OLD))) return;
      const select = columnNames('invocations').map((c) => `\`${INVOCATIONS_V2_FILL[c] ?? c}\``).join(', ');
      await ctx.command(`INSERT INTO ${qualified(db, 'invocations')} (${columnList('invocations')}) SELECT ${select} FROM \`${db}\`.\`${INVOCATIONS_V1_OLD}\``);
      await ctx.command(`DROP TABLE IF EXISTS \`${db}\`.\`${INVOCATIONS_V1_OLD}\``);
    },
  },
];
