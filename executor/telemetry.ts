/**
 * Batches log lines (LOGS) and container events (EVENTS) per gateway connection: a batch leaves
 * every FLUSH_INTERVAL_MS, at once when it reaches MAX_BATCH_LINES, and with every RESULT on its
 * connection (takeLines). Each line and event goes to the gateway of the invocation it belongs
 * to, which records it.
 * Hot path (lines): lines become their storage rows at once (bus/log-rows.ts), written straight
 * into the batch's LOGS body bytes (a frame of whole lines from its own bytes, with no string at
 * all), so nothing per line is left to encode and no line's string outlives its frame: kept for the batch's
 * 100 ms, strings would survive young-generation collections and be copied by each, which on a
 * node taking calls shows as longer GC pauses in the executor's event loop.
 */
import { randomBytes } from 'node:crypto';
import diagnostics from 'node:diagnostics_channel';
import { LOG_ROW_COLUMNS, LogRowEncoder, MessageType, RowBytes, type CarriedLogLines, type ContainerEvent, type ContainerEventKind, type HeaderOf, type LogLineBytes, type LogLines, type LogsHeader } from '../bus/index.ts';

const FLUSH_INTERVAL_MS = 100;
const MAX_BATCH_LINES = 500;
const MAX_BATCH_EVENTS = 500;

/** Where telemetry goes: the bus connection an invocation came from (a BusDealer). */
export interface TelemetryRoute {
  send<T extends MessageType>(type: T, header: HeaderOf[T], body?: Buffer): boolean;
}

/** diagnostics_channel names, one per container event kind: `skiff:executor:container-<kind>`. */
export function containerEventChannel(kind: ContainerEventKind): string {
  return `skiff:executor:container-${kind}`;
}

interface Batch {
  /** The LOGS body: rows, each with its newline. */
  rows: RowBytes;
  /** How many rows `rows` holds. */
  lines: number;
  events: ContainerEvent[];
}

const LOGS_HEADER: LogsHeader = { columns: [...LOG_ROW_COLUMNS] };
/** Bytes of random id prefix: line ids stay unique across executors and restarts. */
const LINE_ID_PREFIX_BYTES = 6;

export class TelemetryBatcher {
  readonly #batches = new Map<TelemetryRoute, Batch>();
  readonly #timer: NodeJS.Timeout;
  readonly #rows = new LogRowEncoder(randomBytes(LINE_ID_PREFIX_BYTES).toString('hex'));
  /** The rows of the last batch let go, for the next: its working buffer is kept. */
  #spareRows: RowBytes | undefined;
  /** Lines/events a full bus queue refused. */
  dropped = 0;

  constructor() {
    this.#timer = setInterval(() => this.flush(), FLUSH_INTERVAL_MS);
    this.#timer.unref();
  }

  #batch(route: TelemetryRoute): Batch {
    let batch = this.#batches.get(route);
    if (!batch) {
      batch = { rows: this.#spareRows ?? new RowBytes(), lines: 0, events: [] };
      this.#spareRows = undefined;
      this.#batches.set(route, batch);
    }
    return batch;
  }

  lines(route: TelemetryRoute, lines: LogLines): void {
    const batch = this.#batch(route);
    batch.rows.append(this.#rows.encodeLines(lines));
    batch.lines += lines.lines.length;
    if (batch.lines >= MAX_BATCH_LINES) this.#flushLines(route, batch);
  }

  /** Whole lines still as the container wrote them (the usual case): written from their bytes. */
  lineBytes(route: TelemetryRoute, lines: LogLineBytes): void {
    const batch = this.#batch(route);
    batch.lines += this.#rows.writeLineBytes(lines, batch.rows);
    if (batch.lines >= MAX_BATCH_LINES) this.#flushLines(route, batch);
  }

  /** A call's lines its container carried in its response head (the usual case): written from the header value. */
  carriedLines(route: TelemetryRoute, lines: CarriedLogLines, maxLineBytes: number): void {
    const batch = this.#batch(route);
    batch.lines += this.#rows.writeCarriedLines(lines, batch.rows, maxLineBytes);
    if (batch.lines >= MAX_BATCH_LINES) this.#flushLines(route, batch);
  }

  /** Records a container event (also published on its diagnostics channel). */
  event(route: TelemetryRoute | undefined, event: ContainerEvent): void {
    const channel = diagnostics.channel(containerEventChannel(event.kind));
    if (channel.hasSubscribers) channel.publish(event);
    if (!route) return;
    const batch = this.#batch(route);
    batch.events.push(event);
    if (batch.events.length >= MAX_BATCH_EVENTS) this.#flushEvents(route, batch);
  }

  /** The batch's rows and how many, emptying it; undefined when it holds none. */
  #takeRows(batch: Batch): { body: Buffer; lines: number } | undefined {
    if (batch.lines === 0) return undefined;
    const lines = batch.lines;
    batch.lines = 0;
    return { body: batch.rows.take(), lines };
  }

  #flushLines(route: TelemetryRoute, batch: Batch): void {
    const taken = this.#takeRows(batch);
    if (taken && !route.send(MessageType.LOGS, LOGS_HEADER, taken.body)) this.dropped += taken.lines;
  }

  #flushEvents(route: TelemetryRoute, batch: Batch): void {
    if (batch.events.length === 0) return;
    const events = batch.events;
    batch.events = [];
    if (!route.send(MessageType.EVENTS, { events })) this.dropped += events.length;
  }

  /**
   * The lines batched for one route, taken to travel in the RESULT about to leave on it (its log
   * rows, BusMessage.logRows), so a call's lines reach the gateway in the same message as its
   * result, never after it, and an executor killed after answering has lost none of them; events
   * batched for the route leave now, ahead of it. Undefined when no line is batched.
   */
  takeLines(route: TelemetryRoute): { body: Buffer; lines: number } | undefined {
    const batch = this.#batches.get(route);
    if (!batch) return undefined;
    this.#flushEvents(route, batch);
    return this.#takeRows(batch);
  }

  /** Counts lines a full bus queue refused with the RESULT that carried them (takeLines). */
  refused(lines: number): void {
    this.dropped += lines;
  }

  /** Sends everything batched so far. */
  flush(): void {
    for (const [route, batch] of this.#batches) {
      this.#flushEvents(route, batch);
      this.#flushLines(route, batch);
      if (batch.lines === 0 && batch.events.length === 0) {
        this.#batches.delete(route);
        this.#spareRows = batch.rows;
      }
    }
  }

  /** Flushes and stops the timer. */
  close(): void {
    clearInterval(this.#timer);
    this.flush();
  }
}
