/**
 * The deploy body: validated with zod, errors name the field (`limits.memoryMB: …`).
 */
import { createHash } from 'node:crypto';
import { z } from 'zod';
import type { SkiffConfig } from '../config.ts';
import { SkiffError } from '../errors.ts';
import type { FunctionSpec } from '../bus/index.ts';

/** Function names are DNS-label-like so they fit paths, container labels and table keys. */
export const FUNCTION_NAME_PATTERN = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const BASE64_PATTERN = /^[A-Za-z0-9+/]*={0,2}$/;

/** Limits a function may ask for (documented in docs/api.md). */
export const FUNCTION_LIMIT_BOUNDS = {
  memoryMB: { min: 16, max: 16_384 },
  timeoutMs: { min: 1, max: 15 * 60_000 },
  concurrency: { min: 1, max: 1000 },
} as const;

/** CPU cores a function may ask for (CFS quota); fractions allowed. */
export const CPU_BOUNDS = { min: 0.05, max: 64 } as const;

const bounded = (field: keyof typeof FUNCTION_LIMIT_BOUNDS) =>
  z
    .number({ error: `must be an integer from ${FUNCTION_LIMIT_BOUNDS[field].min} to ${FUNCTION_LIMIT_BOUNDS[field].max}` })
    .int(`must be an integer from ${FUNCTION_LIMIT_BOUNDS[field].min} to ${FUNCTION_LIMIT_BOUNDS[field].max}`)
    .min(FUNCTION_LIMIT_BOUNDS[field].min, `must be an integer from ${FUNCTION_LIMIT_BOUNDS[field].min} to ${FUNCTION_LIMIT_BOUNDS[field].max}`)
    .max(FUNCTION_LIMIT_BOUNDS[field].max, `must be an integer from ${FUNCTION_LIMIT_BOUNDS[field].min} to ${FUNCTION_LIMIT_BOUNDS[field].max}`);

const deploySchema = z
  .strictObject({
    name: z.string().regex(FUNCTION_NAME_PATTERN, 'must be lower-case letters, digits and dashes, 1 to 63 characters').optional(),
    namespace: z.string().regex(FUNCTION_NAME_PATTERN, 'must be lower-case letters, digits and dashes').optional(),
    runtime: z.enum(['node20', 'image'], { error: "must be 'node20' or 'image'" }).optional(),
    code: z.string().min(1, 'must be a non-empty base64 .tar.gz').regex(BASE64_PATTERN, 'must be base64').optional(),
    image: z.string().min(1, 'must name an image').optional(),
    handler: z
      .string()
      .regex(/^[A-Za-z0-9._\-/]+$/, 'must be a relative file path')
      .refine((v) => !v.startsWith('/') && !v.split('/').includes('..'), 'must be a relative file path inside the bundle')
      .optional(),
    env: z.record(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'names must be environment variable names'), z.string({ error: 'values must be strings' })).optional(),
    limits: z
      .strictObject({
        memoryMB: bounded('memoryMB').optional(),
        timeoutMs: bounded('timeoutMs').optional(),
        concurrency: bounded('concurrency').optional(),
        cpus: z
          .number({ error: `must be a number of cores from ${CPU_BOUNDS.min} to ${CPU_BOUNDS.max}` })
          .min(CPU_BOUNDS.min, `must be a number of cores from ${CPU_BOUNDS.min} to ${CPU_BOUNDS.max}`)
          .max(CPU_BOUNDS.max, `must be a number of cores from ${CPU_BOUNDS.min} to ${CPU_BOUNDS.max}`)
          .optional(),
      })
      .optional(),
    network: z.boolean({ error: 'must be true or false' }).optional(),
  })
  .refine((d) => (d.code === undefined) !== (d.image === undefined), { message: 'exactly one of code or image is required', path: ['code'] });

export type DeployRequest = z.infer<typeof deploySchema>;

/** A validated definition ready to store: the spec executors run plus the code bundle. */
export interface FunctionDefinition {
  spec: FunctionSpec;
  code: Buffer;
  createdAtMs: number;
}

/** Parses and validates a deploy body; throws INVALID_FUNCTION_DEFINITION naming the field. */
export function parseDeployRequest(body: Buffer, nameFromPath: string | undefined): DeployRequest & { name: string } {
  let json: unknown;
  try {
    json = JSON.parse(body.toString('utf8'));
  } catch {
    throw new SkiffError('BAD_REQUEST', 'deploy body must be JSON');
  }
  if (nameFromPath !== undefined && typeof json === 'object' && json !== null && !Array.isArray(json)) {
    const bodyName = (json as Record<string, unknown>).name;
    if (bodyName !== undefined && bodyName !== nameFromPath) {
      throw new SkiffError('INVALID_FUNCTION_DEFINITION', `name: "${String(bodyName)}" does not match the path's "${nameFromPath}"`);
    }
    json = { ...json, name: nameFromPath };
  }
  const result = deploySchema.safeParse(json);
  if (!result.success) {
    const issue = result.error.issues[0];
    const field = issue.path.join('.') || 'body';
    const message = issue.code === 'unrecognized_keys' ? `unknown field ${issue.keys.join(', ')}` : issue.message;
    throw new SkiffError('INVALID_FUNCTION_DEFINITION', `${field}: ${message}`);
  }
  if (result.data.name === undefined) throw new SkiffError('INVALID_FUNCTION_DEFINITION', 'name: is required');
  return result.data as DeployRequest & { name: string };
}

/** Builds the stored definition for `version`, filling defaults from the config. */
export function buildDefinition(request: DeployRequest & { name: string }, version: number, config: SkiffConfig): FunctionDefinition {
  const code = request.code === undefined ? Buffer.alloc(0) : Buffer.from(request.code, 'base64');
  if (request.code !== undefined && (code.length < 2 || code[0] !== 0x1f || code[1] !== 0x8b)) {
    throw new SkiffError('INVALID_FUNCTION_DEFINITION', 'code: must be a base64 .tar.gz (gzip magic missing)');
  }
  const runtime = request.image !== undefined ? 'image' : (request.runtime ?? 'node20');
  if (runtime === 'image' && request.image === undefined) throw new SkiffError('INVALID_FUNCTION_DEFINITION', 'image: is required for runtime image');
  const spec: FunctionSpec = {
    name: request.name,
    namespace: request.namespace ?? 'default',
    version,
    runtime,
    image: request.image ?? '',
    codeHash: code.length > 0 ? createHash('sha256').update(code).digest('hex') : '',
    handler: request.handler ?? (runtime === 'image' ? '' : 'index.js'),
    env: request.env ?? {},
    limits: {
      memoryMB: request.limits?.memoryMB ?? config.functionDefaults.memoryMB,
      timeoutMs: request.limits?.timeoutMs ?? config.functionDefaults.timeoutMs,
      concurrency: request.limits?.concurrency ?? config.functionDefaults.concurrency,
      ...(request.limits?.cpus !== undefined ? { cpus: request.limits.cpus } : {}),
    },
    ...(request.network !== undefined ? { network: request.network } : {}),
  };
  return { spec, code, createdAtMs: Date.now() };
}

/** The definition as shown by the API (no code bytes). */
export function describeDefinition(def: FunctionDefinition): Record<string, unknown> {
  return { ...def.spec, codeBytes: def.code.length, createdAt: new Date(def.createdAtMs).toISOString() };
}
