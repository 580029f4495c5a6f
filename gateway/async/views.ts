/**
 * What the HTTP API shows of an async invocation and of a dead letter (JSON-ready objects).
 */
import type { LogRow } from '../../storage/index.ts';
import type { AttemptSummary, CallbackStatus, JournalEntry, StoredResult } from './journal.ts';

/** An async invocation's state as the API shows it ('running' is known only in memory). */
export type AsyncStatus = 'queued' | 'running' | 'succeeded' | 'failed' | 'dead-lettered';

export interface ResultView {
  status: number;
  headers: Record<string, string>;
  /** UTF-8 text when the body is valid UTF-8, else base64 (see bodyEncoding). */
  body: string;
  bodyEncoding: 'utf8' | 'base64';
  bodyBytes: number;
  /** True when the body was cut to async.maxResultBytes. */
  truncated: boolean;
}

export interface AsyncInvocationView {
  id: string;
  function: string;
  trigger: 'async';
  status: AsyncStatus;
  attempts: number;
  /** Milliseconds since the epoch of the next attempt, while queued for a retry. */
  nextAttemptAtMs: number;
  receivedAtMs: number;
  finishedAtMs: number;
  requestBytes: number;
  replays: number;
  errorCode: string;
  errorMessage: string;
  result: ResultView | null;
  callback: CallbackStatus | null;
  history: AttemptSummary[];
  logs: LogRow[];
}

export interface DeadLetterView {
  id: string;
  function: string;
  attempts: number;
  deadLetteredAtMs: number;
  receivedAtMs: number;
  errorCode: string;
  errorMessage: string;
  httpStatus: number;
  replays: number;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

function resultView(result: StoredResult): ResultView {
  let body: string;
  let bodyEncoding: ResultView['bodyEncoding'] = 'utf8';
  try {
    body = utf8.decode(result.body);
  } catch {
    body = result.body.toString('base64');
    bodyEncoding = 'base64';
  }
  return { status: result.status, headers: result.headers, body, bodyEncoding, bodyBytes: result.bodyBytes, truncated: result.truncated };
}

/** The status view of one async invocation. */
export function describeInvocation(entry: JournalEntry, status: AsyncStatus, logs: LogRow[]): AsyncInvocationView {
  return {
    id: entry.id,
    function: entry.functionName,
    trigger: 'async',
    status,
    attempts: entry.attempts,
    nextAttemptAtMs: entry.state === 'queued' ? entry.nextAttemptAtMs : 0,
    receivedAtMs: entry.receivedAtMs,
    finishedAtMs: entry.finishedAtMs,
    requestBytes: entry.requestBytes,
    replays: entry.replays,
    errorCode: entry.result?.errorCode ?? '',
    errorMessage: entry.result?.errorMessage ?? '',
    result: entry.result ? resultView(entry.result) : null,
    callback: entry.callback,
    history: entry.history,
    logs,
  };
}

/** One line of GET /system/dead-letters. */
export function describeDeadLetter(entry: JournalEntry): DeadLetterView {
  return {
    id: entry.id,
    function: entry.functionName,
    attempts: entry.attempts,
    deadLetteredAtMs: entry.finishedAtMs,
    receivedAtMs: entry.receivedAtMs,
    errorCode: entry.result?.errorCode ?? '',
    errorMessage: entry.result?.errorMessage ?? '',
    httpStatus: entry.result?.status ?? 0,
    replays: entry.replays,
  };
}
