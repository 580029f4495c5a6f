/** Brings a database up to the latest schema; every step is idempotent, so running it twice is safe. */
import type { Logger } from 'pino';
import type { Backend } from './backend.ts';
import { appliedMigrationsSql } from './queries.ts';
import { createDatabaseSql, createTableSql, MIGRATIONS } from './schema.ts';

/** Creates the database and schema_migrations, then applies and records each missing migration in order. */
export async function migrate(backend: Backend, database: string, logger: Logger): Promise<void> {
  await backend.command(createDatabaseSql(database));
  await backend.command(createTableSql(database, 'schema_migrations'));
  const applied = new Set((await backend.select('schema_migrations', appliedMigrationsSql(database))).map((m) => m.version));
  for (const migration of MIGRATIONS) {
    if (applied.has(migration.version)) continue;
    for (const statement of migration.statements(database)) await backend.command(statement);
    await backend.insert('schema_migrations', [{ version: migration.version, name: migration.name, appliedAtMs: Date.now() }]);
    logger.info({ database, version: migration.version, migration: migration.name }, 'storage migration applied');
  }
}
