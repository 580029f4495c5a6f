import { gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../config.ts';
import { SkiffError } from '../../errors.ts';
import { parseDeployRequest, traceIdOf } from '../../gateway/index.ts';
import { buildDefinition } from '../../gateway/definition.ts';

const code = gzipSync(Buffer.from('not really a tar, but gzip')).toString('base64');
const body = (value: unknown) => Buffer.from(JSON.stringify(value));

function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    return `${(err as SkiffError).code}: ${(err as Error).message}`;
  }
  return 'no error';
}

describe('deploy definitions', () => {
  it('takes the name from the path and fills limits from the configured defaults', () => {
    const request = parseDeployRequest(body({ runtime: 'node20', code, env: { GREETING: 'hi' } }), 'echo');
    const def = buildDefinition(request, 3, loadConfig({}, {}));
    expect(def.spec).toMatchObject({ name: 'echo', version: 3, runtime: 'node20', handler: 'index.js', env: { GREETING: 'hi' }, limits: { memoryMB: 128, timeoutMs: 30000, concurrency: 1 } });
    expect(def.spec.codeHash).toMatch(/^[0-9a-f]{64}$/);
  });

  it('passes a CPU limit and a network request on to the executor', () => {
    const def = buildDefinition(parseDeployRequest(body({ code, limits: { cpus: 0.5 }, network: true }), 'net'), 1, loadConfig({}, {}));
    expect(def.spec.limits.cpus).toBe(0.5);
    expect(def.spec.network).toBe(true);
  });

  it('accepts a ready image instead of code', () => {
    const def = buildDefinition(parseDeployRequest(body({ image: 'example/fn:1' }), 'img'), 1, loadConfig({}, {}));
    expect(def.spec).toMatchObject({ runtime: 'image', image: 'example/fn:1', codeHash: '' });
  });

  it.each([
    ['not json', Buffer.from('{'), 'BAD_REQUEST: deploy body must be JSON'],
    ['no code nor image', body({ runtime: 'node20' }), 'INVALID_FUNCTION_DEFINITION: code: exactly one of code or image is required'],
    ['both code and image', body({ code, image: 'x' }), 'INVALID_FUNCTION_DEFINITION: code: exactly one of code or image is required'],
    ['a bad runtime', body({ code, runtime: 'python3' }), "INVALID_FUNCTION_DEFINITION: runtime: must be 'node20' or 'image'"],
    ['a tiny memory limit', body({ code, limits: { memoryMB: 4 } }), 'INVALID_FUNCTION_DEFINITION: limits.memoryMB: must be an integer from 16 to 16384'],
    ['a fractional timeout', body({ code, limits: { timeoutMs: 1.5 } }), 'INVALID_FUNCTION_DEFINITION: limits.timeoutMs: must be an integer from 1 to 900000'],
    ['an unknown limit', body({ code, limits: { gpus: 2 } }), 'INVALID_FUNCTION_DEFINITION: limits: unknown field gpus'],
    ['too many cpus', body({ code, limits: { cpus: 100 } }), 'INVALID_FUNCTION_DEFINITION: limits.cpus: must be a number of cores from 0.05 to 64'],
    ['a network flag that is not boolean', body({ code, network: 'yes' }), 'INVALID_FUNCTION_DEFINITION: network: must be true or false'],
    ['an unknown field', body({ code, handlr: 'x.js' }), 'INVALID_FUNCTION_DEFINITION: body: unknown field handlr'],
    ['a handler outside the bundle', body({ code, handler: '../etc/passwd' }), 'INVALID_FUNCTION_DEFINITION: handler: must be a relative file path inside the bundle'],
    ['a non-string env value', body({ code, env: { A: 1 } }), 'INVALID_FUNCTION_DEFINITION: env.A: values must be strings'],
    ['code that is not base64', body({ code: 'not base64!' }), 'INVALID_FUNCTION_DEFINITION: code: must be base64'],
    ['a body name that disagrees with the path', body({ name: 'other', code }), 'INVALID_FUNCTION_DEFINITION: name: "other" does not match the path\'s "echo"'],
  ])('rejects %s with a field-level message', (_case, raw, expected) => {
    expect(codeOf(() => parseDeployRequest(raw, 'echo'))).toBe(expected);
  });

  it('requires a name when the path has none, and a valid one', () => {
    expect(codeOf(() => parseDeployRequest(body({ code }), undefined))).toBe('INVALID_FUNCTION_DEFINITION: name: is required');
    expect(codeOf(() => parseDeployRequest(body({ code, name: 'Bad_Name' }), undefined))).toMatch(/^INVALID_FUNCTION_DEFINITION: name: must be lower-case/);
  });

  it('rejects code that is base64 but not gzip', () => {
    const request = parseDeployRequest(body({ code: Buffer.from('plain').toString('base64') }), 'echo');
    expect(codeOf(() => buildDefinition(request, 1, loadConfig({}, {})))).toBe('INVALID_FUNCTION_DEFINITION: code: must be a base64 .tar.gz (gzip magic missing)');
  });
});

describe('trace context', () => {
  it('takes the trace id from a valid traceparent and nothing from garbage', () => {
    expect(traceIdOf('00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01')).toBe('4bf92f3577b34da6a3ce929d0e0e4736');
    expect(traceIdOf('garbage')).toBe('');
    expect(traceIdOf('')).toBe('');
  });
});
