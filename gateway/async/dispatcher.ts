/**
 * The async dispatcher: accepts async calls into the journal, runs them through the initiator
 * (at most async.maxInFlight at once, functions served in turn), retries them by policy,
 * dead-letters them after the last attempt and hands finished ones to the callback sender.
 *
 * At-least-once: an attempt is acknowledged in the journal only after its invocation record has
 * been flushed to storage. A crash before that redelivers the call under the same attempt number,
 * so storage holds each (id, attempt) once even when the function ran twice. In memory there are
 * only ids and counters; request bodies are read from the journal when an attempt starts.
 */
import path from 'node:path';
import type { SkiffConfig } from '../../config.ts';
import { SkiffError } from '../../errors.ts';
import type { Logger } from '../../logger.ts';
import type { LogRow, Storage } from '../../storage/index.ts';
import type { Initiator, InvocationRequest } from '../initiator.ts';
import type { FunctionRegistry } from '../registry.ts';
import { CallbackSender } from './callbacks.ts';
import { DeadLetterIndex, replayedEntry } from './dead-letters.ts';
import { Journal, type JournalEntry, type RequestFields } from './journal.ts';
import { ReadyQueues } from './ready-queues.ts';
import { backoffMs, classifyOutcome } from './retry-policy.ts';
import { transition, type Completion, type Transition } from './transition.ts';
import { describeDeadLetter, describeInvocation, type AsyncInvocationView, type AsyncStatus, type DeadLetterView } from './views.ts';

/** One async call as the HTTP layer hands it over. */
export interface AsyncSubmission extends RequestFields {
  body: Buffer;
  callbackUrl: string;
  idempotencyKey: string;
}

export interface AsyncDispatcherDeps {
  config: SkiffConfig;
  initiator: Initiator;
  registry: FunctionRegistry;
  storage: Storage;
  logger: Logger;
}

/** Counts for /readyz-style reporting, tests and the overload benchmark. */
export interface AsyncStats {
  queued: number;
  running: number;
  deadLettered: number;
  finished: number;
  journalEntries: number;
  journalBytes: number;
  callbacksPending: number;
  /** Completions waiting for storage before they are acknowledged. */
  awaitingAck: number;
}

/** Retry of a failed flush or journal commit while acknowledging. */
const ACK_RETRY_MS = 500;
/** How often finished entries past their retention are pruned. */
const PRUNE_INTERVAL_MS = 60_000;
/** Entries evicted at once when a submit finds the journal full. */
const EVICT_BATCH = 256;

export class AsyncDispatcher {
  readonly #deps: AsyncDispatcherDeps;
  readonly #journal: Journal;
  readonly #callbacks: CallbackSender;
  readonly #queues = new ReadyQueues(() => this.#pump());
  readonly #running = new Set<string>();
  /** Unfinished calls per function (ready + delayed + running). */
  readonly #unfinished = new Map<string, number>();
  /** Finished ids (succeeded / failed) in the order they finished. */
  readonly #finished = new Set<string>();
  readonly #deadLetters = new DeadLetterIndex();
  readonly #acceptingKeys = new Map<string, Promise<string>>();
  /** Ids being written by accept (a caller's X-Call-Id may arrive twice at once). */
  readonly #acceptingIds = new Set<string>();
  #acks: Completion[] = [];
  #acking: Promise<void> | undefined;
  #ackRetry: NodeJS.Timeout | undefined;
  #waitingForExecutor = false;
  readonly #pruner: NodeJS.Timeout;
  #state: 'open' | 'closing' | 'closed' = 'open';
  #closed: Promise<void> | undefined;

  private constructor(deps: AsyncDispatcherDeps, journal: Journal) {
    this.#deps = deps;
    this.#journal = journal;
    this.#callbacks = new CallbackSender({ config: deps.config, journal, storage: deps.storage, logger: deps.logger });
    this.#pruner = setInterval(() => void this.#prune(), Math.min(PRUNE_INTERVAL_MS, deps.config.async.retainFinishedMs));
    this.#pruner.unref();
  }

  /** Opens the journal, redelivers what was unfinished and resumes pending callbacks. */
  static start(deps: AsyncDispatcherDeps): AsyncDispatcher {
    const { config } = deps;
    const journal = Journal.open({
      dir: config.async.journalDir || path.join(config.dataDir, 'async-journal'),
      maxEntries: config.async.maxJournalEntries,
      maxBytes: config.async.maxJournalBytes,
    });
    const dispatcher = new AsyncDispatcher(deps, journal);
    dispatcher.#recover();
    return dispatcher;
  }

  #recover(): void {
    const finished: JournalEntry[] = [];
    let redelivered = 0;
    for (const entry of this.#journal.entries()) {
      if (entry.state === 'queued') {
        this.#unfinished.set(entry.functionName, (this.#unfinished.get(entry.functionName) ?? 0) + 1);
        this.#enqueue(entry.id, entry.functionName, entry.nextAttemptAtMs);
        redelivered++;
      } else {
        finished.push(entry);
      }
    }
    finished.sort((a, b) => a.finishedAtMs - b.finishedAtMs);
    for (const entry of finished) {
      if (entry.state === 'dead-lettered') this.#deadLetters.add(entry.id);
      else this.#finished.add(entry.id);
      if (entry.callback?.state === 'pending') this.#callbacks.schedule(entry.id, entry.callback.nextAttemptAtMs);
    }
    const size = this.#journal.size;
    this.#deps.logger.info({ redelivered, finished: finished.length, entries: size.entries, bytes: size.bytes }, 'async journal opened');
    this.#pump();
  }

  /**
   * Accepts a call: resolves with its id once it is on disk. A repeated Idempotency-Key (or
   * X-Call-Id) of the same function resolves with the first call's id and `duplicate: true`.
   */
  async submit(submission: AsyncSubmission): Promise<{ id: string; duplicate: boolean }> {
    if (this.#state !== 'open') throw new SkiffError('NO_EXECUTOR', 'the gateway is shutting down');
    const { functionName, idempotencyKey } = submission;
    this.#deps.registry.require(functionName);
    if (idempotencyKey !== '') {
      const known = this.#journal.idempotent(functionName, idempotencyKey) ?? (await this.#acceptingKeys.get(`${functionName}\n${idempotencyKey}`)?.catch(() => undefined));
      if (known !== undefined) return { id: known, duplicate: true };
    }
    if (this.#journal.get(submission.id) || this.#acceptingIds.has(submission.id)) return { id: submission.id, duplicate: true };
    if (submission.callbackUrl !== '' && !/^https?:\/\/[^\s]+$/.test(submission.callbackUrl)) {
      throw new SkiffError('BAD_REQUEST', 'X-Callback-Url must be an http(s) URL');
    }
    const queued = this.#unfinished.get(functionName) ?? 0;
    if (queued >= this.#deps.config.async.maxQueuedPerFunction) {
      throw new SkiffError('QUEUE_FULL', `${queued} async calls of "${functionName}" are already queued (async.maxQueuedPerFunction)`);
    }
    const entry: JournalEntry = {
      id: submission.id,
      functionName,
      method: submission.method,
      path: submission.path,
      query: submission.query,
      headers: submission.headers,
      traceparent: submission.traceparent,
      receivedAtMs: submission.receivedAtMs,
      requestBytes: submission.body.length,
      idempotencyKey,
      state: 'queued',
      attempts: 0,
      failures: 0,
      redeliveries: 0,
      replays: 0,
      nextAttemptAtMs: 0,
      finishedAtMs: 0,
      history: [],
      result: null,
      callback: submission.callbackUrl === '' ? null : { url: submission.callbackUrl, state: 'pending', attempts: 0, lastStatus: 0, lastError: '', nextAttemptAtMs: 0, deliveredAtMs: 0 },
    };
    this.#unfinished.set(functionName, queued + 1);
    this.#acceptingIds.add(entry.id);
    const accepting = this.#accept(entry, submission.body);
    const key = `${functionName}\n${idempotencyKey}`;
    if (idempotencyKey !== '') this.#acceptingKeys.set(key, accepting.then(() => entry.id));
    try {
      await accepting;
    } catch (err) {
      this.#decrementUnfinished(functionName);
      throw err;
    } finally {
      this.#acceptingIds.delete(entry.id);
      if (idempotencyKey !== '') this.#acceptingKeys.delete(key);
    }
    this.#enqueue(entry.id, functionName, 0);
    this.#pump();
    return { id: entry.id, duplicate: false };
  }

  /**
   * Records a refused submit (never journaled, never run) as a 'rejected' async invocation with
   * its error code and status, the way the sync route records its early rejections. Not when
   * the id is one this gateway already holds (a caller's X-Call-Id): that call's own record
   * would be shadowed by the refusal.
   */
  recordRejected(request: InvocationRequest, err: SkiffError): void {
    if (this.#state !== 'closed' && (this.#journal.get(request.id) !== undefined || this.#acceptingIds.has(request.id))) return;
    const outcome = { status: err.statusCode, headers: {}, body: Buffer.alloc(0), errorCode: err.code, errorMessage: err.message, result: undefined, executorNodeId: '' };
    this.#deps.initiator.record({ ...request, trigger: 'async' }, outcome, 'rejected');
  }

  /** Stores the entry; when the journal is full, evicts the oldest finished entries first. */
  async #accept(entry: JournalEntry, body: Buffer): Promise<void> {
    try {
      await this.#journal.accept(entry, body);
    } catch (err) {
      if (!(err instanceof SkiffError && err.code === 'JOURNAL_FULL') || !(await this.#evictFinished())) throw err;
      await this.#journal.accept(entry, body);
    }
  }

  /** Removes up to EVICT_BATCH of the oldest finished entries whose callbacks are settled. */
  async #evictFinished(): Promise<boolean> {
    const victims: string[] = [];
    for (const id of this.#finished) {
      if (victims.length >= EVICT_BATCH) break;
      if (this.#journal.get(id)?.callback?.state !== 'pending') victims.push(id);
    }
    for (const id of victims) this.#finished.delete(id);
    await this.#journal.remove(victims);
    return victims.length > 0;
  }

  #decrementUnfinished(functionName: string): void {
    const left = (this.#unfinished.get(functionName) ?? 1) - 1;
    if (left <= 0) this.#unfinished.delete(functionName);
    else this.#unfinished.set(functionName, left);
  }

  #enqueue(id: string, functionName: string, atMs: number, ahead = false): void {
    this.#queues.enqueue(id, functionName, atMs, ahead);
  }

  #pump(): void {
    const { maxInFlight } = this.#deps.config.async;
    while (this.#state === 'open' && this.#running.size + this.#acks.length < maxInFlight && this.#queues.hasReady) {
      if (this.#deps.initiator.executors().length === 0) {
        this.#awaitExecutor();
        return;
      }
      const id = this.#queues.next();
      if (id === undefined) return;
      this.#running.add(id);
      void this.#attempt(id);
    }
  }

  /** With no executor connected, waits for one instead of burning attempts. */
  #awaitExecutor(): void {
    if (this.#waitingForExecutor) return;
    this.#waitingForExecutor = true;
    const again = () => {
      this.#waitingForExecutor = false;
      this.#pump();
    };
    this.#deps.initiator.waitForExecutors(1, this.#deps.config.async.backoffMaxMs).then(again, again);
  }

  async #attempt(id: string): Promise<void> {
    const entry = this.#journal.get(id);
    if (!entry || entry.state !== 'queued') {
      this.#running.delete(id);
      this.#pump();
      return;
    }
    const startedAtMs = Date.now();
    const request: InvocationRequest = {
      id,
      functionName: entry.functionName,
      method: entry.method,
      path: entry.path,
      query: entry.query,
      headers: entry.headers,
      body: this.#journal.body(id),
      traceparent: entry.traceparent,
      // Every attempt keeps the accepted time, so a redelivered (id, attempt) is the same record
      // (storage's dedup key); the deadline runs from startedAtMs.
      receivedAtMs: entry.receivedAtMs,
      startedAtMs,
      trigger: 'async',
      attempt: entry.attempts + 1,
    };
    const outcome = await this.#deps.initiator.invoke(request);
    const outcomeClass = classifyOutcome(outcome.errorCode, outcome.status);
    if (outcomeClass === 'not-started') {
      // Nothing ran: try again shortly, without using an attempt or writing a record, ahead of
      // the calls that were behind it.
      this.#running.delete(id);
      if (this.#state === 'open') {
        const { backoffBaseMs, backoffMaxMs } = this.#deps.config.async;
        this.#enqueue(id, entry.functionName, Date.now() + backoffMs(1, backoffBaseMs, backoffMaxMs), true);
      }
      this.#pump();
      return;
    }
    this.#acks.push({ request, outcome, outcomeClass, startedAtMs, finishedAtMs: Date.now(), recorded: false });
    this.#running.delete(id);
    this.#ack();
  }

  /** Records completions, waits until storage has them, then commits them to the journal. */
  #ack(): void {
    if (this.#state === 'closed' || this.#acking || this.#ackRetry || this.#acks.length === 0) return;
    this.#acking = this.#ackBatch().finally(() => {
      this.#acking = undefined;
      this.#ack();
      this.#pump();
    });
  }

  async #ackBatch(): Promise<void> {
    const batch = this.#acks;
    this.#acks = [];
    for (const completion of batch) {
      if (completion.recorded) continue;
      this.#deps.initiator.record(completion.request, completion.outcome);
      completion.recorded = true;
    }
    const updates: Transition[] = [];
    try {
      await this.#deps.storage.flush();
      for (const completion of batch) {
        const entry = this.#journal.get(completion.request.id);
        if (entry?.state === 'queued') updates.push(transition(entry, completion, this.#deps.config, Date.now()));
      }
      await this.#journal.commit(updates);
    } catch (err) {
      this.#deps.logger.warn({ err, completions: batch.length }, 'async results not acknowledged yet; retrying');
      this.#acks = [...batch, ...this.#acks];
      this.#ackRetry = setTimeout(() => {
        this.#ackRetry = undefined;
        this.#ack();
      }, ACK_RETRY_MS);
      this.#ackRetry.unref();
      return;
    }
    for (const { entry, delayMs } of updates) this.#settled(entry, delayMs);
  }

  /** Applies a committed transition in memory. */
  #settled(entry: JournalEntry, delayMs: number): void {
    if (entry.state === 'queued') {
      // A redelivery (the attempt was lost with its executor) runs ahead of the calls accepted
      // after it: at the back it would wait out the whole backlog of its function.
      this.#enqueue(entry.id, entry.functionName, Date.now() + delayMs, entry.history.at(-1)?.outcome === 'lost');
      return;
    }
    this.#decrementUnfinished(entry.functionName);
    if (entry.state === 'dead-lettered') this.#deadLetters.add(entry.id);
    else this.#finished.add(entry.id);
    if (entry.callback?.state === 'pending') this.#callbacks.schedule(entry.id, 0);
  }

  /** The status of an async call, or undefined when the journal does not hold it. */
  status(id: string): AsyncStatus | undefined {
    const entry = this.#journal.get(id);
    if (!entry) return undefined;
    return this.#running.has(id) ? 'running' : entry.state;
  }

  /** Brief states of many calls at once (POST /system/async/status); unknown ids say 'unknown'. */
  briefStatuses(ids: readonly string[]): Array<{ id: string; status: AsyncStatus | 'unknown'; attempts: number; lostAttempts: number }> {
    return ids.map((id) => {
      const entry = this.#journal.get(id);
      if (!entry) return { id, status: 'unknown', attempts: 0, lostAttempts: 0 };
      const lostAttempts = entry.history.filter((h) => h.outcome === 'lost').length;
      return { id, status: this.#running.has(id) ? 'running' : entry.state, attempts: entry.attempts, lostAttempts };
    });
  }

  /** GET /system/invocations/:id for an async call: journal state plus its stored logs. */
  async describe(id: string): Promise<AsyncInvocationView | undefined> {
    if (!this.#journal.get(id)) return undefined;
    let logs: LogRow[] = [];
    try {
      logs = (await this.#deps.storage.getInvocation(id))?.logs ?? [];
    } catch (err) {
      this.#deps.logger.warn({ err, id }, 'logs of an async invocation could not be read');
    }
    // Read the entry after the await, so its fields and its status are of the same moment.
    const entry = this.#journal.get(id);
    if (!entry) return undefined;
    return describeInvocation(entry, this.#running.has(id) ? 'running' : entry.state, logs);
  }

  /** Dead letters, newest first, optionally of one function. */
  deadLetters(options: { functionName?: string; limit: number }): DeadLetterView[] {
    const out: DeadLetterView[] = [];
    for (const id of this.#deadLetters.newestFirst()) {
      if (out.length >= options.limit) break;
      const entry = this.#journal.get(id);
      if (!entry || (options.functionName !== undefined && entry.functionName !== options.functionName)) continue;
      out.push(describeDeadLetter(entry));
    }
    return out;
  }

  /** Puts a dead letter back in its queue; resolves once that is on disk. */
  async replay(id: string): Promise<AsyncInvocationView> {
    const entry = replayedEntry(this.#journal.get(id), id, Date.now());
    this.#deps.registry.require(entry.functionName);
    await this.#journal.commit([{ entry, fullResult: null }]);
    this.#deadLetters.delete(id);
    this.#unfinished.set(entry.functionName, (this.#unfinished.get(entry.functionName) ?? 0) + 1);
    this.#enqueue(id, entry.functionName, 0);
    this.#pump();
    return describeInvocation(entry, 'queued', []);
  }

  stats(): AsyncStats {
    let queued = 0;
    for (const count of this.#unfinished.values()) queued += count;
    const size = this.#journal.size;
    return {
      queued: queued - this.#running.size,
      running: this.#running.size,
      deadLettered: this.#deadLetters.size,
      finished: this.#finished.size,
      journalEntries: size.entries,
      journalBytes: size.bytes,
      callbacksPending: this.#callbacks.pending,
      awaitingAck: this.#acks.length,
    };
  }

  /** Drops finished entries and dead letters past their retention (callbacks settled). */
  async #prune(): Promise<void> {
    const now = Date.now();
    const { retainFinishedMs, retainDeadLettersMs } = this.#deps.config.async;
    const victims: string[] = [];
    for (const id of this.#finished) {
      const entry = this.#journal.get(id);
      if (entry && entry.finishedAtMs > now - retainFinishedMs) break;
      if (entry?.callback?.state === 'pending') continue;
      victims.push(id);
    }
    for (const id of this.#deadLetters.oldestFirst()) {
      const entry = this.#journal.get(id);
      if (entry && entry.finishedAtMs > now - retainDeadLettersMs) break;
      victims.push(id);
    }
    for (const id of victims) {
      this.#finished.delete(id);
      this.#deadLetters.delete(id);
    }
    try {
      await this.#journal.remove(victims);
    } catch (err) {
      this.#deps.logger.warn({ err }, 'async journal pruning failed');
    }
  }

  /**
   * Stops dispatching, waits for acknowledgements in progress and closes the journal. Calls still
   * running stay queued on disk and run again after a restart. Idempotent.
   */
  close(): Promise<void> {
    this.#closed ??= (async () => {
      this.#state = 'closing';
      clearInterval(this.#pruner);
      this.#queues.clear();
      clearTimeout(this.#ackRetry);
      this.#ackRetry = undefined;
      await this.#acking;
      if (this.#acks.length > 0) await this.#ackBatch().catch(() => undefined);
      await this.#callbacks.close();
      await this.#journal.close();
      this.#state = 'closed';
    })();
    return this.#closed;
  }
}
