/**
 * ClickHouse and chDB failures become SkiffError STORAGE_UNAVAILABLE here, at the storage
 * boundary, with a hint for the causes an operator can act on (one map, not scattered checks).
 */
import { SkiffError } from '../errors.ts';

/** Error codes (socket errno or ClickHouse numeric code) → what it means for an operator. */
const CLICKHOUSE_ERRORS_MAP: Readonly<Record<string, string>> = {
  ECONNREFUSED: 'ClickHouse server refused the connection (is it running? see scripts/start-clickhouse.sh)',
  ECONNRESET: 'ClickHouse server closed the connection',
  ENOTFOUND: 'ClickHouse server host name does not resolve',
  ETIMEDOUT: 'ClickHouse server did not answer in time',
  '81': 'database does not exist (storage was not migrated)',
  '60': 'table does not exist (storage was not migrated)',
  '164': 'the ClickHouse user is read-only',
  '192': 'unknown ClickHouse user',
  '193': 'wrong ClickHouse password',
  '241': 'ClickHouse ran out of memory',
  '243': 'ClickHouse ran out of disk space',
  '252': 'too many parts: ClickHouse cannot merge as fast as inserts arrive',
};

/**
 * ClickHouse codes that mean "this data can never be inserted" (a poison batch): parse and type
 * errors. Everything else — network errors, overload, a missing table — is worth retrying, so an
 * unknown error spools rather than dead-letters: a batch is never given up on by guesswork.
 */
const POISON_CODES: ReadonlySet<string> = new Set([
  '6', // CANNOT_PARSE_TEXT
  '16', // NO_SUCH_COLUMN_IN_TABLE
  '26', // CANNOT_PARSE_QUOTED_STRING
  '27', // CANNOT_PARSE_INPUT_ASSERTION_FAILED
  '32', // ATTEMPT_TO_READ_AFTER_EOF
  '38', // CANNOT_PARSE_DATE
  '41', // CANNOT_PARSE_DATETIME
  '53', // TYPE_MISMATCH
  '69', // ARGUMENT_OUT_OF_BOUND
  '70', // CANNOT_CONVERT_TYPE
  '72', // CANNOT_PARSE_NUMBER
  '117', // INCORRECT_DATA
  '131', // TOO_LARGE_STRING_SIZE
]);

/**
 * ClickHouse codes that say ClickHouse is unreachable, overloaded or misconfigured in a way an
 * operator (or time) fixes: a batch refused with one of them is retried however long it takes.
 */
const OUTAGE_CODES: ReadonlySet<string> = new Set([
  '60', // UNKNOWN_TABLE (storage not migrated yet)
  '81', // UNKNOWN_DATABASE
  '159', // TIMEOUT_EXCEEDED
  '164', // READONLY
  '192', // UNKNOWN_USER
  '193', // WRONG_PASSWORD
  '202', // TOO_MANY_SIMULTANEOUS_QUERIES
  '203', // NO_FREE_CONNECTION
  '209', // SOCKET_TIMEOUT
  '210', // NETWORK_ERROR
  '236', // ABORTED
  '241', // MEMORY_LIMIT_EXCEEDED
  '242', // TABLE_IS_READ_ONLY
  '243', // NOT_ENOUGH_SPACE
  '252', // TOO_MANY_PARTS
  '394', // QUERY_WAS_CANCELLED
  '425', // SYSTEM_ERROR
  '497', // ACCESS_DENIED
  '516', // AUTHENTICATION_FAILED
]);

/**
 * Why an insert failed, for what to do next: `poison` (the data is bad: bisect and dead-letter the
 * bad rows), `outage` (ClickHouse is down, overloaded or misconfigured, or no ClickHouse code at
 * all: retry without limit) or `refused` (ClickHouse answered with another error about this batch,
 * e.g. a body it cannot read: retried a bounded number of times, then the batch is set aside).
 */
export type InsertFailure = 'poison' | 'outage' | 'refused';

/** Classifies a backend error (wrapped or not); see InsertFailure. */
export function classifyInsertError(err: unknown): InsertFailure {
  const code = errorCode(err instanceof SkiffError && err.cause !== undefined ? err.cause : err);
  if (POISON_CODES.has(code)) return 'poison';
  // Only a numeric code is ClickHouse's answer; socket errnos and client errors are outages.
  if (!/^\d+$/.test(code) || OUTAGE_CODES.has(code)) return 'outage';
  return 'refused';
}

/** True when `err` (a backend error, wrapped or not) says the batch's data is bad: retrying cannot help. */
export function isPoisonError(err: unknown): boolean {
  return classifyInsertError(err) === 'poison';
}

function errorCode(err: unknown): string {
  if (typeof err !== 'object' || err === null) return '';
  const { code, clickhouseCode } = err as { code?: unknown; clickhouseCode?: unknown };
  if (clickhouseCode !== undefined && clickhouseCode !== null && clickhouseCode !== '') return String(clickhouseCode);
  if (typeof code === 'string' || typeof code === 'number') return String(code);
  const match = /Code: (\d+)/.exec(err instanceof Error ? err.message : '');
  return match ? match[1] : '';
}

/** Wraps a backend failure of `operation` (e.g. 'insert into logs') as STORAGE_UNAVAILABLE. */
export function toStorageError(err: unknown, operation: string): SkiffError {
  if (err instanceof SkiffError) return err;
  const code = errorCode(err);
  const raw = err instanceof Error ? err.message : String(err);
  const hint = CLICKHOUSE_ERRORS_MAP[code];
  const detail = (hint ? `${hint}: ${raw}` : raw).split('\n')[0].slice(0, 500);
  return new SkiffError('STORAGE_UNAVAILABLE', `storage ${operation} failed: ${detail}`, { cause: err });
}
