import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ERROR_CODES, isErrorCode, SkiffError, toSkiffError } from '../errors.ts';

describe('errors', () => {
  it('documents every error code with its status in docs/errors.md', () => {
    const doc = readFileSync(new URL('../docs/errors.md', import.meta.url), 'utf8');
    for (const [code, spec] of Object.entries(ERROR_CODES)) {
      expect(doc, code).toMatch(new RegExp(`\\| \`${code}\` \\| ${spec.statusCode} \\| ${spec.blame} \\|`));
    }
  });

  it('carries code, status and blame from the table and serializes to the HTTP error body', () => {
    const err = new SkiffError('PAYLOAD_TOO_LARGE', 'too big');
    expect(err.statusCode).toBe(413);
    expect(err.blame).toBe('caller');
    expect(err.toJSON()).toEqual({ error: { code: 'PAYLOAD_TOO_LARGE', message: 'too big' } });
  });

  it('maps the statuses the API promises', () => {
    expect(ERROR_CODES.FUNCTION_NOT_FOUND.statusCode).toBe(404);
    expect(ERROR_CODES.FUNCTION_CRASHED.statusCode).toBe(502);
    expect(ERROR_CODES.NO_EXECUTOR.statusCode).toBe(503);
    expect(ERROR_CODES.FUNCTION_TIMEOUT.statusCode).toBe(504);
  });

  it('recognizes codes that crossed a process boundary and wraps foreign errors', () => {
    expect(isErrorCode('FUNCTION_TIMEOUT')).toBe(true);
    expect(isErrorCode('toString')).toBe(false);
    const wrapped = toSkiffError(new Error('boom'));
    expect(wrapped.code).toBe('INTERNAL_ERROR');
    expect(wrapped.cause).toBeInstanceOf(Error);
    const same = new SkiffError('NO_EXECUTOR', 'x');
    expect(toSkiffError(same)).toBe(same);
  });
});
