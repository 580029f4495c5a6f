/**
 * Record ⇄ row codecs, one per table. Encoding clamps every number to its column's range so one
 * malformed record can never make a whole batch fail; decoding turns ClickHouse's quoted 64-bit
 * integers back into numbers. Runs inside the chDB worker too (no imports with side effects).
 */
import type { ContainerEvent, LogLine } from '../bus/messages.ts';
import type { TableName } from './schema.ts';
import type { InvocationRecord, StoredFunction } from './types.ts';

/** A log line as stored: `lineId` is its deduplication key, `seq` orders lines of the same ms. */
export interface StoredLogLine extends LogLine {
  seq: number;
  lineId: string;
}

/** A container event as stored, with its deduplication key. */
export interface StoredContainerEvent extends ContainerEvent {
  eventId: string;
}

/** A row of schema_migrations. */
export interface MigrationRecord {
  version: number;
  name: string;
  appliedAtMs: number;
}

/** The record type kept in each table. */
export interface RecordOf {
  invocations: InvocationRecord;
  logs: StoredLogLine;
  container_events: StoredContainerEvent;
  functions: StoredFunction;
  schema_migrations: MigrationRecord;
}

/** A row as JSONEachRow sees it: column name → value. */
export type Row = Record<string, string | number>;

const MAX = { u8: 0xff, u16: 0xffff, u32: 0xffff_ffff, u64: Number.MAX_SAFE_INTEGER } as const;

function uint(max: number): (value: unknown) => number {
  return (value) => {
    const n = typeof value === 'number' ? value : Number(value);
    return Number.isFinite(n) && n > 0 ? Math.min(Math.trunc(n), max) : 0;
  };
}
const u8 = uint(MAX.u8);
const u16 = uint(MAX.u16);
const u32 = uint(MAX.u32);
const u64 = uint(MAX.u64);
const text = (value: unknown): string => (typeof value === 'string' ? value : value === undefined || value === null ? '' : String(value));
const flag = (value: unknown): number => (value === true || value === 1 || value === '1' ? 1 : 0);

function parseEnv(value: unknown): Record<string, string> {
  try {
    const parsed: unknown = JSON.parse(text(value) || '{}');
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return {};
    return Object.fromEntries(Object.entries(parsed).map(([k, v]) => [k, text(v)]));
  } catch {
    return {};
  }
}

interface Codec<T> {
  encode(record: T): Row;
  decode(row: Row): T;
}

const invocations: Codec<InvocationRecord> = {
  encode: (r) => ({
    id: text(r.id),
    namespace: text(r.namespace),
    function: text(r.function),
    version: u32(r.version),
    executor: text(r.executor),
    container_id: text(r.containerId),
    trigger: text(r.trigger),
    attempt: u16(r.attempt),
    status: text(r.status),
    error_code: text(r.errorCode),
    http_status: u16(r.httpStatus),
    start: text(r.start),
    received_at_ms: u64(r.receivedAtMs),
    queued_at_ms: u64(r.queuedAtMs ?? r.receivedAtMs),
    started_at_ms: u64(r.startedAtMs ?? Math.max(u64(r.receivedAtMs), u64(r.finishedAtMs) - Math.round(u64(r.runUs) / 1000))),
    finished_at_ms: u64(r.finishedAtMs),
    queue_us: u64(r.queueUs),
    init_us: u64(r.initUs),
    create_us: u64(r.createUs),
    run_us: u64(r.runUs),
    total_us: u64(r.totalUs),
    request_bytes: u64(r.requestBytes),
    response_bytes: u64(r.responseBytes),
    trace_id: text(r.traceId),
  }),
  decode: (r) => ({
    id: text(r.id),
    namespace: text(r.namespace),
    function: text(r.function),
    version: u32(r.version),
    executor: text(r.executor),
    containerId: text(r.container_id),
    trigger: text(r.trigger) as InvocationRecord['trigger'],
    attempt: u16(r.attempt),
    status: text(r.status) as InvocationRecord['status'],
    errorCode: text(r.error_code),
    httpStatus: u16(r.http_status),
    start: text(r.start) as InvocationRecord['start'],
    receivedAtMs: u64(r.received_at_ms),
    queuedAtMs: u64(r.queued_at_ms),
    startedAtMs: u64(r.started_at_ms),
    finishedAtMs: u64(r.finished_at_ms),
    queueUs: u64(r.queue_us),
    initUs: u64(r.init_us),
    createUs: u64(r.create_us),
    runUs: u64(r.run_us),
    totalUs: u64(r.total_us),
    requestBytes: u64(r.request_bytes),
    responseBytes: u64(r.response_bytes),
    traceId: text(r.trace_id),
  }),
};

/**
 * The longest log line stored, in UTF-16 code units. The executor already cuts lines at
 * executor.maxLogLineBytes (4 KiB by default) and marks them truncated; this cap guards the table
 * against a writer that did not, and marks what it cuts the same way.
 */
export const MAX_STORED_LOG_LINE_CHARS = 64 * 1024;

const logs: Codec<StoredLogLine> = {
  encode: (r) => {
    const line = text(r.line);
    const cut = line.length > MAX_STORED_LOG_LINE_CHARS;
    return {
      invocation_id: text(r.invocationId),
      function: text(r.function),
      container_id: text(r.containerId),
      time_ms: u64(r.timeMs),
      seq: u64(r.seq),
      line_id: text(r.lineId),
      stream: text(r.stream),
      line: cut ? line.slice(0, MAX_STORED_LOG_LINE_CHARS) : line,
      truncated: cut ? 1 : flag(r.truncated),
    };
  },
  decode: (r) => ({
    invocationId: text(r.invocation_id),
    function: text(r.function),
    containerId: text(r.container_id),
    timeMs: u64(r.time_ms),
    seq: u64(r.seq),
    lineId: text(r.line_id),
    stream: text(r.stream) as StoredLogLine['stream'],
    line: text(r.line),
    truncated: flag(r.truncated) === 1,
  }),
};

const containerEvents: Codec<StoredContainerEvent> = {
  encode: (r) => ({
    event_id: text(r.eventId),
    time_ms: u64(r.timeMs),
    node_id: text(r.nodeId),
    container_id: text(r.containerId),
    function: text(r.function),
    version: u32(r.version),
    kind: text(r.kind),
    detail: text(r.detail),
  }),
  decode: (r) => ({
    eventId: text(r.event_id),
    timeMs: u64(r.time_ms),
    nodeId: text(r.node_id),
    containerId: text(r.container_id),
    function: text(r.function),
    version: u32(r.version),
    kind: text(r.kind) as StoredContainerEvent['kind'],
    detail: text(r.detail),
  }),
};

const functions: Codec<StoredFunction> = {
  encode: (r) => ({
    name: text(r.name),
    namespace: text(r.namespace),
    version: u32(r.version),
    runtime: text(r.runtime),
    image: text(r.image),
    code_hash: text(r.codeHash),
    code: text(r.code),
    handler: text(r.handler),
    env: JSON.stringify(r.env ?? {}),
    memory_mb: u32(r.limits?.memoryMB),
    timeout_ms: u32(r.limits?.timeoutMs),
    concurrency: u32(r.limits?.concurrency),
    created_at_ms: u64(r.createdAtMs),
    deleted: flag(r.deleted),
  }),
  decode: (r) => ({
    name: text(r.name),
    namespace: text(r.namespace),
    version: u32(r.version),
    runtime: text(r.runtime),
    image: text(r.image),
    codeHash: text(r.code_hash),
    code: text(r.code),
    handler: text(r.handler),
    env: parseEnv(r.env),
    limits: { memoryMB: u32(r.memory_mb), timeoutMs: u32(r.timeout_ms), concurrency: u32(r.concurrency) },
    createdAtMs: u64(r.created_at_ms),
    deleted: flag(r.deleted) === 1,
  }),
};

const schemaMigrations: Codec<MigrationRecord> = {
  encode: (r) => ({ version: u32(r.version), name: text(r.name), applied_at_ms: u64(r.appliedAtMs) }),
  decode: (r) => ({ version: u32(r.version), name: text(r.name), appliedAtMs: u64(r.applied_at_ms) }),
};

const CODECS: { [T in TableName]: Codec<RecordOf[T]> } = {
  invocations,
  logs,
  container_events: containerEvents,
  functions,
  schema_migrations: schemaMigrations,
};

/**
 * Each table's record fields in a fixed order: a batch crosses to the encoder worker as one
 * JSON array of such tuples. JSON.stringify of plain arrays is the cheapest hand-off there is
 * (measured ~5× cheaper than structured-cloning the record objects), which keeps the event
 * loop's share of a row under a microsecond; the ClickHouse encoding happens in the worker.
 */
export const TUPLE_FIELDS: { readonly [T in TableName]: readonly (keyof RecordOf[T] & string)[] } = {
  invocations: [
    'id', 'namespace', 'function', 'version', 'executor', 'containerId', 'trigger', 'attempt', 'status', 'errorCode', 'httpStatus', 'start',
    'receivedAtMs', 'queuedAtMs', 'startedAtMs', 'finishedAtMs', 'queueUs', 'initUs', 'createUs', 'runUs', 'totalUs', 'requestBytes', 'responseBytes', 'traceId',
  ],
  logs: ['invocationId', 'function', 'containerId', 'timeMs', 'seq', 'lineId', 'stream', 'line', 'truncated'],
  container_events: ['eventId', 'timeMs', 'nodeId', 'containerId', 'function', 'version', 'kind', 'detail'],
  functions: ['name', 'namespace', 'version', 'runtime', 'image', 'codeHash', 'code', 'handler', 'env', 'limits', 'createdAtMs', 'deleted'],
  schema_migrations: ['version', 'name', 'appliedAtMs'],
};

/** A tuple back to a record; throws on anything that is not a tuple of the table's arity. */
export function fromTuple<T extends TableName>(table: T, tuple: unknown): RecordOf[T] {
  const fields = TUPLE_FIELDS[table];
  if (!Array.isArray(tuple) || tuple.length !== fields.length) throw new TypeError(`a ${table} row must be an array of ${fields.length} fields`);
  const record: Record<string, unknown> = {};
  for (let f = 0; f < fields.length; f++) if (tuple[f] !== null) record[fields[f]] = tuple[f];
  return record as unknown as RecordOf[T];
}

/** Encodes one record to its row (column name → value), numbers clamped; throws on a record no codec can read. */
export function encodeRow<T extends TableName>(table: T, record: RecordOf[T]): Row {
  const codec: Codec<RecordOf[T]> = CODECS[table];
  return codec.encode(record);
}

/** Records → rows with the table's column names, numbers clamped to their column types. */
export function encodeRows<T extends TableName>(table: T, records: readonly RecordOf[T][]): Row[] {
  const codec: Codec<RecordOf[T]> = CODECS[table];
  return records.map((record) => codec.encode(record));
}

/** The JSONEachRow body of an INSERT: one JSON object per line. */
export function encodeJsonEachRow<T extends TableName>(table: T, records: readonly RecordOf[T][]): string {
  return encodeRows(table, records).map((row) => JSON.stringify(row)).join('\n');
}

/** Rows as ClickHouse returns them → records. */
export function decodeRows<T extends TableName>(table: T, rows: readonly Row[]): RecordOf[T][] {
  const codec: Codec<RecordOf[T]> = CODECS[table];
  return rows.map((row) => codec.decode(row));
}

/** Parses a JSONEachRow result (chDB returns text). */
export function parseJsonEachRow(textResult: string): Row[] {
  const rows: Row[] = [];
  for (const line of textResult.split('\n')) if (line.trim() !== '') rows.push(JSON.parse(line) as Row);
  return rows;
}

