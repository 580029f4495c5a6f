/**
 * The one place dockerode errors become Skiff errors. Docker refusing or failing is a platform
 * fault (CONTAINER_RUNTIME_ERROR, 503); the message keeps Docker's own words and the action.
 */
import { SkiffError, type ErrorCode } from '../errors.ts';

interface DockerModemError {
  statusCode?: number;
  code?: string;
  json?: { message?: string } | null;
  message?: string;
}

/** Docker HTTP status → what it means for Skiff. Anything not listed is a runtime error too. */
const DOCKER_STATUS_MEANING: Readonly<Record<number, { code: ErrorCode; what: string }>> = {
  304: { code: 'CONTAINER_RUNTIME_ERROR', what: 'already in that state' },
  400: { code: 'CONTAINER_RUNTIME_ERROR', what: 'bad parameter' },
  404: { code: 'CONTAINER_RUNTIME_ERROR', what: 'not found' },
  409: { code: 'CONTAINER_RUNTIME_ERROR', what: 'conflict' },
  500: { code: 'CONTAINER_RUNTIME_ERROR', what: 'Docker engine error' },
};

/** Socket-level errors that mean the Docker engine is not reachable at all. */
const UNREACHABLE_CODES = new Set(['ENOENT', 'ECONNREFUSED', 'EACCES', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT']);

function asModemError(err: unknown): DockerModemError {
  return typeof err === 'object' && err !== null ? (err as DockerModemError) : { message: String(err) };
}

/** The Docker HTTP status of a dockerode error, if it has one. */
export function dockerStatusOf(err: unknown): number | undefined {
  const cause = err instanceof SkiffError ? err.cause : err;
  return asModemError(cause).statusCode;
}

/** True when Docker said the object does not exist (404). */
export function isDockerNotFound(err: unknown): boolean {
  return dockerStatusOf(err) === 404;
}

/** Translates a dockerode error raised while doing `action` into a SkiffError. */
export function fromDockerError(action: string, err: unknown): SkiffError {
  if (err instanceof SkiffError) return err;
  const e = asModemError(err);
  const detail = e.json?.message ?? e.message ?? 'unknown error';
  if (e.statusCode !== undefined) {
    const meaning = DOCKER_STATUS_MEANING[e.statusCode] ?? { code: 'CONTAINER_RUNTIME_ERROR' as const, what: `HTTP ${e.statusCode}` };
    return new SkiffError(meaning.code, `docker ${action} failed (${meaning.what}): ${detail.trim()}`, { cause: err });
  }
  if (e.code !== undefined && UNREACHABLE_CODES.has(e.code)) {
    return new SkiffError('CONTAINER_RUNTIME_ERROR', `docker ${action} failed: the Docker engine is not reachable (${e.code})`, { cause: err });
  }
  return new SkiffError('CONTAINER_RUNTIME_ERROR', `docker ${action} failed: ${detail}`, { cause: err });
}
