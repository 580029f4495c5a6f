/**
 * Skiff's one configuration: a zod schema, one defaults object, environment overrides,
 * frozen after validation. Every limit is here with its unit in its name; docs/configuration.md
 * lists them (a test checks it names every option).
 */
import os from 'node:os';
import path from 'node:path';
import { z } from 'zod';

const positiveInt = (name: string) =>
  z.number({ error: `${name} must be a positive integer` }).int(`${name} must be a positive integer`).positive(`${name} must be a positive integer`);

const zmqEndpoint = (name: string) =>
  z.string().regex(/^(tcp|ipc|inproc):\/\/.+/, `${name} must be a ZeroMQ endpoint such as tcp://127.0.0.1:7100`);

const MB = 1024 * 1024;

/** Defaults: everything a single-node `skiff up` needs, nothing secret. */
export const DEFAULTS = {
  dataDir: path.join(process.cwd(), '.skiff'),
  logLevel: 'info',
  gateway: {
    host: '127.0.0.1',
    port: 8080,
    maxBodyBytes: 6 * MB,
    maxHeaderBytes: 16 * 1024,
    /** A deploy body (JSON with a base64 bundle) may be this large. */
    maxDeployBytes: 64 * MB,
    tls: { certFile: '', keyFile: '' },
  },
  bus: {
    /** Where the gateway's ROUTER binds. */
    bindEndpoint: 'tcp://127.0.0.1:7100',
    heartbeatIntervalMs: 500,
    /** Heartbeats missed in a row before a peer is declared dead. */
    heartbeatMissLimit: 3,
  },
  executor: {
    nodeId: os.hostname(),
    /** The gateways' ROUTER endpoints this executor connects to. */
    gatewayEndpoints: ['tcp://127.0.0.1:7100'],
    runtimeImage: 'skiff/runtime-node20:latest',
    /** Calls this executor accepts at once before the gateway must wait (advertised as credit). */
    maxInFlight: 64,
    /** An idle warm container is removed after this long. */
    idleTimeoutMs: 10 * 60_000,
    /** How long a cold container may take to open its listener. */
    startTimeoutMs: 10_000,
    maxResponseBytes: 6 * MB,
    /** Log lines longer than this are cut and marked truncated. */
    maxLogLineBytes: 4096,
  },
  storage: {
    /** Empty: embedded chDB under dataDir. Set (or CLICKHOUSE_URL) to use a ClickHouse server. */
    clickhouseUrl: '',
    database: 'skiff',
    flushIntervalMs: 1000,
    maxBatchRows: 10_000,
  },
  functionDefaults: {
    memoryMB: 128,
    timeoutMs: 30_000,
    concurrency: 1,
  },
};

const configSchema = z.strictObject({
  dataDir: z.string().min(1, 'dataDir must be a directory path'),
  logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']),
  gateway: z.strictObject({
    host: z.string().min(1, 'gateway.host must be a host name or address'),
    port: z.number().int().min(0, 'gateway.port must be 0..65535').max(65535, 'gateway.port must be 0..65535'),
    maxBodyBytes: positiveInt('gateway.maxBodyBytes'),
    maxHeaderBytes: positiveInt('gateway.maxHeaderBytes'),
    maxDeployBytes: positiveInt('gateway.maxDeployBytes'),
    tls: z.strictObject({ certFile: z.string(), keyFile: z.string() }).refine(
      (tls) => (tls.certFile === '') === (tls.keyFile === ''),
      'gateway.tls.certFile and gateway.tls.keyFile must be set together',
    ),
  }),
  bus: z.strictObject({
    bindEndpoint: zmqEndpoint('bus.bindEndpoint'),
    heartbeatIntervalMs: positiveInt('bus.heartbeatIntervalMs'),
    heartbeatMissLimit: positiveInt('bus.heartbeatMissLimit'),
  }),
  executor: z.strictObject({
    nodeId: z.string().min(1, 'executor.nodeId must not be empty'),
    gatewayEndpoints: z.array(zmqEndpoint('executor.gatewayEndpoints[]')).min(1, 'executor.gatewayEndpoints must list at least one endpoint'),
    runtimeImage: z.string().min(1, 'executor.runtimeImage must name an image'),
    maxInFlight: positiveInt('executor.maxInFlight'),
    idleTimeoutMs: positiveInt('executor.idleTimeoutMs'),
    startTimeoutMs: positiveInt('executor.startTimeoutMs'),
    maxResponseBytes: positiveInt('executor.maxResponseBytes'),
    maxLogLineBytes: positiveInt('executor.maxLogLineBytes'),
  }),
  storage: z.strictObject({
    clickhouseUrl: z.string().refine((v) => v === '' || /^https?:\/\//.test(v), 'storage.clickhouseUrl must be an http(s) URL or empty'),
    database: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'storage.database must be a plain identifier'),
    flushIntervalMs: positiveInt('storage.flushIntervalMs'),
    maxBatchRows: positiveInt('storage.maxBatchRows'),
  }),
  functionDefaults: z.strictObject({
    memoryMB: positiveInt('functionDefaults.memoryMB'),
    timeoutMs: positiveInt('functionDefaults.timeoutMs'),
    concurrency: positiveInt('functionDefaults.concurrency'),
  }),
});

export type SkiffConfig = Readonly<z.infer<typeof configSchema>>;

type DeepPartial<T> = { [K in keyof T]?: T[K] extends readonly unknown[] ? T[K] : T[K] extends object ? DeepPartial<T[K]> : T[K] };
export type ConfigOverrides = DeepPartial<z.infer<typeof configSchema>>;

type EnvKind = 'string' | 'int' | 'list';
/** Environment variables that override options: variable → [option path, kind]. */
export const ENV_OVERRIDES: Readonly<Record<string, readonly [string, EnvKind]>> = {
  SKIFF_DATA_DIR: ['dataDir', 'string'],
  SKIFF_LOG_LEVEL: ['logLevel', 'string'],
  SKIFF_HOST: ['gateway.host', 'string'],
  SKIFF_PORT: ['gateway.port', 'int'],
  SKIFF_MAX_BODY_BYTES: ['gateway.maxBodyBytes', 'int'],
  SKIFF_TLS_CERT_FILE: ['gateway.tls.certFile', 'string'],
  SKIFF_TLS_KEY_FILE: ['gateway.tls.keyFile', 'string'],
  SKIFF_BUS_BIND: ['bus.bindEndpoint', 'string'],
  SKIFF_HEARTBEAT_INTERVAL_MS: ['bus.heartbeatIntervalMs', 'int'],
  SKIFF_NODE_ID: ['executor.nodeId', 'string'],
  SKIFF_GATEWAYS: ['executor.gatewayEndpoints', 'list'],
  SKIFF_RUNTIME_IMAGE: ['executor.runtimeImage', 'string'],
  SKIFF_IDLE_TIMEOUT_MS: ['executor.idleTimeoutMs', 'int'],
  CLICKHOUSE_URL: ['storage.clickhouseUrl', 'string'],
  SKIFF_CLICKHOUSE_DATABASE: ['storage.database', 'string'],
};

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function merge(base: Record<string, unknown>, over: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base };
  for (const [key, value] of Object.entries(over)) {
    if (value === undefined) continue;
    const current = out[key];
    out[key] = isPlainObject(current) && isPlainObject(value) ? merge(current, value) : value;
  }
  return out;
}

function setPath(target: Record<string, unknown>, dotted: string, value: unknown): void {
  const keys = dotted.split('.');
  let node = target;
  for (const key of keys.slice(0, -1)) {
    if (!isPlainObject(node[key])) node[key] = {};
    node = node[key] as Record<string, unknown>;
  }
  node[keys[keys.length - 1]] = value;
}

function envOverrides(env: NodeJS.ProcessEnv): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [name, [option, kind]] of Object.entries(ENV_OVERRIDES)) {
    const raw = env[name];
    if (raw === undefined || raw === '') continue;
    if (kind === 'int') {
      const parsed = Number(raw);
      if (!Number.isInteger(parsed)) throw new ConfigError(`${name} (${option}) must be an integer, got "${raw}"`);
      setPath(out, option, parsed);
    } else if (kind === 'list') {
      setPath(out, option, raw.split(',').map((s) => s.trim()).filter(Boolean));
    } else {
      setPath(out, option, raw);
    }
  }
  return out;
}

/** A configuration that failed validation; the message names the option. */
export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null) {
    for (const child of Object.values(value)) deepFreeze(child);
    Object.freeze(value);
  }
  return value;
}

/**
 * Builds the configuration: defaults, then `overrides` (from code or CLI flags), then the
 * environment. Throws ConfigError naming the first invalid option.
 */
export function loadConfig(overrides: ConfigOverrides = {}, env: NodeJS.ProcessEnv = process.env): SkiffConfig {
  const merged = merge(merge(structuredClone(DEFAULTS) as Record<string, unknown>, overrides as Record<string, unknown>), envOverrides(env));
  const result = configSchema.safeParse(merged);
  if (!result.success) {
    const issue = result.error.issues[0];
    const where = issue.path.join('.');
    const message = issue.code === 'unrecognized_keys' ? `unknown option ${[where, ...issue.keys].filter(Boolean).join('.')}` : issue.message;
    throw new ConfigError(message.includes(where) || where === '' ? message : `${where}: ${message}`);
  }
  return deepFreeze(result.data);
}

/** The configuration as printed at start: URLs with credentials and key file paths redacted. */
export function redactConfig(config: SkiffConfig): unknown {
  const copy = structuredClone(config) as z.infer<typeof configSchema>;
  if (copy.storage.clickhouseUrl) copy.storage.clickhouseUrl = copy.storage.clickhouseUrl.replace(/\/\/[^@/]*@/, '//***@');
  if (copy.gateway.tls.keyFile) copy.gateway.tls.keyFile = '***';
  return copy;
}
