/**
 * The records storage keeps and the Storage surface other components use. Field names are the
 * TypeScript side; storage/schema.ts maps them to snake_case ClickHouse columns.
 */
import type { Logger } from 'pino';
import type { ContainerEvent, LogLine, StartType } from '../bus/messages.ts';

/** One invocation as recorded after it finished (or failed); `id` is the deduplication key. */
export interface InvocationRecord {
  id: string;
  namespace: string;
  function: string;
  version: number;
  /** Node id of the executor that ran it ('' when none was reached). */
  executor: string;
  containerId: string;
  trigger: 'sync' | 'async';
  attempt: number;
  status: 'ok' | 'error' | 'timeout' | 'rejected';
  /** A code from errors.ts; '' when ok. */
  errorCode: string;
  httpStatus: number;
  start: StartType | '';
  /** When the gateway accepted the call (async: accepted, the same for every attempt). */
  receivedAtMs: number;
  /**
   * When the gateway handed this attempt to an executor (sent INVOKE); for a call that never
   * reached one, when the gateway gave up on it. receivedAtMs when not given.
   */
  queuedAtMs?: number;
  /**
   * When the container call began, on the gateway's clock: queuedAtMs + queueUs + initUs; for a
   * call that never reached a container, finishedAtMs. finishedAtMs − runUs when not given.
   */
  startedAtMs?: number;
  /** When the gateway wrote the record, after the response went out. */
  finishedAtMs: number;
  /** Microseconds waiting in the executor for a container slot (the gateway's own wait: queuedAtMs − receivedAtMs). */
  queueUs: number;
  /** Microseconds getting a container ready: container create + start + listener for cold, specialize for stem cell, 0 for warm. */
  initUs: number;
  /** Of initUs: microseconds creating and starting the container (cold starts only; 0 otherwise and when not given). */
  createUs?: number;
  /** Microseconds of the container call. */
  runUs: number;
  totalUs: number;
  requestBytes: number;
  responseBytes: number;
  traceId: string;
}

/** One version of a function definition; `deleted` marks an undeploy. */
export interface StoredFunction {
  name: string;
  namespace: string;
  version: number;
  runtime: string;
  image: string;
  codeHash: string;
  /** The code bundle as base64 .tar.gz; '' for image functions. */
  code: string;
  handler: string;
  env: Record<string, string>;
  limits: { memoryMB: number; timeoutMs: number; concurrency: number };
  createdAtMs: number;
  deleted: boolean;
}

/** A stored log line of an invocation. */
export interface LogRow {
  invocationId: string;
  function: string;
  containerId: string;
  timeMs: number;
  stream: string;
  line: string;
  truncated: boolean;
}

/** Filter of listInvocations; limit defaults to 50 and is capped at 1000. */
export interface InvocationQuery {
  function?: string;
  status?: string;
  /** Start type: 'cold', 'warm', 'stemcell', or '' for calls that never reached a container. */
  start?: string;
  traceId?: string;
  /** receivedAtMs ≥ sinceMs. */
  sinceMs?: number;
  /** receivedAtMs < untilMs. */
  untilMs?: number;
  /** nextCursor of the previous page. */
  cursor?: string;
  limit?: number;
}

/** One page of invocations, newest first; nextCursor is null on the last page. */
export interface InvocationPage {
  records: InvocationRecord[];
  nextCursor: string | null;
}

/** Latency percentiles in microseconds. */
export interface Percentiles {
  p50: number;
  p95: number;
  p99: number;
}

/** What one function did in a time window (each invocation counted once, by its newest attempt). */
export interface FunctionStats {
  function: string;
  sinceMs: number;
  untilMs: number;
  count: number;
  /** Invocations per status: ok, error, timeout, rejected. */
  statuses: Record<string, number>;
  /** (error + timeout) / count: the function's or the platform's failures, not the caller's. */
  errorRate: number;
  coldStarts: number;
  /** cold / count. */
  coldStartRate: number;
  totalUs: Percentiles;
  runUs: Percentiles;
  requestBytes: number;
  responseBytes: number;
}

/** Filter of listContainerEvents; limit defaults to 50 and is capped at 1000. */
export interface ContainerEventQuery {
  function?: string;
  containerId?: string;
  limit?: number;
}

/** Counters of one batched table, or of all of them. */
export interface TableStats {
  /** Rows in ClickHouse (a replayed batch counts when it lands). */
  recordsWritten: number;
  batchesWritten: number;
  /** Insert attempts repeated after a failure. */
  retries: number;
  /** Batches written to the disk spool (ClickHouse down or rejecting, or the batch queue full). */
  batchesSpooled: number;
  /** Spooled batches that later landed (or were dead-lettered). */
  batchesReplayed: number;
  /** Rows ClickHouse refused as bad data, kept in the dead-letter file (with the rows of set-aside batches). */
  deadLetteredRows: number;
  /** Spooled batches set aside in the spool's dead-letter/ directory: damaged, or refused on storage.replayMaxAttempts replays. */
  deadLetteredBatches: number;
  /** Rows lost: pushed after close, or the oldest spooled batches deleted when the spool was full. Must stay 0. */
  droppedRows: number;
  /** Rows accepted but not yet sealed into a batch. */
  pendingRows: number;
  /** Sealed batches queued or being inserted. */
  queuedBatches: number;
  /** Batches and rows waiting in the spool. */
  spooledBatches: number;
  spooledRows: number;
}

/** Totals over the batched tables (invocations, logs, container events), and each table's own. */
export interface StorageStats extends TableStats {
  /** Bytes of batch files in the spool. */
  spooledBytes: number;
  spoolDir: string;
  tables: Record<'invocations' | 'logs' | 'container_events', TableStats>;
}

/**
 * A ClickHouse cluster to keep the schema on (storage.cluster): `<table>_local` tables on every
 * server, created ON CLUSTER, with Distributed tables of the plain names in front.
 */
export interface StorageCluster {
  /** The cluster's name in the servers' <remote_servers>. */
  name: string;
  /** ReplicatedReplacingMergeTree local tables (shards of replicas, ZooKeeper); false: plain ReplacingMergeTree shards. */
  replicated: boolean;
  /** ZooKeeper path of a table's replicas; Skiff fills {database} and {table}, each server its macros ({shard}). */
  zooKeeperPath: string;
  /** Replica name, usually the server's {replica} macro. */
  replicaName: string;
}

/** How to open storage; storageOptionsFromConfig builds it from Skiff's config. */
export interface StorageOptions {
  backend: 'chdb' | 'server';
  /** chDB data directory (backend 'chdb'). */
  dataDir: string;
  /** ClickHouse HTTP URL (backend 'server'). */
  clickhouseUrl: string;
  database: string;
  /** Absent: one server (chDB or a ClickHouse server). Needs the server backend. */
  cluster?: StorageCluster;
  flushIntervalMs: number;
  maxBatchRows: number;
  /** Estimated encoded bytes at which a batch is sealed. */
  maxBatchBytes: number;
  /** Sealed batches per table waiting for an insert before new ones go to the spool. */
  maxQueuedBatches: number;
  /** Where batches wait while ClickHouse is unreachable; survives restarts. */
  spoolDir: string;
  /** Bound of the spool; past it the oldest batches are deleted (counted as dropped). */
  spoolMaxBytes: number;
  logger?: Logger;
  /** Waits between insert attempts of a live batch; after the last it is spooled. */
  retryDelaysMs?: readonly number[];
  /** The spool replay's longest back-off while ClickHouse stays down. */
  replayMaxDelayMs?: number;
  /** Replays of a spooled batch ClickHouse refuses (neither bad data nor an outage) before it is set aside (default 10). */
  replayMaxAttempts?: number;
  /** Nice value (0..19) of storage's threads: the encoders, the chDB worker and ClickHouse's threads in it (default 5). */
  threadNice?: number;
}

/** Skiff's log storage: batched writes of what happened, direct writes of the function registry. */
export interface Storage {
  /** Creates the database and tables and records applied versions; idempotent (openStorage calls it). */
  migrate(): Promise<void>;
  /** Queues an invocation record; never throws, never blocks. */
  recordInvocation(rec: InvocationRecord): void;
  /** Queues log lines; never throws, never blocks. */
  recordLogs(lines: LogLine[]): void;
  /**
   * Queues log rows already encoded by their sender (a LOGS body: bus/log-rows.ts), as they are;
   * rows in other columns than the logs table's are dead-lettered. Never throws, never blocks.
   */
  recordLogRows(columns: readonly string[], body: Buffer): void;
  /** Queues container events; never throws, never blocks. */
  recordContainerEvents(events: ContainerEvent[]): void;
  /** Writes a function version now; resolves once it is stored. */
  saveFunction(fn: StoredFunction): Promise<void>;
  /** The latest version of every function, deleted markers included, with code. */
  loadFunctions(): Promise<StoredFunction[]>;
  /** Invocations newest first, one row per id (its newest attempt), a page at a time. */
  listInvocations(q?: InvocationQuery): Promise<InvocationPage>;
  /** Count, error and cold-start rates, latency percentiles and bytes of one function since `sinceMs`. */
  functionStats(fn: string, sinceMs: number, untilMs?: number): Promise<FunctionStats>;
  /** One invocation with its log lines in time order, or null. */
  getInvocation(id: string): Promise<{ record: InvocationRecord; logs: LogRow[] } | null>;
  /** Runs any SELECT (on the storage database's tables, named in full) and returns its rows as ClickHouse sent them. */
  query(sql: string): Promise<Record<string, string | number>[]>;
  /** Container events newest first. */
  listContainerEvents(q?: ContainerEventQuery): Promise<ContainerEvent[]>;
  /** Seals everything pending and resolves once it is durable: in ClickHouse, the spool or the dead-letter file. */
  flush(): Promise<void>;
  /** Flushes, then resolves once the spool is empty and nothing is queued (everything is in ClickHouse). */
  drain(): Promise<void>;
  /** Throws SkiffError STORAGE_UNAVAILABLE unless the database accepts writes. */
  checkWritable(): Promise<void>;
  stats(): StorageStats;
  /** Flushes and releases the backend; idempotent. */
  close(): Promise<void>;
}
