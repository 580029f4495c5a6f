/**
 * Brings a database up to the latest schema, on one server or on every server of a cluster
 * (storage.cluster), from the same migrations. Every step is idempotent, so running it twice —
 * or again after a crash anywhere in it — is safe; applied versions are recorded in
 * schema_migrations.
 */
import type { Logger } from 'pino';
import { SkiffError } from '../errors.ts';
import type { Backend } from './backend.ts';
import { appliedMigrationsSql, literal } from './queries.ts';
import {
  addColumnSql,
  columnList,
  columnNames,
  columnType,
  createDatabaseSql,
  createTableStatements,
  expectedEngines,
  localTableName,
  qualified,
  rebuildDistributedStatements,
  TABLE_NAMES,
  type SchemaTarget,
  type TableName,
} from './schema.ts';

/** What a migration step may ask of the database (a subset of Backend, so steps stay testable). */
export interface MigrationContext {
  command(sql: string): Promise<void>;
  /** Column names of `database`.`table` on the server storage talks to ([] when it does not exist). */
  columnsOf(table: string): Promise<string[]>;
}

/** One schema version: applied once, then recorded in schema_migrations. */
export interface Migration {
  readonly version: number;
  readonly name: string;
  /** Runs the migration; it must be idempotent (a crash may stop it anywhere, and it runs again). */
  apply(target: SchemaTarget, ctx: MigrationContext): Promise<void>;
}

async function createTable(target: SchemaTarget, ctx: MigrationContext, table: TableName): Promise<void> {
  for (const sql of createTableStatements(target, table)) await ctx.command(sql);
}

/**
 * Adds `column` (placed after `after`) where it is missing. On a cluster the local tables are
 * altered ON CLUSTER, then the Distributed table is rebuilt. Checking the server storage talks
 * to is enough there: ON CLUSTER work is queued in ZooKeeper and runs on every server, so once
 * this server has the column every server has it or will. Another gateway migrating at the same
 * time may add it first: the ALTER then fails, and a second look settles it.
 */
async function ensureColumn(target: SchemaTarget, ctx: MigrationContext, table: TableName, column: string, after: string): Promise<void> {
  const stored = target.cluster ? localTableName(table) : table;
  if (!(await ctx.columnsOf(stored)).includes(column)) {
    try {
      await ctx.command(addColumnSql(target, table, column, after));
    } catch (err) {
      if (!(await ctx.columnsOf(stored)).includes(column)) throw err;
    }
  }
  if (target.cluster && !(await ctx.columnsOf(table)).includes(column)) {
    for (const sql of rebuildDistributedStatements(target, table)) await ctx.command(sql);
  }
}

/** Version 1's invocations table (ordered by function and id; no queued/started timestamps). */
const INVOCATIONS_V1_OLD = 'invocations_v1_old';
/** Columns a version-1 invocations table lacks, with the expression they take for its rows (others: 0 or ''). */
const INVOCATIONS_V2_FILL: Readonly<Record<string, string>> = { queued_at_ms: '`received_at_ms`', started_at_ms: '`received_at_ms`' };

/** Applied in version order; schema_migrations itself is created before any of them. */
export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'create invocations, logs, container_events, functions',
    async apply(target, ctx) {
      // A fresh database gets the current shape at once; later versions then find nothing to change.
      for (const t of ['invocations', 'logs', 'container_events', 'functions'] as const) await createTable(target, ctx, t);
    },
  },
  {
    version: 2,
    name: 'invocations ordered by function and time, identity (id, attempt), queued/started timestamps',
    async apply(target, ctx) {
      // A cluster schema is born at version 1 in the current shape: there is no v1 table to convert.
      if (target.cluster) return createTable(target, ctx, 'invocations');
      // Sorting keys cannot be altered on 18.16: rename the v1 table aside, create v2, copy, drop.
      // Each step is guarded, and a repeated copy only adds duplicates that reads dedup anyway.
      const db = target.database;
      const current = await ctx.columnsOf('invocations');
      if (current.length > 0 && !current.includes('started_at_ms')) {
        await ctx.command(`RENAME TABLE \`${db}\`.\`invocations\` TO \`${db}\`.\`${INVOCATIONS_V1_OLD}\``);
      }
      await createTable(target, ctx, 'invocations');
      const old = await ctx.columnsOf(INVOCATIONS_V1_OLD);
      if (old.length === 0) return;
      const select = columnNames('invocations')
        .map((c) => (old.includes(c) ? `\`${c}\`` : (INVOCATIONS_V2_FILL[c] ?? (columnType('invocations', c) === 'String' ? "''" : '0'))))
        .join(', ');
      await ctx.command(`INSERT INTO ${qualified(db, 'invocations')} (${columnList('invocations')}) SELECT ${select} FROM \`${db}\`.\`${INVOCATIONS_V1_OLD}\``);
      await ctx.command(`DROP TABLE IF EXISTS \`${db}\`.\`${INVOCATIONS_V1_OLD}\``);
    },
  },
  {
    version: 3,
    name: 'invocations.create_us: container create time of cold starts',
    async apply(target, ctx) {
      // Rows written before it read 0, as a warm start's does.
      await ensureColumn(target, ctx, 'invocations', 'create_us', 'init_us');
    },
  },
];

function contextFor(backend: Backend, database: string): MigrationContext {
  return {
    command: (sql) => backend.command(sql),
    columnsOf: async (table) => {
      const rows = await backend.rows(`SELECT name FROM system.columns WHERE database = ${literal(database)} AND table = ${literal(table)}`);
      return rows.map((r) => String(r.name));
    },
  };
}

/**
 * Refuses a schema of the other layout: a single-server database under storage.cluster (its
 * tables would shadow the Distributed ones) or a cluster's database without it (migrations would
 * alter Distributed tables only). Moving data between layouts is an operator's job (docs/deploy.md).
 */
async function checkLayout(backend: Backend, target: SchemaTarget): Promise<void> {
  const rows = await backend.rows(`SELECT name, engine FROM system.tables WHERE database = ${literal(target.database)}`);
  const engines = new Map(rows.map((r) => [String(r.name), String(r.engine)]));
  for (const table of TABLE_NAMES) {
    for (const { name, engine } of expectedEngines(target, table)) {
      const found = engines.get(name);
      if (found === undefined || found === engine) continue;
      const hint = target.cluster
        ? `storage.cluster.name is "${target.cluster.name}" (replicated: ${target.cluster.replicated})`
        : 'storage.cluster.name is empty (one server)';
      throw new SkiffError('STORAGE_UNAVAILABLE', `storage schema mismatch: ${target.database}.${name} is a ${found} table, but ${hint} expects ${engine}; use another storage.database or move the data by hand (docs/deploy.md)`);
    }
  }
}

/**
 * Fails with a clear message when storage.cluster names a cluster the server does not define, and
 * warns when inserts into Distributed tables are asynchronous for storage's user.
 */
async function checkCluster(backend: Backend, target: SchemaTarget, logger: Logger): Promise<void> {
  if (!target.cluster) return;
  const found = await backend.rows(`SELECT count() AS hosts FROM system.clusters WHERE cluster = ${literal(target.cluster.name)}`);
  if (Number(found[0]?.hosts ?? 0) === 0) {
    throw new SkiffError('STORAGE_UNAVAILABLE', `storage.cluster.name "${target.cluster.name}" is not a cluster of this ClickHouse server (define it under <remote_servers>)`);
  }
  const [sync] = await backend.rows("SELECT value FROM system.settings WHERE name = 'insert_distributed_sync'");
  if (String(sync?.value ?? '0') === '0') {
    logger.warn(
      { cluster: target.cluster.name },
      "storage: insert_distributed_sync is 0 for this ClickHouse user: an insert is acknowledged before the shards have it, so a shard's outage is ClickHouse's to retry, not storage's (set it to 1 in the user's profile, docs/deploy.md)",
    );
  }
}

/**
 * Creates the database and schema_migrations, then applies and records each missing migration in
 * order. `target.cluster` set: every statement runs ON CLUSTER (ClickHouse's distributed DDL,
 * which needs ZooKeeper) and waits for every server.
 */
export async function migrate(backend: Backend, target: SchemaTarget, logger: Logger): Promise<void> {
  await checkCluster(backend, target, logger);
  await backend.command(createDatabaseSql(target));
  await checkLayout(backend, target);
  for (const sql of createTableStatements(target, 'schema_migrations')) await backend.command(sql);
  const applied = new Set((await backend.select('schema_migrations', appliedMigrationsSql(target.database))).map((m) => m.version));
  const ctx = contextFor(backend, target.database);
  for (const migration of MIGRATIONS) {
    if (applied.has(migration.version)) continue;
    await migration.apply(target, ctx);
    await backend.insert('schema_migrations', [{ version: migration.version, name: migration.name, appliedAtMs: Date.now() }]);
    logger.info({ database: target.database, cluster: target.cluster?.name, version: migration.version, migration: migration.name }, 'storage migration applied');
  }
  if (backend.kind === 'chdb') {
    for (const table of EMBEDDED_MERGE_TUNED_TABLES) {
      // A database a migration left without one (tests build such) has nothing to tune there.
      if ((await ctx.columnsOf(table)).length > 0) await backend.command(embeddedMergeSettingSql(target.database, table));
    }
  }
}

/**
 * merge_selector_base of the embedded engine's tables (ClickHouse's default 5). The embedded engine
 * runs on the gateway's cores, where background merges compete with calls: a larger base merges
 * parts only once more of a like size have gathered, so each row is rewritten fewer times (a
 * logs table fed 10,000-row batches: ~25 % less CPU per row, inserts and merges together), for
 * a few more active parts per partition (tens), which reads hardly notice. A server's merges are
 * its operator's to tune (18.16 has no such setting).
 */
export const EMBEDDED_MERGE_SELECTOR_BASE = 20;

/** The batched tables (written all the time) whose merges the embedded engine tunes. */
const EMBEDDED_MERGE_TUNED_TABLES = ['invocations', 'logs', 'container_events'] as const;

/** Sets EMBEDDED_MERGE_SELECTOR_BASE on one table of the embedded engine; idempotent, run at every open. */
function embeddedMergeSettingSql(database: string, table: TableName): string {
  return `ALTER TABLE ${qualified(database, table)} MODIFY SETTING merge_selector_base = ${EMBEDDED_MERGE_SELECTOR_BASE}`;
}
