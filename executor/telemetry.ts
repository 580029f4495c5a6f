/**
 * Batches log lines (LOGS) and container events (EVENTS) per gateway connection: a batch leaves
 * every FLUSH_INTERVAL_MS, or at once when it reaches MAX_BATCH_LINES. Each line and event goes
 * to the gateway of the invocation it belongs to, which records it.
 */
import diagnostics from 'node:diagnostics_channel';
import { MessageType, type ContainerEvent, type ContainerEventKind, type HeaderOf, type LogLine } from '../bus/index.ts';

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
  lines: LogLine[];
  events: ContainerEvent[];
}

export class TelemetryBatcher {
  readonly #batches = new Map<TelemetryRoute, Batch>();
  readonly #timer: NodeJS.Timeout;
  /** Lines/events a full bus queue refused. */
  dropped = 0;

  constructor() {
    this.#timer = setInterval(() => this.flush(), FLUSH_INTERVAL_MS);
    this.#timer.unref();
  }

  #batch(route: TelemetryRoute): Batch {
    let batch = this.#batches.get(route);
    if (!batch) {
      batch = { lines: [], events: [] };
      this.#batches.set(route, batch);
    }
    return batch;
  }

  line(route: TelemetryRoute, line: LogLine): void {
    const batch = this.#batch(route);
    batch.lines.push(line);
    if (batch.lines.length >= MAX_BATCH_LINES) this.#flushLines(route, batch);
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

  #flushLines(route: TelemetryRoute, batch: Batch): void {
    if (batch.lines.length === 0) return;
    const lines = batch.lines;
    batch.lines = [];
    if (!route.send(MessageType.LOGS, { lines })) this.dropped += lines.length;
  }

  #flushEvents(route: TelemetryRoute, batch: Batch): void {
    if (batch.events.length === 0) return;
    const events = batch.events;
    batch.events = [];
    if (!route.send(MessageType.EVENTS, { events })) this.dropped += events.length;
  }

  /** Sends everything batched so far. */
  flush(): void {
    for (const [route, batch] of this.#batches) {
      this.#flushEvents(route, batch);
      this.#flushLines(route, batch);
      if (batch.lines.length === 0 && batch.events.length === 0) this.#batches.delete(route);
    }
  }

  /** Flushes and stops the timer. */
  close(): void {
    clearInterval(this.#timer);
    this.flush();
  }
}
