/**
 * The gateway's read routes over storage: invocations (filtered, cursor-paged), one invocation
 * with its logs, per-function stats over a time window, and storage's own counters. Every
 * query goes through storage's query layer, the same for chDB and the ClickHouse server.
 */
import type { TemplatedApp } from 'uWebSockets.js';
import { SkiffError, toSkiffError } from '../errors.ts';
import type { Logger } from '../logger.ts';
import type { RuntimeStats } from '../runtime-stats.ts';
import type { InvocationQuery, Storage } from '../storage/index.ts';
import { openRequest, sendError, sendJson, type RequestContext } from './http.ts';

/** An executor as GET /system/stats shows it: its node, when it was last heard, its runtime's pauses. */
export interface ExecutorRuntime {
  nodeId: string;
  lastSeenMs: number;
  /** From its last heartbeat; absent until one carried it. */
  runtime?: RuntimeStats;
}

export interface QueryRouteDeps {
  storage: Storage;
  logger: Logger;
  /** This gateway process's GC pauses and event-loop delay. */
  runtime: () => RuntimeStats;
  /** The connected executors, with theirs. */
  executorRuntimes: () => ExecutorRuntime[];
  /** The async journal's view of an invocation (queued → running → finished), consulted before storage. */
  asyncInvocation?: (id: string) => Promise<unknown>;
}

const INVOCATION_LIST_MAX = 1000;
const STATUSES = new Set(['ok', 'error', 'timeout', 'rejected']);
/** `none` selects calls that never reached a container (rejected, no executor). */
const START_TYPES: Readonly<Record<string, string>> = { cold: 'cold', warm: 'warm', stemcell: 'stemcell', none: '' };
const DEFAULT_STATS_WINDOW = '1h';
const MAX_STATS_WINDOW_MS = 90 * 24 * 3_600_000;
const WINDOW_UNITS_MS: Readonly<Record<string, number>> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
const TRACE_ID = /^[0-9a-f]{32}$/;

/** Registers GET /system/invocations, /system/invocations/:id, /system/functions/:name/stats and /system/stats. */
export function registerQueryRoutes(app: TemplatedApp, deps: QueryRouteDeps): void {
  app.get('/system/invocations', (res, req) => {
    const ctx = openRequest(res);
    const rawQuery = req.getQuery() ?? '';
    answer(ctx, deps.logger, async () => {
      const query = parseInvocationQuery(new URLSearchParams(rawQuery));
      const page = await deps.storage.listInvocations(query);
      const headers: Record<string, string> = {};
      if (page.nextCursor !== null) {
        const next = new URLSearchParams(rawQuery);
        next.set('cursor', page.nextCursor);
        headers['x-next-cursor'] = page.nextCursor;
        headers.link = `</system/invocations?${next}>; rel="next"`;
      }
      sendJson(ctx, 200, page.records, headers);
    });
  });

  app.get('/system/invocations/:id', (res, req) => {
    const ctx = openRequest(res);
    const rawId = req.getParameter(0) ?? '';
    answer(ctx, deps.logger, async () => {
      const id = decodePathSegment(rawId, 'invocation id');
      const pending = await deps.asyncInvocation?.(id);
      if (pending !== undefined) return sendJson(ctx, 200, pending);
      const found = await deps.storage.getInvocation(id);
      if (!found) throw new SkiffError('INVOCATION_NOT_FOUND', `no invocation with id "${id}"`);
      sendJson(ctx, 200, { ...found.record, logs: found.logs });
    });
  });

  app.get('/system/functions/:name/stats', (res, req) => {
    const ctx = openRequest(res);
    const rawName = req.getParameter(0) ?? '';
    const window = new URLSearchParams(req.getQuery() ?? '').get('window') ?? DEFAULT_STATS_WINDOW;
    answer(ctx, deps.logger, async () => {
      const name = decodePathSegment(rawName, 'function name');
      const windowMs = parseWindow(window);
      const untilMs = Date.now() + 1;
      const stats = await deps.storage.functionStats(name, untilMs - windowMs, untilMs);
      sendJson(ctx, 200, { ...stats, window, windowMs });
    });
  });

  app.get('/system/stats', (res) => {
    const ctx = openRequest(res);
    answer(ctx, deps.logger, async () => sendJson(ctx, 200, { storage: deps.storage.stats(), gateway: { runtime: deps.runtime() }, executors: deps.executorRuntimes() }));
  });
}

/** Query string → storage filter; throws BAD_REQUEST naming the parameter. */
export function parseInvocationQuery(params: URLSearchParams): InvocationQuery {
  const q: InvocationQuery = {};
  const fn = params.get('function');
  if (fn !== null && fn !== '') q.function = fn;
  const status = params.get('status');
  if (status !== null) {
    if (!STATUSES.has(status)) throw new SkiffError('BAD_REQUEST', `status must be one of ${[...STATUSES].join(', ')}`);
    q.status = status;
  }
  const start = params.get('start');
  if (start !== null) {
    if (!Object.hasOwn(START_TYPES, start)) throw new SkiffError('BAD_REQUEST', `start must be one of ${Object.keys(START_TYPES).join(', ')}`);
    q.start = START_TYPES[start];
  }
  const traceId = params.get('traceId') ?? params.get('trace_id');
  if (traceId !== null) {
    if (!TRACE_ID.test(traceId)) throw new SkiffError('BAD_REQUEST', 'traceId must be 32 lower-case hex digits (the trace id of a W3C traceparent)');
    q.traceId = traceId;
  }
  const since = params.get('since');
  if (since !== null) q.sinceMs = parseTime(since, 'since');
  const until = params.get('until');
  if (until !== null) q.untilMs = parseTime(until, 'until');
  const cursor = params.get('cursor');
  if (cursor !== null && cursor !== '') q.cursor = cursor;
  const limitText = params.get('limit');
  if (limitText !== null) {
    const limit = Number(limitText);
    if (!Number.isInteger(limit) || limit < 1 || limit > INVOCATION_LIST_MAX) throw new SkiffError('BAD_REQUEST', `limit must be an integer from 1 to ${INVOCATION_LIST_MAX}`);
    q.limit = limit;
  }
  return q;
}

/** A percent-encoded path segment; BAD_REQUEST when it is not valid percent-encoding. */
function decodePathSegment(raw: string, what: string): string {
  try {
    return decodeURIComponent(raw);
  } catch {
    throw new SkiffError('BAD_REQUEST', `${what} is not valid percent-encoding`);
  }
}

/** Epoch milliseconds, or an ISO 8601 date-time. */
function parseTime(value: string, name: string): number {
  // Only digits or an ISO date: Date.parse alone also reads loose forms such as "-5" or "May 3".
  const ms = /^\d+$/.test(value) ? Number(value) : /^\d{4}-\d{2}-\d{2}/.test(value) ? Date.parse(value) : Number.NaN;
  if (!Number.isSafeInteger(ms) || ms < 0) throw new SkiffError('BAD_REQUEST', `${name} must be epoch milliseconds or an ISO 8601 date-time`);
  return ms;
}

/** `90s`, `15m`, `1h`, `7d`, `500ms` or plain milliseconds → milliseconds, at most 90 days. */
export function parseWindow(value: string): number {
  const match = /^(\d+)(ms|s|m|h|d)?$/.exec(value);
  const ms = match ? Number(match[1]) * WINDOW_UNITS_MS[match[2] ?? 'ms'] : Number.NaN;
  if (!Number.isSafeInteger(ms) || ms <= 0 || ms > MAX_STATS_WINDOW_MS) {
    throw new SkiffError('BAD_REQUEST', 'window must be a positive duration such as 90s, 15m, 1h or 7d (at most 90d)');
  }
  return ms;
}

/** Runs an async handler and turns any throw into a Skiff error response. */
function answer(ctx: RequestContext, logger: Logger, work: () => Promise<void>): void {
  work().catch((err: unknown) => {
    const skiffError = toSkiffError(err);
    if (skiffError.code === 'INTERNAL_ERROR') logger.error({ err }, 'request failed');
    sendError(ctx, skiffError);
  });
}
