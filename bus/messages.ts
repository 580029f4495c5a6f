/**
 * The typed messages that cross the bus. A frame is `[type, header (msgpack), body (raw bytes)]`;
 * these are the headers. Bodies (request/response payloads, code bundles) are never re-encoded.
 */
import type { RuntimeStats } from '../runtime-stats.ts';

/** Frame types, one byte on the wire. */
export const MessageType = {
  HELLO: 1,
  CREDIT: 2,
  INVOKE: 3,
  RESULT: 4,
  LOGS: 5,
  EVENTS: 6,
  HEARTBEAT: 7,
  BYE: 8,
  DEPLOY: 9,
  UNDEPLOY: 10,
  FETCH_BUNDLE: 11,
  BUNDLE: 12,
} as const;
export type MessageType = (typeof MessageType)[keyof typeof MessageType];

export const MESSAGE_TYPE_NAMES: Readonly<Record<MessageType, keyof typeof MessageType>> = Object.fromEntries(
  Object.entries(MessageType).map(([name, value]) => [value, name]),
) as Record<MessageType, keyof typeof MessageType>;

/** Resource limits of a function. */
export interface FunctionLimits {
  memoryMB: number;
  timeoutMs: number;
  /** Calls one container serves at once. */
  concurrency: number;
  /** CPU cores one container may use (CFS quota); the executor's default when absent. */
  cpus?: number;
}

/** What an executor needs to run a function: a deployed, versioned definition. */
export interface FunctionSpec {
  name: string;
  namespace: string;
  version: number;
  runtime: 'node20' | 'image';
  /** For runtime 'image': a ready image that speaks the Fn http-stream contract. */
  image: string;
  /** sha256 of the code bundle (.tar.gz); '' for image functions. */
  codeHash: string;
  /** Entry file inside the bundle, e.g. 'index.js'. */
  handler: string;
  env: Record<string, string>;
  limits: FunctionLimits;
  /** The function needs network access (its containers get executor.functionNetwork, else none). */
  network?: boolean;
}

/** Executor → gateway, once per connection. */
export interface HelloHeader {
  nodeId: string;
  /** The node's zone ('' or absent for none); gateways prefer executors of their own zone. */
  zone?: string;
  pid: number;
  maxInFlight: number;
  startedAtMs: number;
}

/** Executor → gateway: how many more calls it accepts now (absolute, not a delta). */
export interface CreditHeader {
  credits: number;
  /** Idle warm call slots per function name (a call there starts warm). */
  warm?: Record<string, number>;
  /** Ready stem cells per runtime (a call of that runtime starts in ~ms, not a cold start). */
  stemCells?: Record<string, number>;
  /** Memory budget not yet given to containers, MB. */
  memoryFreeMb?: number;
  /**
   * INVOKEs this executor has received from this gateway since its last HELLO: the gateway
   * subtracts the calls it sent that had not arrived yet, which `credits` cannot count.
   */
  invokesReceived?: number;
}

/** Gateway → executor: one invocation. The body is the raw request body. */
export interface InvokeHeader {
  id: string;
  fn: { name: string; version: number };
  method: string;
  /** Path after /function/:name, always starting with '/'. */
  path: string;
  /** Raw query string without '?'. */
  query: string;
  /** Lower-case header names; repeated headers joined with ', '. */
  headers: Record<string, string>;
  /** Absolute deadline, epoch milliseconds. */
  deadlineMs: number;
  traceparent: string;
  receivedAtMs: number;
}

export type StartType = 'cold' | 'warm' | 'stemcell';

/** Executor → gateway: the outcome of one invocation. The body is the function's response body. */
export interface ResultHeader {
  id: string;
  /** Function's HTTP status, or the error's status when errorCode is set. */
  status: number;
  headers: Record<string, string>;
  /** Set when the call failed; a code from errors.ts. */
  errorCode: string;
  errorMessage: string;
  start: StartType | '';
  containerId: string;
  /** Microseconds spent starting/specializing a container for this call (0 when warm). */
  initUs: number;
  /** Microseconds of the container call itself. */
  runUs: number;
  /** Microseconds waiting inside the executor for a container slot. */
  queueUs: number;
  /** Of initUs: microseconds creating and starting the container (cold starts only). */
  createUs?: number;
}

export type LogStream = 'stdout' | 'stderr';

/** One line a function printed, tied to the invocation that was running in its container. */
export interface LogLine {
  invocationId: string;
  function: string;
  containerId: string;
  timeMs: number;
  stream: LogStream;
  line: string;
  truncated: boolean;
}

/**
 * Executor → gateway: log lines. The body is the rows themselves, TabSeparated, in `columns`
 * (bus/log-rows.ts: LogRowEncoder writes them, the gateway's storage takes them as they are).
 */
export interface LogsHeader {
  columns: string[];
}

export type ContainerEventKind = 'created' | 'started' | 'ready' | 'specialized' | 'paused' | 'evicted' | 'removed' | 'crashed' | 'killed';

export interface ContainerEvent {
  timeMs: number;
  nodeId: string;
  containerId: string;
  function: string;
  version: number;
  kind: ContainerEventKind;
  detail: string;
}

export interface EventsHeader {
  events: ContainerEvent[];
}

export interface HeartbeatHeader {
  inFlight: number;
  /** The executor's GC pauses and event-loop delay (runtime-stats.ts); absent from the gateway's heartbeats. */
  runtime?: RuntimeStats;
}

export interface ByeHeader {
  reason: string;
}

/**
 * A function definition. Gateway → executor: the body is empty, the executor fetches the bundle
 * by spec.codeHash (FETCH_BUNDLE) when a call first needs it. Gateway → gateway (control
 * channel): the body is the code bundle, so every gateway can serve it.
 */
export interface DeployHeader {
  spec: FunctionSpec;
}

export interface UndeployHeader {
  name: string;
}

/** Executor → gateway: send the code bundle whose sha256 is `codeHash` (answered with BUNDLE). */
export interface FetchBundleHeader {
  codeHash: string;
}

/** Gateway → executor: the answer to FETCH_BUNDLE; the body is the raw .tar.gz when `found`. */
export interface BundleHeader {
  codeHash: string;
  found: boolean;
  /** Why it was not found ('' when found). */
  message: string;
}

/** Header type for each message type. */
export interface HeaderOf {
  [MessageType.HELLO]: HelloHeader;
  [MessageType.CREDIT]: CreditHeader;
  [MessageType.INVOKE]: InvokeHeader;
  [MessageType.RESULT]: ResultHeader;
  [MessageType.LOGS]: LogsHeader;
  [MessageType.EVENTS]: EventsHeader;
  [MessageType.HEARTBEAT]: HeartbeatHeader;
  [MessageType.BYE]: ByeHeader;
  [MessageType.DEPLOY]: DeployHeader;
  [MessageType.UNDEPLOY]: UndeployHeader;
  [MessageType.FETCH_BUNDLE]: FetchBundleHeader;
  [MessageType.BUNDLE]: BundleHeader;
}

/**
 * A decoded frame. `logRows`: only ever on a RESULT, the LOGS body (LOG_ROW_COLUMNS rows) its
 * executor had batched for the connection when the result left, sent in the same message so a
 * call's lines never come after its result.
 */
export type BusMessage = {
  [T in MessageType]: { type: T; header: HeaderOf[T]; body: Buffer; logRows?: Buffer };
}[MessageType];
