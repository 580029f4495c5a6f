/** Brings a database up to the latest schema; every step is idempotent, so running it twice is safe. */
import type { Logger } from 'pino';
import type { Backend } from './backend.ts';
import { appliedMigrationsSql, literal } from './queries.ts';
import { createDatabaseSql, createTableSql, MIGRATIONS, type MigrationContext } from './schema.ts';

function contextFor(backend: Backend, database: string): MigrationContext {
  const columnsOf = async (table: string): Promise<string[]> => {
    const rows = await backend.rows(`SELECT name FROM system.columns WHERE database = ${literal(database)} AND table = ${literal(table)}`);
    return rows.map((r) => String(r.name));
  };
  return {
    command: (sql) => backend.command(sql),
    columnsOf,
    tableExists: async (table) => (await backend.rows(`SELECT name FROM system.tables WHERE database = ${literal(database)} AND name = ${literal(table)}`)).length > 0,
  };
}

/** Creates the database and schema_migrations, then applies and records each missing migration in order. */
export async function migrate(backend: Backend, database: string, logger: Logger): Promise<void> {
  await backend.command(createDatabaseSql(database));
  await backend.command(createTableSql(database, 'schema_migrations'));
  const applied = new Set((await backend.select('schema_migrations', appliedMigrationsSql(database))).map((m) => m.version));
  const ctx = contextFor(backend, database);
  for (const migration of MIGRATIONS) {
    if (applied.has(migration.version)) continue;
    await migration.apply(database, ctx);
    await backend.insert('schema_migrations', [{ version: migration.version, name: migration.name, appliedAtMs: Date.now() }]);
    logger.info({ database, version: migration.version, migration: migration.name }, 'storage migration applied');
  }
}
