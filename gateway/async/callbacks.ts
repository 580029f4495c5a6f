/**
 * X-Callback-Url delivery: when an async call ends, its response is POSTed to the caller's URL
 * with X-Call-Id, X-Function-Status and X-Attempts. A failed delivery (no answer, or not 2xx) is
 * retried with backoff until async.callback.maxAgeMs; the schedule lives in the journal, so it
 * survives a gateway restart. Each delivery attempt is also stored as a log line of the call.
 */
import { Agent, request } from 'undici';
import type { SkiffConfig } from '../../config.ts';
import type { Logger } from '../../logger.ts';
import type { Storage } from '../../storage/index.ts';
import type { Journal, JournalEntry } from './journal.ts';
import { backoffMs } from './retry-policy.ts';

export interface CallbackSenderDeps {
  config: SkiffConfig;
  journal: Journal;
  storage: Storage;
  logger: Logger;
}

/** Sends callbacks, at most async.callback.maxInFlight at once. */
export class CallbackSender {
  readonly #deps: CallbackSenderDeps;
  readonly #agent: Agent;
  readonly #ready: string[] = [];
  readonly #queued = new Set<string>();
  readonly #timers = new Map<string, NodeJS.Timeout>();
  readonly #sending = new Set<Promise<void>>();
  #closed = false;
  /** Deliveries that got a 2xx, since start. */
  delivered = 0;

  constructor(deps: CallbackSenderDeps) {
    this.#deps = deps;
    const { timeoutMs } = deps.config.async.callback;
    this.#agent = new Agent({ headersTimeout: timeoutMs, bodyTimeout: timeoutMs, connectTimeout: timeoutMs, keepAliveTimeout: 4_000 });
  }

  /** Schedules the callback of a finished call at `atMs` (now when in the past). */
  schedule(id: string, atMs: number): void {
    if (this.#closed || this.#queued.has(id)) return;
    this.#queued.add(id);
    const delayMs = atMs - Date.now();
    if (delayMs <= 0) {
      this.#ready.push(id);
      this.#pump();
      return;
    }
    const timer = setTimeout(() => {
      this.#timers.delete(id);
      this.#ready.push(id);
      this.#pump();
    }, delayMs);
    timer.unref();
    this.#timers.set(id, timer);
  }

  get pending(): number {
    return this.#queued.size;
  }

  #pump(): void {
    while (!this.#closed && this.#sending.size < this.#deps.config.async.callback.maxInFlight) {
      const id = this.#ready.shift();
      if (id === undefined) return;
      const job: Promise<void> = this.#deliver(id)
        .catch((err: unknown) => this.#deps.logger.error({ err, id }, 'callback delivery failed unexpectedly'))
        .finally(() => {
          this.#sending.delete(job);
          this.#pump();
        });
      this.#sending.add(job);
    }
  }

  async #deliver(id: string): Promise<void> {
    const { journal, config, storage } = this.#deps;
    const entry = journal.get(id);
    this.#queued.delete(id);
    if (!entry || !entry.callback || entry.callback.state !== 'pending' || entry.finishedAtMs === 0) return;
    const result = entry.result;
    const body = journal.fullResult(id) ?? result?.body ?? Buffer.alloc(0);
    const headers: Record<string, string> = {
      'content-type': result?.headers['content-type'] ?? 'application/octet-stream',
      'x-call-id': entry.id,
      'x-function-name': entry.functionName,
      'x-function-status': String(result?.status ?? 0),
      'x-attempts': String(entry.attempts),
      'x-skiff-status': entry.state,
    };
    if (result?.errorCode) headers['x-error-code'] = result.errorCode;
    let status = 0;
    let error = '';
    try {
      const res = await request(entry.callback.url, { method: 'POST', headers, body, dispatcher: this.#agent });
      status = res.statusCode;
      await res.body.dump();
    } catch (err) {
      error = (err as Error).message || String(err);
    }
    const now = Date.now();
    const ok = status >= 200 && status < 300;
    const attempts = entry.callback.attempts + 1;
    const { backoffBaseMs, backoffMaxMs, maxAgeMs } = config.async.callback;
    const gaveUp = !ok && now - entry.finishedAtMs >= maxAgeMs;
    // Re-read: a replay may have restarted the call while this delivery was on the wire.
    const current = journal.get(id);
    if (!current || current.finishedAtMs !== entry.finishedAtMs || !current.callback) return;
    const updated: JournalEntry = {
      ...current,
      callback: {
        ...current.callback,
        state: ok ? 'delivered' : gaveUp ? 'gave-up' : 'pending',
        attempts,
        lastStatus: status,
        lastError: ok ? '' : error || `HTTP ${status}`,
        nextAttemptAtMs: ok || gaveUp ? 0 : now + backoffMs(attempts, backoffBaseMs, backoffMaxMs),
        deliveredAtMs: ok ? now : 0,
      },
    };
    await journal.commit([{ entry: updated, fullResult: ok || gaveUp ? null : undefined }]);
    storage.recordLogs([
      {
        invocationId: id,
        function: entry.functionName,
        containerId: '',
        timeMs: now,
        stream: 'stdout',
        line: `skiff: callback to ${entry.callback.url} ${ok ? 'delivered' : gaveUp ? 'given up' : 'failed'} on attempt ${attempts} (${status ? `HTTP ${status}` : error})`,
        truncated: false,
      },
    ]);
    if (ok) this.delivered++;
    else if (!gaveUp) this.schedule(id, updated.callback!.nextAttemptAtMs);
  }

  /** Stops scheduling and waits for deliveries on the wire. Idempotent. */
  async close(): Promise<void> {
    this.#closed = true;
    for (const timer of this.#timers.values()) clearTimeout(timer);
    this.#timers.clear();
    await Promise.allSettled([...this.#sending]);
    await this.#agent.close();
  }
}
