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
  receivedAtMs: number;
  finishedAtMs: number;
  queueUs: number;
  initUs: number;
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
  limit?: number;
}

/** Filter of listContainerEvents; limit defaults to 50 and is capped at 1000. */
export interface ContainerEventQuery {
  function?: string;
  containerId?: string;
  limit?: number;
}

/** Counters over the batched tables (invocations, logs, container events). */
export interface StorageStats {
  recordsWritten: number;
  batchesWritten: number;
  /** Write attempts repeated after a failure. */
  retries: number;
  /** Batches that failed every attempt (their rows are kept for the next flush while there is room). */
  failedBatches: number;
  /** Rows dropped because storage was closed or the pending buffer was full. */
  droppedRows: number;
  /** Rows accepted but not yet written (including the batch being written). */
  pendingRows: number;
}

/** How to open storage; storageOptionsFromConfig builds it from Skiff's config. */
export interface StorageOptions {
  backend: 'chdb' | 'server';
  /** chDB data directory (backend 'chdb'). */
  dataDir: string;
  /** ClickHouse HTTP URL (backend 'server'). */
  clickhouseUrl: string;
  database: string;
  flushIntervalMs: number;
  maxBatchRows: number;
  logger?: Logger;
  /** Waits between write attempts of a failing batch; its length + 1 is the number of attempts. */
  retryDelaysMs?: readonly number[];
}

/** Skiff's log storage: batched writes of what happened, direct writes of the function registry. */
export interface Storage {
  /** Creates the database and tables and records applied versions; idempotent (openStorage calls it). */
  migrate(): Promise<void>;
  /** Queues an invocation record; never throws, never blocks. */
  recordInvocation(rec: InvocationRecord): void;
  /** Queues log lines; never throws, never blocks. */
  recordLogs(lines: LogLine[]): void;
  /** Queues container events; never throws, never blocks. */
  recordContainerEvents(events: ContainerEvent[]): void;
  /** Writes a function version now; resolves once it is stored. */
  saveFunction(fn: StoredFunction): Promise<void>;
  /** The latest version of every function, deleted markers included, with code. */
  loadFunctions(): Promise<StoredFunction[]>;
  /** Invocations newest first. */
  listInvocations(q?: InvocationQuery): Promise<InvocationRecord[]>;
  /** One invocation with its log lines in time order, or null. */
  getInvocation(id: string): Promise<{ record: InvocationRecord; logs: LogRow[] } | null>;
  /** Container events newest first. */
  listContainerEvents(q?: ContainerEventQuery): Promise<ContainerEvent[]>;
  /** Writes everything pending now; rejects with STORAGE_UNAVAILABLE if a batch could not be written. */
  flush(): Promise<void>;
  /** Throws SkiffError STORAGE_UNAVAILABLE unless the database accepts writes. */
  checkWritable(): Promise<void>;
  stats(): StorageStats;
  /** Flushes and releases the backend; idempotent. */
  close(): Promise<void>;
}
