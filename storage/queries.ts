/**
 * The SELECTs storage runs, as SQL text both backends accept. ClickHouse 18.16 has no query
 * parameters ({name:Type} arrived in 19.x), so values are inlined as escaped string literals.
 */
import { SkiffError } from '../errors.ts';
import { columnList, qualified, type TableName } from './schema.ts';
import type { ContainerEventQuery, InvocationQuery, InvocationRecord } from './types.ts';

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

/** Where a page ended: the (receivedAtMs, id) of its last row, opaque to callers. */
export function encodeCursor(last: Pick<InvocationRecord, 'receivedAtMs' | 'id'>): string {
  return Buffer.from(JSON.stringify([last.receivedAtMs, last.id])).toString('base64url');
}

/** Reads a cursor; throws BAD_REQUEST for anything encodeCursor did not make. */
export function decodeCursor(cursor: string): { receivedAtMs: number; id: string } {
  try {
    const value: unknown = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
    if (Array.isArray(value) && value.length === 2 && Number.isSafeInteger(value[0]) && value[0] >= 0 && typeof value[1] === 'string') {
      return { receivedAtMs: value[0] as number, id: value[1] };
    }
  } catch {
    // fall through
  }
  throw new SkiffError('BAD_REQUEST', 'cursor is not a cursor this API returned');
}

/** Newest first, with the newest attempt winning: the order LIMIT 1 BY keeps. */
const NEWEST_ATTEMPT = 'ORDER BY finished_at_ms DESC, attempt DESC LIMIT 1 BY id';

/**
 * Newest invocations first, one row per id (its newest attempt), `limit + 1` rows so the caller
 * knows whether there is a next page. Conditions on what never changes between attempts
 * (function, time received, trace id, the cursor's position) go inside the dedup, where they
 * narrow the scan; conditions on the outcome (status, start type) go outside, so a retried call
 * whose newest attempt is 'ok' never shows its older 'error'.
 */
export function listInvocationsSql(db: string, q: InvocationQuery): string {
  const inner: string[] = [];
  if (q.function !== undefined) inner.push(`\`function\` = ${literal(q.function)}`);
  if (q.traceId !== undefined) inner.push(`trace_id = ${literal(q.traceId)}`);
  if (q.sinceMs !== undefined) inner.push(`received_at_ms >= ${Math.max(0, Math.trunc(q.sinceMs))}`);
  if (q.untilMs !== undefined) inner.push(`received_at_ms < ${Math.max(0, Math.trunc(q.untilMs))}`);
  if (q.cursor !== undefined) {
    const { receivedAtMs, id } = decodeCursor(q.cursor);
    inner.push(`(received_at_ms < ${receivedAtMs} OR (received_at_ms = ${receivedAtMs} AND id < ${literal(id)}))`);
  }
  const outer: string[] = [];
  if (q.status !== undefined) outer.push(`status = ${literal(q.status)}`);
  if (q.start !== undefined) outer.push(`start = ${literal(q.start)}`);
  return [
    `SELECT ${columnList('invocations')} FROM (`,
    `${from(db, 'invocations')} ${where(inner)}`,
    NEWEST_ATTEMPT,
    `) ${where(outer)}`,
    `ORDER BY received_at_ms DESC, id DESC LIMIT ${clampLimit(q.limit) + 1}`,
  ].join('\n');
}

/**
 * One function's numbers over [sinceMs, untilMs), each invocation once (its newest attempt).
 * quantilesExact: the window's values are sorted once per column; exact at this scale, and
 * the same result on 18.16 and chDB (quantiles() samples, so the backends would differ).
 */
export function functionStatsSql(db: string, fn: string, sinceMs: number, untilMs: number): string {
  return [
    'SELECT count() AS count,',
    "  countIf(status = 'ok') AS ok, countIf(status = 'error') AS error, countIf(status = 'timeout') AS timeout, countIf(status = 'rejected') AS rejected,",
    "  countIf(start = 'cold') AS cold,",
    '  quantilesExact(0.5, 0.95, 0.99)(total_us) AS total_us, quantilesExact(0.5, 0.95, 0.99)(run_us) AS run_us,',
    '  sum(request_bytes) AS request_bytes, sum(response_bytes) AS response_bytes',
    `FROM (SELECT id, attempt, finished_at_ms, status, start, total_us, run_us, request_bytes, response_bytes FROM ${qualified(db, 'invocations')}`,
    `  WHERE \`function\` = ${literal(fn)} AND received_at_ms >= ${Math.max(0, Math.trunc(sinceMs))} AND received_at_ms < ${Math.max(0, Math.trunc(untilMs))}`,
    `  ${NEWEST_ATTEMPT})`,
  ].join('\n');
}

/** Rows and distinct ids of `fn` as stored (before dedup): what the outage test compares. */
export function rawInvocationCountsSql(db: string, fn: string): string {
  return `SELECT count() AS rows, uniqExact(id) AS ids FROM ${qualified(db, 'invocations')} WHERE \`function\` = ${literal(fn)}`;
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
