/**
 * The SELECTs storage runs, as SQL text both backends accept. ClickHouse 18.16 has no query
 * parameters ({name:Type} arrived in 19.x), so values are inlined as escaped string literals.
 */
import { columnList, qualified, type TableName } from './schema.ts';
import type { ContainerEventQuery, InvocationQuery } from './types.ts';

export const DEFAULT_LIST_LIMIT = 50;
export const MAX_LIST_LIMIT = 1000;
/** Log lines returned with one invocation. */
export const MAX_LOG_ROWS = 10_000;

/** A ClickHouse string literal: backslash and quote escaped, so any JS string is safe. */
export function literal(value: string): string {
  return `'${value.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
}

/** A list limit: default when absent, between 1 and MAX_LIST_LIMIT otherwise. */
export function clampLimit(limit: number | undefined): number {
  if (limit === undefined || !Number.isFinite(limit)) return DEFAULT_LIST_LIMIT;
  return Math.min(Math.max(Math.trunc(limit), 1), MAX_LIST_LIMIT);
}

function where(conditions: string[]): string {
  return conditions.length > 0 ? `WHERE ${conditions.join(' AND ')}` : '';
}

function from(db: string, table: TableName): string {
  return `SELECT ${columnList(table)} FROM ${qualified(db, table)}`;
}

/**
 * Newest invocations first. Dedup comes before the status filter so a retried call whose newest
 * version is 'ok' never shows its older 'error' row; the function filter is safe inside (an id
 * never changes function).
 */
export function listInvocationsSql(db: string, q: InvocationQuery): string {
  const inner = where(q.function !== undefined ? [`\`function\` = ${literal(q.function)}`] : []);
  const outer = where(q.status !== undefined ? [`status = ${literal(q.status)}`] : []);
  return [
    `SELECT ${columnList('invocations')} FROM (`,
    `${from(db, 'invocations')} ${inner}`,
    'ORDER BY finished_at_ms DESC, attempt DESC LIMIT 1 BY id',
    `) ${outer}`,
    `ORDER BY received_at_ms DESC, id DESC LIMIT ${clampLimit(q.limit)}`,
  ].join('\n');
}

/** The newest version of one invocation. */
export function getInvocationSql(db: string, id: string): string {
  return `${from(db, 'invocations')} WHERE id = ${literal(id)} ORDER BY finished_at_ms DESC, attempt DESC LIMIT 1`;
}

/** Lines of one invocation in time order; `function` narrows the scan to the primary key prefix. */
export function invocationLogsSql(db: string, invocationId: string, fn: string): string {
  return [
    `${from(db, 'logs')} WHERE \`function\` = ${literal(fn)} AND invocation_id = ${literal(invocationId)}`,
    `ORDER BY time_ms, seq, line_id LIMIT 1 BY line_id LIMIT ${MAX_LOG_ROWS}`,
  ].join('\n');
}

/** Container events newest first, deduplicated by event id. */
export function listContainerEventsSql(db: string, q: ContainerEventQuery): string {
  const conditions: string[] = [];
  if (q.function !== undefined) conditions.push(`\`function\` = ${literal(q.function)}`);
  if (q.containerId !== undefined) conditions.push(`container_id = ${literal(q.containerId)}`);
  return [
    `SELECT ${columnList('container_events')} FROM (`,
    `${from(db, 'container_events')} ${where(conditions)} LIMIT 1 BY event_id`,
    `) ORDER BY time_ms DESC, event_id DESC LIMIT ${clampLimit(q.limit)}`,
  ].join('\n');
}

/** The newest version of every function (a same-version rewrite resolves to its latest write). */
export function latestFunctionsSql(db: string): string {
  return `${from(db, 'functions')} ORDER BY name, namespace, version DESC, created_at_ms DESC LIMIT 1 BY name, namespace`;
}

/** Migration versions already applied. */
export function appliedMigrationsSql(db: string): string {
  return `${from(db, 'schema_migrations')} ORDER BY version LIMIT 1 BY version`;
}

/**
 * A write that writes nothing: an INSERT … SELECT of zero rows still goes through the insert
 * path's permission and read-only checks, without leaving a probe row behind.
 */
export function writeProbeSql(db: string): string {
  const t = qualified(db, 'schema_migrations');
  return `INSERT INTO ${t} (${columnList('schema_migrations')}) SELECT ${columnList('schema_migrations')} FROM ${t} WHERE 0`;
}
