/**
 * The load generator, in its own process (forked by bench/load.ts) so it never shares an event
 * loop with what it measures. It takes jobs over IPC, runs them one at a time and answers with
 * latencies at microsecond resolution (autocannon's own histogram counts whole milliseconds, so
 * every response time is recorded from its 'response' event into an HDR histogram) and with its
 * own CPU use during the job.
 */
import autocannon from 'autocannon';
import * as hdr from 'hdr-histogram-js';
import { Agent, request } from 'undici';
import { distributionOf } from './stats.ts';
import type { BurstJob, BurstResult, DurationJob, DurationResult, GeneratorCost, LatencyUs, LoadJob, LoadResult, ScheduleJob, ScheduleResult, WorkerReply } from './load-jobs.ts';

/** One hour in µs: anything slower is clamped (and is a failure of its own anyway). */
const HIGHEST_TRACKABLE_US = 3_600_000_000;
const MAX_ERROR_MESSAGES = 5;

type Histogram = ReturnType<typeof hdr.build>;

function newHistogram(): Histogram {
  return hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: HIGHEST_TRACKABLE_US, numberOfSignificantValueDigits: 3 });
}

/** Records one latency; `kept` also collects it when the job asked for its distribution. */
function recordMs(histogram: Histogram, ms: number, kept?: number[]): void {
  const us = Math.min(HIGHEST_TRACKABLE_US, Math.max(1, Math.round(ms * 1000)));
  histogram.recordValue(us);
  kept?.push(us);
}

function latencies(histogram: Histogram): LatencyUs {
  if (histogram.totalCount === 0) return { p50: 0, p90: 0, p99: 0, p999: 0, max: 0, mean: 0 };
  return {
    p50: histogram.getValueAtPercentile(50),
    p90: histogram.getValueAtPercentile(90),
    p99: histogram.getValueAtPercentile(99),
    p999: histogram.getValueAtPercentile(99.9),
    max: histogram.maxValue,
    mean: Math.round(histogram.mean),
  };
}

/** Measures the CPU this process spends on `work`. */
async function metered<T>(work: () => Promise<T>): Promise<{ value: T; generator: GeneratorCost }> {
  const cpuBefore = process.cpuUsage();
  const wallBefore = performance.now();
  const value = await work();
  const cpu = process.cpuUsage(cpuBefore);
  const wallMs = performance.now() - wallBefore;
  const cpuMs = (cpu.user + cpu.system) / 1000;
  return { value, generator: { cpuMs: Math.round(cpuMs), wallMs: Math.round(wallMs), cpuPercent: Number(((cpuMs / wallMs) * 100).toFixed(1)) } };
}

async function runDuration(job: DurationJob): Promise<DurationResult> {
  const histogram = newHistogram();
  const kept = job.keepDistribution ? [] : undefined;
  const paths = job.roundRobinPaths;
  let next = 0;
  const errorMessages = new Set<string>();
  const { value: result, generator } = await metered(
    () =>
      new Promise<autocannon.Result>((resolve, reject) => {
        const instance = autocannon(
          {
            url: job.target.url,
            socketPath: job.target.socketPath,
            method: job.target.method,
            headers: job.target.headers,
            body: job.target.body,
            connections: job.connections,
            pipelining: 1,
            duration: job.durationS,
            // A round robin shared by every connection: call i goes to path i mod n.
            requests: paths ? [{ setupRequest: (req) => ({ ...req, path: paths[next++ % paths.length] }) }] : undefined,
          },
          (err, res) => (err ? reject(err) : resolve(res)),
        );
        instance.on('response', (_client, statusCode, _bytes, responseTimeMs) => {
          if (statusCode >= 200 && statusCode < 300) recordMs(histogram, responseTimeMs, kept);
        });
        instance.on('reqError', (err: Error) => {
          if (errorMessages.size < MAX_ERROR_MESSAGES) errorMessages.add(err.message);
        });
      }),
  );
  const out: DurationResult = {
    kind: 'duration',
    requestsPerSec: result.requests.average,
    latencyUs: latencies(histogram),
    requests: result.requests.total,
    errors: result.errors + result.timeouts,
    non2xx: result.non2xx,
    errorMessages: [...errorMessages],
    durationS: result.duration,
    generator,
  };
  if (kept) out.latencyDistribution = distributionOf(kept);
  histogram.destroy();
  return out;
}

async function runBurst(job: BurstJob): Promise<BurstResult> {
  const histogram = newHistogram();
  const statuses: Record<string, number> = {};
  const errorMessages: string[] = [];
  let errors = 0;
  let first = Number.POSITIVE_INFINITY;
  let last = 0;
  const url = new URL(job.target.url);
  const dispatcher = new Agent({ connections: job.count, pipelining: 1, connect: job.target.socketPath ? { socketPath: job.target.socketPath } : undefined, headersTimeout: job.timeoutMs, bodyTimeout: job.timeoutMs });
  const { generator } = await metered(async () => {
    const start = performance.now();
    await Promise.all(
      Array.from({ length: job.count }, async () => {
        try {
          const res = await request(url, { method: job.target.method, headers: job.target.headers, body: job.target.body, dispatcher });
          await res.body.dump();
          const ms = performance.now() - start;
          first = Math.min(first, ms);
          last = Math.max(last, ms);
          statuses[res.statusCode] = (statuses[res.statusCode] ?? 0) + 1;
          if (res.statusCode >= 200 && res.statusCode < 300) recordMs(histogram, ms);
        } catch (err) {
          errors++;
          if (errorMessages.length < MAX_ERROR_MESSAGES) errorMessages.push((err as Error).message);
        }
      }),
    );
  });
  await dispatcher.close();
  const out: BurstResult = {
    kind: 'burst',
    firstResponseMs: Number.isFinite(first) ? Number(first.toFixed(1)) : 0,
    lastResponseMs: Number(last.toFixed(1)),
    latencyUs: latencies(histogram),
    statuses,
    errors,
    errorMessages,
    generator,
  };
  histogram.destroy();
  return out;
}

async function runSchedule(job: ScheduleJob): Promise<ScheduleResult> {
  const histogram = newHistogram();
  const kept = job.keepDistribution ? [] : undefined;
  const statuses: Record<string, number> = {};
  let errors = 0;
  let maxSendLagMs = 0;
  const dispatcher = new Agent({ connections: null, pipelining: 1, headersTimeout: job.timeoutMs, bodyTimeout: job.timeoutMs });
  const calls = [...job.calls].sort((a, b) => a.atMs - b.atMs);
  const { value: wallMs, generator } = await metered(async () => {
    const start = performance.now();
    const pending: Array<Promise<void>> = [];
    for (const call of calls) {
      // Never early: a timer runs on the loop's millisecond clock and may fire up to 1 ms before
      // its time by performance.now(), so the last stretch is waited out in event-loop turns.
      for (let wait = call.atMs - (performance.now() - start); wait > 0; wait = call.atMs - (performance.now() - start)) {
        await new Promise((resolve) => (wait > 1 ? setTimeout(resolve, wait - 1) : setImmediate(resolve)));
      }
      const sentAt = performance.now();
      maxSendLagMs = Math.max(maxSendLagMs, sentAt - start - call.atMs);
      pending.push(
        request(`${job.baseUrl}${call.path}`, { method: job.method, headers: job.headers, body: job.body, dispatcher })
          .then(async (res) => {
            await res.body.dump();
            statuses[res.statusCode] = (statuses[res.statusCode] ?? 0) + 1;
            if (res.statusCode >= 200 && res.statusCode < 300) recordMs(histogram, performance.now() - sentAt, kept);
          })
          .catch(() => {
            errors++;
          }),
      );
    }
    await Promise.all(pending);
    return performance.now() - start;
  });
  await dispatcher.close();
  const out: ScheduleResult = { kind: 'schedule', latencyUs: latencies(histogram), statuses, errors, maxSendLagMs: Number(maxSendLagMs.toFixed(1)), wallMs: Math.round(wallMs), generator };
  if (kept) out.latencyDistribution = distributionOf(kept);
  histogram.destroy();
  return out;
}

function runJob(job: LoadJob): Promise<LoadResult> {
  switch (job.kind) {
    case 'duration':
      return runDuration(job);
    case 'burst':
      return runBurst(job);
    case 'schedule':
      return runSchedule(job);
  }
}

/** Buffers arrive over IPC ('advanced' serialization) as Uint8Arrays: make them Buffers again. */
function revive(job: LoadJob): LoadJob {
  if (job.kind === 'schedule') return { ...job, body: Buffer.from(job.body) };
  return { ...job, target: { ...job.target, body: Buffer.from(job.target.body) } };
}

if (!process.send) {
  process.stderr.write('load-worker: run me with child_process.fork (bench/load.ts does)\n');
  process.exitCode = 1;
} else {
  let queue = Promise.resolve();
  process.on('message', (job: LoadJob) => {
    queue = queue.then(async () => {
      let reply: WorkerReply;
      try {
        reply = { ok: true, result: await runJob(revive(job)) };
      } catch (err) {
        reply = { ok: false, error: (err as Error).stack ?? String(err) };
      }
      process.send?.(reply);
    });
  });
  process.on('disconnect', () => process.exit(0));
}
