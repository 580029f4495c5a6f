/**
 * Chaos-test clients: submits async calls while processes die (retrying a submit whose answer was
 * lost under the same Idempotency-Key, so a retry can never be a second call), and collects final
 * states of the accepted ids.
 */
import { setTimeout as delay } from 'node:timers/promises';
import { call, json } from '../e2e/harness.ts';

/** Between retries of a submit the gateway did not answer (down or restarting). */
const SUBMIT_RETRY_MS = 100;
const SUBMIT_GIVE_UP_MS = 90_000;

export interface Submission {
  functionName: string;
  body: string;
  headers?: Record<string, string>;
}

export interface SubmitReport {
  /** Ids answered 202, in submit order. */
  accepted: Array<{ id: string; functionName: string }>;
  /** Submits that never got a 202 (each retried until SUBMIT_GIVE_UP_MS). */
  notAccepted: number;
  /** Attempts that hit a dead or restarting gateway and were retried. */
  retriedSubmits: number;
}

/**
 * Submits every job with `concurrency` in flight; `onAccepted(count)` runs after each 202 so a
 * test can kill processes at chosen points.
 */
export async function submitAll(base: () => string, jobs: Submission[], concurrency: number, onAccepted: (count: number) => Promise<void> | void): Promise<SubmitReport> {
  const report: SubmitReport = { accepted: [], notAccepted: 0, retriedSubmits: 0 };
  let next = 0;
  const worker = async () => {
    for (;;) {
      const index = next++;
      if (index >= jobs.length) return;
      const job = jobs[index];
      const deadline = Date.now() + SUBMIT_GIVE_UP_MS;
      let id: string | undefined;
      while (id === undefined && Date.now() < deadline) {
        try {
          const reply = await call(`${base()}/async-function/${job.functionName}`, {
            method: 'POST',
            body: job.body,
            headers: { 'idempotency-key': `job-${index}`, ...job.headers },
          });
          if (reply.status === 202) id = reply.headers['x-call-id'];
          else {
            report.retriedSubmits++;
            await delay(SUBMIT_RETRY_MS);
          }
        } catch {
          report.retriedSubmits++;
          await delay(SUBMIT_RETRY_MS);
        }
      }
      if (id === undefined) {
        report.notAccepted++;
        continue;
      }
      report.accepted.push({ id, functionName: job.functionName });
      await onAccepted(report.accepted.length);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return report;
}

export interface FinalStates {
  /** Final (or last seen) status per id. */
  status: Map<string, string>;
  byStatus: Record<string, number>;
  /** Ids whose status is not final when the wait ended. */
  unfinished: string[];
  /** Attempts per id that ran to an outcome (executor losses excluded). */
  completedAttempts: Map<string, number>;
  /** Attempts lost with their executor (redelivered). */
  lostAttempts: number;
}

const FINAL = new Set(['succeeded', 'failed', 'dead-lettered']);
const STATUS_BATCH = 1000;

interface BriefStatus {
  id: string;
  status: string;
  attempts: number;
  lostAttempts: number;
}

/** Polls POST /system/async/status until every id is final or `timeoutMs` passes. */
export async function waitForFinal(base: string, ids: string[], timeoutMs: number, progress: (line: string) => void = () => {}): Promise<FinalStates> {
  const deadline = Date.now() + timeoutMs;
  const brief = new Map<string, BriefStatus>();
  let pending = ids;
  for (;;) {
    for (let i = 0; i < pending.length; i += STATUS_BATCH) {
      const chunk = pending.slice(i, i + STATUS_BATCH);
      try {
        const reply = await call(`${base}/system/async/status`, { method: 'POST', body: JSON.stringify({ ids: chunk }), headers: { 'content-type': 'application/json' } });
        if (reply.status === 200) for (const s of json<BriefStatus[]>(reply)) brief.set(s.id, s);
      } catch {
        // The gateway is restarting: try again next round.
      }
    }
    pending = ids.filter((id) => !FINAL.has(brief.get(id)?.status ?? ''));
    progress(`${ids.length - pending.length} of ${ids.length} final`);
    if (pending.length === 0 || Date.now() > deadline) break;
    await delay(250);
  }
  const status = new Map<string, string>();
  const completedAttempts = new Map<string, number>();
  const byStatus: Record<string, number> = {};
  let lostAttempts = 0;
  for (const id of ids) {
    const s = brief.get(id);
    const name = s?.status ?? 'missing';
    status.set(id, name);
    byStatus[name] = (byStatus[name] ?? 0) + 1;
    completedAttempts.set(id, (s?.attempts ?? 0) - (s?.lostAttempts ?? 0));
    lostAttempts += s?.lostAttempts ?? 0;
  }
  return { status, byStatus, unfinished: pending, completedAttempts, lostAttempts };
}
