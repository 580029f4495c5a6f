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

const nonNegativeInt = (name: string, what: string) =>
  z.number({ error: `${name} must be a non-negative integer (${what})` }).int(`${name} must be a non-negative integer (${what})`).min(0, `${name} must be a non-negative integer (${what})`);

const intInRange = (name: string, min: number, max: number) => {
  const message = `${name} must be an integer ${min}..${max}`;
  return z.number({ error: message }).int(message).min(min, message).max(max, message);
};

const zmqEndpoint = (name: string) =>
  z.string().regex(/^(tcp|ipc|inproc):\/\/.+/, `${name} must be a ZeroMQ endpoint such as tcp://127.0.0.1:7100`);

const MB = 1024 * 1024;
/** The longest log line executor.maxLogLineBytes may allow: storage's longest stored line (storage MAX_STORED_LOG_LINE_CHARS; a test keeps them equal). */
export const MAX_LOG_LINE_BYTES = 64 * 1024;

/** A z85 CURVE key (40 characters) or '' for none; `skiff keygen` makes them. */
const curveKey = (name: string) =>
  z.string().refine((v) => v === '' || /^[0-9a-zA-Z.\-:+=^!/*?&<>()[\]{}@%$#]{40}$/.test(v), `${name} must be a 40-character z85 CURVE key (skiff keygen)`);

/** Outcome classes an async retry policy may name. */
export const RETRY_OUTCOMES = ['5xx', '4xx', 'timeout', 'crash'] as const;
const retryOutcome = (name: string) => z.enum(RETRY_OUTCOMES, { error: `${name} must be one of ${RETRY_OUTCOMES.join(', ')}` });

/** Defaults: everything a single-node `skiff up` needs, nothing secret. */
export const DEFAULTS = {
  dataDir: path.join(process.cwd(), '.skiff'),
  logLevel: 'info',
  gateway: {
    host: '127.0.0.1',
    port: 8080,
    maxBodyBytes: 6 * MB,
    maxHeaderBytes: 16 * 1024,
    /** How an executor is chosen: 'affinity' (warm, then consistent hashing with bounded load), 'random' or 'least-loaded'. */
    placement: 'affinity' as 'affinity' | 'random' | 'least-loaded',
    /** ε of the bounded load: an executor takes at most ceil((1 + ε) · average load) of this gateway's calls. */
    placementLoadEpsilon: 0.25,
    /** This gateway's zone: executors of the same zone are preferred ('' for none). */
    zone: '',
    /** A deploy body (JSON with a base64 bundle) may be this large. */
    maxDeployBytes: 64 * MB,
    /** Sync calls per function that may wait for executor credit before 429 QUEUE_FULL. */
    maxQueuedPerFunction: 1000,
    /** Longest a sync call waits for executor credit before 429 QUEUE_FULL. */
    maxQueueWaitMs: 10_000,
    /** Retry-After (seconds) on a 429. */
    retryAfterSeconds: 1,
    tls: { certFile: '', keyFile: '' },
  },
  bus: {
    /** Where the gateway's ROUTER binds. */
    bindEndpoint: 'tcp://127.0.0.1:7100',
    heartbeatIntervalMs: 500,
    /** Heartbeats missed in a row before a peer is declared dead. */
    heartbeatMissLimit: 3,
    /** CURVE: the gateway's key pair (both empty: plaintext bus) and the executor keys it accepts (empty: any). */
    curve: { publicKey: '', secretKey: '', allowedClientKeys: [] as string[] },
    /** Where this gateway publishes deploys to its peer gateways ('' for a single gateway). */
    controlBindEndpoint: '',
    /** The peer gateways' control endpoints this gateway subscribes to; a name is expanded to all its addresses (this gateway's own left out). */
    peerControlEndpoints: [] as string[],
    /** How often peer gateway names are resolved again, to follow gateways scaling in and out. */
    peerResolveIntervalMs: 10_000,
  },
  executor: {
    nodeId: os.hostname(),
    /** This node's zone (site, rack), reported to gateways ('' for none). */
    zone: '',
    /** The gateways' ROUTER endpoints this executor connects to; a name is expanded to all its addresses. */
    gatewayEndpoints: ['tcp://127.0.0.1:7100'],
    /** How often gateway names are resolved again, to follow gateways scaling in and out. */
    gatewayResolveIntervalMs: 10_000,
    runtimeImage: 'skiff/runtime-node20:latest',
    /** Calls this executor accepts at once before the gateway must wait (advertised as credit). */
    maxInFlight: 64,
    /** An idle warm container is removed after this long. */
    idleTimeoutMs: 10 * 60_000,
    /** How long a cold container may take to open its listener. */
    startTimeoutMs: 10_000,
    maxResponseBytes: 6 * MB,
    /** Log lines longer than this are cut and marked truncated (at most 65536: storage's longest line). */
    maxLogLineBytes: 4096,
    /**
     * How long a call's RESULT waits at most for the lines it printed (read from the container's
     * log socket, which can lag its response by a read); past it the RESULT goes, the lines follow.
     */
    logLinesWaitMs: 100,
    /** Sum of container memory limits this node may hold; 0: half of the machine's memory. */
    memoryBudgetMb: 0,
    /** Prewarmed runtime containers (stem cells) kept per runtime at least; 0: none. */
    stemCells: 2,
    /** Stem cells per runtime at most, as the recent rate of cold starts asks for more. */
    maxStemCells: 8,
    /** Memory limit of a stem cell; functions with this memoryMB (and no network) can use one. */
    stemCellMemoryMb: 128,
    /** 'adaptive' (hybrid histogram + GDSF eviction) or 'fixed' (executor.idleTimeoutMs + LRU). */
    keepAlivePolicy: 'adaptive',
    /** Containers one function may hold; calls beyond wait in its queue. */
    maxContainersPerFunction: 32,
    /** Calls one function may have waiting for a container; more are refused with 429. */
    maxQueuedPerFunction: 100,
    /** Processes/threads one container may hold. */
    pidsLimit: 128,
    /** Size of a container's writable /tmp. */
    tmpfsMb: 64,
    /** CPU cores a container may use unless its function sets limits.cpus. */
    defaultCpus: 1,
    /** Docker network of functions that ask for network (spec.network); the others get none. */
    functionNetwork: 'bridge',
    /** A code bundle fetch from the gateways (FETCH_BUNDLE) fails after this long; the call gets BUNDLE_UNAVAILABLE. */
    bundleFetchTimeoutMs: 30_000,
    /** Code bundles this executor fetches at once; further fetches wait their turn. */
    maxConcurrentBundleFetches: 4,
    /** CURVE: this executor's key pair and the gateways' public key (all empty: plaintext bus). */
    curve: { publicKey: '', secretKey: '', gatewayPublicKey: '' },
  },
  storage: {
    /** Empty: embedded chDB under dataDir. Set (or CLICKHOUSE_URL) to use a ClickHouse server. */
    clickhouseUrl: '',
    database: 'skiff',
    flushIntervalMs: 1000,
    maxBatchRows: 10_000,
    /** A batch is also sealed when its rows' estimated encoded size reaches this. */
    maxBatchBytes: 8 * MB,
    /** Sealed batches per table waiting for ClickHouse; beyond it new batches go to the disk spool. */
    maxQueuedBatches: 4,
    /** The disk spool (dataDir/spool) holds at most this; past it the oldest batches are deleted and counted as dropped. */
    spoolMaxBytes: 1024 * MB,
    /** Replays of a spooled batch ClickHouse refuses (neither bad data nor an outage) before it is set aside in the spool's dead-letter/. */
    replayMaxAttempts: 10,
    /**
     * Nice value (0 unchanged .. 19 lowest) of storage's threads in the gateway: the batch encoders,
     * the chDB worker and every ClickHouse thread it starts. Above 0, inserts and merges yield the
     * CPU to invocations. 5 weighs a third of a normal thread, so on a node saturated by calls
     * storage still gets ~15 % of a core (~50k log rows/s into chDB) and keeps up, where 10 (a
     * tenth) could fall behind and send batches through the disk spool.
     */
    threadNice: 5,
    /**
     * A ClickHouse cluster to keep the schema on (needs clickhouseUrl): `<table>_local` tables ON
     * CLUSTER with Distributed tables of the plain names in front (docs/deploy.md). Name '' is one server.
     */
    cluster: {
      /** The cluster's name in the servers' <remote_servers>; '' for one server. */
      name: '',
      /** ReplicatedReplacingMergeTree local tables (shards of replicas, ZooKeeper); false: unreplicated shards. */
      replicated: true,
      /** ZooKeeper path of each table's replicas; Skiff fills {database} and {table}, each server {shard}. */
      zooKeeperPath: '/clickhouse/tables/{shard}/{database}/{table}',
      /** Replica name: the server's {replica} macro. */
      replicaName: '{replica}',
    },
  },
  async: {
    /** Where the async journal (LMDB) lives; '' means <dataDir>/async-journal. */
    journalDir: '',
    /** Journal entries (queued, finished and dead-lettered) before submits get 507 JOURNAL_FULL. */
    maxJournalEntries: 100_000,
    /** Request bodies, headers and kept results in the journal before 507 JOURNAL_FULL. */
    maxJournalBytes: 1024 * MB,
    /** Unfinished async calls per function before submits get 429 QUEUE_FULL. */
    maxQueuedPerFunction: 10_000,
    /** Async calls this gateway runs at once. */
    maxInFlight: 64,
    /** Attempts per call (retryable outcomes) before it is dead-lettered; per-function in `functions`. */
    maxAttempts: 3,
    /** Outcomes that are retried: any of '5xx', '4xx', 'timeout', 'crash'. */
    retryOn: ['5xx', 'timeout', 'crash'] as string[],
    /** Exponential backoff with jitter: base * 2^(attempt-1), capped. */
    backoffBaseMs: 1000,
    backoffMaxMs: 60_000,
    /** Extra deliveries when the executor is lost mid-call (not counted in maxAttempts). */
    maxRedeliveries: 10,
    /** Result bodies kept for GET /system/invocations/:id are cut to this size. */
    maxResultBytes: 64 * 1024,
    /** Finished calls stay in the journal (for status and Idempotency-Key) this long. */
    retainFinishedMs: 60 * 60_000,
    /** Dead letters stay this long unless replayed. */
    retainDeadLettersMs: 7 * 24 * 60 * 60_000,
    /** Per-function overrides: { "<name>": { "maxAttempts": 5, "retryOn": ["5xx"] } }. */
    functions: {} as Record<string, { maxAttempts?: number; retryOn?: string[] }>,
    callback: {
      timeoutMs: 10_000,
      backoffBaseMs: 500,
      backoffMaxMs: 10_000,
      /** A callback is given up after this long since the call finished. */
      maxAgeMs: 24 * 60 * 60_000,
      maxInFlight: 16,
    },
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
    placement: z.enum(['affinity', 'random', 'least-loaded'], { error: "gateway.placement must be 'affinity', 'random' or 'least-loaded'" }),
    placementLoadEpsilon: z.number({ error: 'gateway.placementLoadEpsilon must be a number >= 0' }).min(0, 'gateway.placementLoadEpsilon must be a number >= 0'),
    zone: z.string(),
    maxQueuedPerFunction: positiveInt('gateway.maxQueuedPerFunction'),
    maxQueueWaitMs: positiveInt('gateway.maxQueueWaitMs'),
    retryAfterSeconds: positiveInt('gateway.retryAfterSeconds'),
    tls: z.strictObject({ certFile: z.string(), keyFile: z.string() }).refine(
      (tls) => (tls.certFile === '') === (tls.keyFile === ''),
      'gateway.tls.certFile and gateway.tls.keyFile must be set together',
    ),
  }),
  bus: z.strictObject({
    bindEndpoint: zmqEndpoint('bus.bindEndpoint'),
    heartbeatIntervalMs: positiveInt('bus.heartbeatIntervalMs'),
    heartbeatMissLimit: positiveInt('bus.heartbeatMissLimit'),
    curve: z
      .strictObject({
        publicKey: curveKey('bus.curve.publicKey'),
        secretKey: curveKey('bus.curve.secretKey'),
        allowedClientKeys: z.array(curveKey('bus.curve.allowedClientKeys[]').refine((v) => v !== '', 'bus.curve.allowedClientKeys[] must be a 40-character z85 CURVE key')),
      })
      .refine((c) => (c.publicKey === '') === (c.secretKey === ''), 'bus.curve.publicKey and bus.curve.secretKey must be set together'),
    controlBindEndpoint: z.union([z.literal(''), zmqEndpoint('bus.controlBindEndpoint')]),
    peerControlEndpoints: z.array(zmqEndpoint('bus.peerControlEndpoints[]')),
    peerResolveIntervalMs: positiveInt('bus.peerResolveIntervalMs'),
  }),
  executor: z.strictObject({
    nodeId: z.string().min(1, 'executor.nodeId must not be empty'),
    zone: z.string(),
    curve: z
      .strictObject({ publicKey: curveKey('executor.curve.publicKey'), secretKey: curveKey('executor.curve.secretKey'), gatewayPublicKey: curveKey('executor.curve.gatewayPublicKey') })
      .refine((c) => (c.publicKey === '') === (c.secretKey === '') && (c.secretKey === '') === (c.gatewayPublicKey === ''), 'executor.curve.publicKey, executor.curve.secretKey and executor.curve.gatewayPublicKey must be set together'),
    gatewayEndpoints: z.array(zmqEndpoint('executor.gatewayEndpoints[]')).min(1, 'executor.gatewayEndpoints must list at least one endpoint'),
    gatewayResolveIntervalMs: positiveInt('executor.gatewayResolveIntervalMs'),
    runtimeImage: z.string().min(1, 'executor.runtimeImage must name an image'),
    maxInFlight: positiveInt('executor.maxInFlight'),
    idleTimeoutMs: positiveInt('executor.idleTimeoutMs'),
    startTimeoutMs: positiveInt('executor.startTimeoutMs'),
    maxResponseBytes: positiveInt('executor.maxResponseBytes'),
    // Executors write log rows storage takes as they are: no line may outgrow what storage keeps.
    maxLogLineBytes: positiveInt('executor.maxLogLineBytes').max(MAX_LOG_LINE_BYTES, `executor.maxLogLineBytes must be at most ${MAX_LOG_LINE_BYTES} (storage's longest line)`),
    logLinesWaitMs: positiveInt('executor.logLinesWaitMs'),
    memoryBudgetMb: nonNegativeInt('executor.memoryBudgetMb', "0: half of the machine's memory"),
    stemCells: nonNegativeInt('executor.stemCells', '0: no stem cells'),
    maxStemCells: nonNegativeInt('executor.maxStemCells', 'at least executor.stemCells'),
    stemCellMemoryMb: positiveInt('executor.stemCellMemoryMb'),
    keepAlivePolicy: z.enum(['adaptive', 'fixed'], { error: "executor.keepAlivePolicy must be 'adaptive' or 'fixed'" }),
    maxContainersPerFunction: positiveInt('executor.maxContainersPerFunction'),
    maxQueuedPerFunction: nonNegativeInt('executor.maxQueuedPerFunction', '0: never queue'),
    pidsLimit: positiveInt('executor.pidsLimit'),
    tmpfsMb: positiveInt('executor.tmpfsMb'),
    defaultCpus: z.number({ error: 'executor.defaultCpus must be a positive number of cores' }).positive('executor.defaultCpus must be a positive number of cores'),
    functionNetwork: z.string().min(1, 'executor.functionNetwork must name a Docker network'),
    bundleFetchTimeoutMs: positiveInt('executor.bundleFetchTimeoutMs'),
    maxConcurrentBundleFetches: positiveInt('executor.maxConcurrentBundleFetches'),
  }).refine((e) => e.maxStemCells >= e.stemCells, { message: 'executor.maxStemCells must be at least executor.stemCells', path: ['maxStemCells'] }),
  storage: z.strictObject({
    clickhouseUrl: z.string().refine((v) => v === '' || /^https?:\/\//.test(v), 'storage.clickhouseUrl must be an http(s) URL or empty'),
    database: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'storage.database must be a plain identifier'),
    flushIntervalMs: positiveInt('storage.flushIntervalMs'),
    maxBatchRows: positiveInt('storage.maxBatchRows'),
    maxBatchBytes: positiveInt('storage.maxBatchBytes'),
    maxQueuedBatches: positiveInt('storage.maxQueuedBatches'),
    spoolMaxBytes: positiveInt('storage.spoolMaxBytes'),
    replayMaxAttempts: positiveInt('storage.replayMaxAttempts'),
    threadNice: intInRange('storage.threadNice', 0, 19),
    cluster: z.strictObject({
      name: z.string().regex(/^([A-Za-z_][A-Za-z0-9_.-]*)?$/, 'storage.cluster.name must be a cluster name of <remote_servers> (letters, digits, _ . -) or empty'),
      replicated: z.boolean({ error: 'storage.cluster.replicated must be true or false' }),
      zooKeeperPath: z
        .string()
        .regex(/^(\/[A-Za-z0-9_.{}-]+)+$/, 'storage.cluster.zooKeeperPath must be a ZooKeeper path: /-separated letters, digits, _ . - and {macros}')
        .refine((v) => v.includes('{shard}') && v.includes('{table}'), 'storage.cluster.zooKeeperPath must contain {shard} and {table} (each shard and table needs its own path)'),
      replicaName: z.string().regex(/^[A-Za-z0-9_.{}-]+$/, 'storage.cluster.replicaName must be a replica name or macro such as {replica}'),
    }),
  }).refine((s) => s.cluster.name === '' || s.clickhouseUrl !== '', { message: 'storage.cluster.name needs storage.clickhouseUrl: chDB is one embedded server', path: ['cluster', 'name'] }),
  async: z.strictObject({
    journalDir: z.string(),
    maxJournalEntries: positiveInt('async.maxJournalEntries'),
    maxJournalBytes: positiveInt('async.maxJournalBytes'),
    maxQueuedPerFunction: positiveInt('async.maxQueuedPerFunction'),
    maxInFlight: positiveInt('async.maxInFlight'),
    maxAttempts: positiveInt('async.maxAttempts'),
    retryOn: z.array(retryOutcome('async.retryOn[]')),
    backoffBaseMs: positiveInt('async.backoffBaseMs'),
    backoffMaxMs: positiveInt('async.backoffMaxMs'),
    maxRedeliveries: z.number().int('async.maxRedeliveries must be an integer from 0').min(0, 'async.maxRedeliveries must be an integer from 0'),
    maxResultBytes: positiveInt('async.maxResultBytes'),
    retainFinishedMs: positiveInt('async.retainFinishedMs'),
    retainDeadLettersMs: positiveInt('async.retainDeadLettersMs'),
    functions: z.record(
      z.string(),
      z.strictObject({ maxAttempts: positiveInt('async.functions.<name>.maxAttempts').optional(), retryOn: z.array(retryOutcome('async.functions.<name>.retryOn[]')).optional() }),
    ),
    callback: z.strictObject({
      timeoutMs: positiveInt('async.callback.timeoutMs'),
      backoffBaseMs: positiveInt('async.callback.backoffBaseMs'),
      backoffMaxMs: positiveInt('async.callback.backoffMaxMs'),
      maxAgeMs: positiveInt('async.callback.maxAgeMs'),
      maxInFlight: positiveInt('async.callback.maxInFlight'),
    }),
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

type EnvKind = 'string' | 'int' | 'list' | 'json';
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
  SKIFF_HEARTBEAT_MISS_LIMIT: ['bus.heartbeatMissLimit', 'int'],
  SKIFF_MAX_QUEUED_PER_FUNCTION: ['gateway.maxQueuedPerFunction', 'int'],
  SKIFF_EXECUTOR_MAX_IN_FLIGHT: ['executor.maxInFlight', 'int'],
  SKIFF_ASYNC_JOURNAL_DIR: ['async.journalDir', 'string'],
  SKIFF_ASYNC_MAX_JOURNAL_ENTRIES: ['async.maxJournalEntries', 'int'],
  SKIFF_ASYNC_MAX_QUEUED_PER_FUNCTION: ['async.maxQueuedPerFunction', 'int'],
  SKIFF_ASYNC_MAX_IN_FLIGHT: ['async.maxInFlight', 'int'],
  SKIFF_ASYNC_MAX_ATTEMPTS: ['async.maxAttempts', 'int'],
  SKIFF_ASYNC_BACKOFF_BASE_MS: ['async.backoffBaseMs', 'int'],
  SKIFF_ASYNC_BACKOFF_MAX_MS: ['async.backoffMaxMs', 'int'],
  SKIFF_ASYNC_FUNCTIONS: ['async.functions', 'json'],
  SKIFF_CALLBACK_BACKOFF_MAX_MS: ['async.callback.backoffMaxMs', 'int'],
  SKIFF_NODE_ID: ['executor.nodeId', 'string'],
  SKIFF_GATEWAYS: ['executor.gatewayEndpoints', 'list'],
  SKIFF_RUNTIME_IMAGE: ['executor.runtimeImage', 'string'],
  SKIFF_IDLE_TIMEOUT_MS: ['executor.idleTimeoutMs', 'int'],
  SKIFF_MEMORY_BUDGET_MB: ['executor.memoryBudgetMb', 'int'],
  SKIFF_STEM_CELLS: ['executor.stemCells', 'int'],
  SKIFF_MAX_STEM_CELLS: ['executor.maxStemCells', 'int'],
  SKIFF_KEEPALIVE_POLICY: ['executor.keepAlivePolicy', 'string'],
  SKIFF_BUNDLE_FETCH_TIMEOUT_MS: ['executor.bundleFetchTimeoutMs', 'int'],
  CLICKHOUSE_URL: ['storage.clickhouseUrl', 'string'],
  SKIFF_PLACEMENT: ['gateway.placement', 'string'],
  SKIFF_GATEWAY_ZONE: ['gateway.zone', 'string'],
  SKIFF_ZONE: ['executor.zone', 'string'],
  SKIFF_CONTROL_BIND: ['bus.controlBindEndpoint', 'string'],
  SKIFF_PEER_GATEWAYS: ['bus.peerControlEndpoints', 'list'],
  SKIFF_PEER_RESOLVE_INTERVAL_MS: ['bus.peerResolveIntervalMs', 'int'],
  SKIFF_BUS_CURVE_PUBLIC_KEY: ['bus.curve.publicKey', 'string'],
  SKIFF_BUS_CURVE_SECRET_KEY: ['bus.curve.secretKey', 'string'],
  SKIFF_BUS_CURVE_CLIENT_KEYS: ['bus.curve.allowedClientKeys', 'list'],
  SKIFF_EXECUTOR_CURVE_PUBLIC_KEY: ['executor.curve.publicKey', 'string'],
  SKIFF_EXECUTOR_CURVE_SECRET_KEY: ['executor.curve.secretKey', 'string'],
  SKIFF_GATEWAY_CURVE_PUBLIC_KEY: ['executor.curve.gatewayPublicKey', 'string'],
  SKIFF_CLICKHOUSE_DATABASE: ['storage.database', 'string'],
  SKIFF_STORAGE_FLUSH_INTERVAL_MS: ['storage.flushIntervalMs', 'int'],
  SKIFF_STORAGE_MAX_BATCH_ROWS: ['storage.maxBatchRows', 'int'],
  SKIFF_SPOOL_MAX_BYTES: ['storage.spoolMaxBytes', 'int'],
  SKIFF_STORAGE_THREAD_NICE: ['storage.threadNice', 'int'],
  SKIFF_CLICKHOUSE_CLUSTER: ['storage.cluster.name', 'string'],
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
    } else if (kind === 'json') {
      try {
        setPath(out, option, JSON.parse(raw));
      } catch {
        throw new ConfigError(`${name} (${option}) must be JSON, got "${raw}"`);
      }
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
  if (copy.bus.curve.secretKey) copy.bus.curve.secretKey = '***';
  if (copy.executor.curve.secretKey) copy.executor.curve.secretKey = '***';
  return copy;
}
