/**
 * Skiff's error codes: one table, one class. Every code here is returned in HTTP bodies
 * (`{ error: { code, message } }`), stored on invocation records and documented in docs/errors.md
 * (a test checks that docs/errors.md lists every code).
 */

/** Who is at fault: the caller (bad request), the function (its code misbehaved) or the platform. */
export type ErrorBlame = 'caller' | 'function' | 'platform';

interface ErrorSpec {
  readonly statusCode: number;
  readonly blame: ErrorBlame;
  readonly description: string;
}

/** The table every error is generated from. Adding a code here requires documenting it. */
export const ERROR_CODES = {
  BAD_REQUEST: { statusCode: 400, blame: 'caller', description: 'The request is malformed (bad JSON, bad parameter).' },
  INVALID_FUNCTION_DEFINITION: { statusCode: 400, blame: 'caller', description: 'A deploy body failed validation; the message names the field.' },
  FUNCTION_NOT_FOUND: { statusCode: 404, blame: 'caller', description: 'No function with this name is deployed.' },
  INVOCATION_NOT_FOUND: { statusCode: 404, blame: 'caller', description: 'No invocation record with this id exists.' },
  ROUTE_NOT_FOUND: { statusCode: 404, blame: 'caller', description: 'No route matches the method and path.' },
  FUNCTION_QUEUE_FULL: { statusCode: 429, blame: 'platform', description: "On the executor that took the call: the function has every container it may have (executor.maxContainersPerFunction) busy, or no memory to start one, and its calls already waiting there for a container fill its queue (executor.maxQueuedPerFunction). Retry after Retry-After seconds. Not QUEUE_FULL, which is the gateway's wait for executor credit." },
  PAYLOAD_TOO_LARGE: { statusCode: 413, blame: 'caller', description: 'The request body is over gateway.maxBodyBytes.' },
  NOT_DEAD_LETTERED: { statusCode: 409, blame: 'caller', description: 'Only a dead-lettered async invocation can be replayed.' },
  QUEUE_FULL: { statusCode: 429, blame: 'platform', description: "On the gateway: no executor had credit (executor.maxInFlight) for the call and the function's sync calls already waiting for one fill the gateway's queue (gateway.maxQueuedPerFunction), or the call waited past gateway.maxQueueWaitMs; for async calls, the function's unfinished async calls reached async.maxQueuedPerFunction. Retry after Retry-After seconds (gateway.retryAfterSeconds). Not FUNCTION_QUEUE_FULL, which is an executor's queue for containers." },
  HEADERS_TOO_LARGE: { statusCode: 431, blame: 'caller', description: 'The request headers are over gateway.maxHeaderBytes.' },
  FUNCTION_ERROR: { statusCode: 500, blame: 'function', description: 'The function threw; the body carries its message and its stderr (stored with the invocation) the stack.' },
  FUNCTION_CRASHED: { statusCode: 502, blame: 'function', description: 'The function container exited or closed the connection before answering.' },
  FUNCTION_BAD_RESPONSE: { statusCode: 502, blame: 'function', description: 'The function answered something that is not a valid http-stream response.' },
  FUNCTION_OUT_OF_MEMORY: { statusCode: 502, blame: 'function', description: 'The function went past its memory limit (limits.memoryMB) and its container was killed; the next call gets a fresh one.' },
  FUNCTION_START_FAILED: { statusCode: 502, blame: 'function', description: 'The function container started but never opened its listener (bad code, crash at load).' },
  RESPONSE_TOO_LARGE: { statusCode: 502, blame: 'function', description: 'The function response body is over executor.maxResponseBytes.' },
  EXECUTOR_LOST: { statusCode: 502, blame: 'platform', description: 'The executor running the call stopped heartbeating or disconnected mid-call.' },
  NO_EXECUTOR: { statusCode: 503, blame: 'platform', description: 'No executor is connected to this gateway.' },
  BUNDLE_UNAVAILABLE: { statusCode: 503, blame: 'platform', description: "The executor could not get the function's code bundle from any gateway (none had it, none answered within executor.bundleFetchTimeoutMs, or the bytes did not match the hash); nothing is cached, the next call fetches again." },
  STORAGE_UNAVAILABLE: { statusCode: 503, blame: 'platform', description: 'ClickHouse did not accept a write or a query.' },
  CONTAINER_RUNTIME_ERROR: { statusCode: 503, blame: 'platform', description: 'Docker refused to create or start a container.' },
  FUNCTION_TIMEOUT: { statusCode: 504, blame: 'function', description: 'The call ran past its deadline (limits.timeoutMs); its container is killed.' },
  JOURNAL_FULL: { statusCode: 507, blame: 'platform', description: 'The async journal is at async.maxJournalEntries or async.maxJournalBytes; the call was not accepted.' },
  INTERNAL_ERROR: { statusCode: 500, blame: 'platform', description: 'An unexpected fault inside Skiff.' },
} as const satisfies Record<string, ErrorSpec>;

export type ErrorCode = keyof typeof ERROR_CODES;

/** The one error class of Skiff: a stable code, its HTTP status, who is to blame, and the cause. */
export class SkiffError extends Error {
  readonly code: ErrorCode;
  readonly statusCode: number;
  readonly blame: ErrorBlame;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'SkiffError';
    this.code = code;
    this.statusCode = ERROR_CODES[code].statusCode;
    this.blame = ERROR_CODES[code].blame;
  }

  /** The JSON body Skiff answers with. */
  toJSON(): { error: { code: ErrorCode; message: string } } {
    return { error: { code: this.code, message: this.message } };
  }
}

/** True when `value` is one of Skiff's error codes (for codes that crossed a process boundary). */
export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === 'string' && Object.hasOwn(ERROR_CODES, value);
}

/** Wraps anything thrown into a SkiffError, keeping Skiff errors as they are. */
export function toSkiffError(err: unknown, fallback: ErrorCode = 'INTERNAL_ERROR'): SkiffError {
  if (err instanceof SkiffError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new SkiffError(fallback, message, { cause: err });
}
