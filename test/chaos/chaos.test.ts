/**
 * Chaos tests on real parts (gateway and executor as separate processes, Docker, ZeroMQ,
 * ClickHouse): SIGKILL the executor, SIGKILL the gateway, kill the executor under sync calls,
 * take a callback receiver down — and count that no accepted async invocation is lost. The
 * counts go to bench/results/chaos.json.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { describeCommit, describeMachine } from '../../bench/machine.ts';
import { asyncStatus, freeFixedPort, startCluster, type Cluster } from '../async/cluster.ts';
import { call, CLICKHOUSE_TEST_URL, eventually, json, REPO_ROOT } from '../e2e/harness.ts';
import { submitAll, waitForFinal, type FinalStates, type Submission } from './submitter.ts';

const SUBMITS = Number(process.env.SKIFF_CHAOS_SUBMITS ?? 2000);
/** One in FAILING_EVERY submits goes to the function that always fails (ends dead-lettered). */
const FAILING_EVERY = 20;
const SUBMIT_CONCURRENCY = 32;
const HEARTBEAT_INTERVAL_MS = 250;
const HEARTBEAT_MISS_LIMIT = 2;
/** The callback receiver's outage; the issue asks for 30 s. */
const CALLBACK_OUTAGE_MS = Number(process.env.SKIFF_CHAOS_CALLBACK_OUTAGE_MS ?? 30_000);

const busEnv = { SKIFF_HEARTBEAT_INTERVAL_MS: String(HEARTBEAT_INTERVAL_MS), SKIFF_HEARTBEAT_MISS_LIMIT: String(HEARTBEAT_MISS_LIMIT) };
const gatewayEnv = { ...busEnv, SKIFF_ASYNC_BACKOFF_BASE_MS: '100', SKIFF_ASYNC_BACKOFF_MAX_MS: '1000', SKIFF_CALLBACK_BACKOFF_MAX_MS: '2000' };

interface ChaosRow {
  scenario: string;
  accepted: number;
  succeeded: number;
  deadLettered: number;
  lost: number;
  duplicateExecutions: number;
  notes: string;
}
const rows: ChaosRow[] = [];
/** SKIFF_CHAOS_VERBOSE=1 prints progress to stderr. */
const progress = process.env.SKIFF_CHAOS_VERBOSE ? (line: string) => process.stderr.write(`chaos: ${line}\n`) : () => {};
const SCENARIO_TIMEOUT_MS = 170_000;

function jobs(count: number): Submission[] {
  return Array.from({ length: count }, (_, i) => ({ functionName: i % FAILING_EVERY === 0 ? 'always-fail' : 'exec-log', body: `job ${i}` }));
}

/** Checks the final states of accepted ids and returns the row for chaos.json. */
function tally(scenario: string, accepted: Array<{ id: string; functionName: string }>, final: FinalStates, executions: Map<string, number>, notes: string): ChaosRow {
  let succeeded = 0;
  let deadLettered = 0;
  let lost = 0;
  for (const { id, functionName } of accepted) {
    const status = final.status.get(id);
    if (functionName === 'exec-log' && status === 'succeeded') succeeded++;
    else if (functionName === 'always-fail' && status === 'dead-lettered') deadLettered++;
    else lost++;
  }
  // An execution beyond the attempts that completed ran twice (its first result was lost).
  let duplicateExecutions = 0;
  for (const { id } of accepted) duplicateExecutions += Math.max(0, (executions.get(id) ?? 0) - (final.completedAttempts.get(id) ?? 0));
  return { scenario, accepted: accepted.length, succeeded, deadLettered, lost, duplicateExecutions, notes: `${notes}; ${final.lostAttempts} attempts lost with an executor and redelivered` };
}

/**
 * Executions per id from the functions' `exec <id>` / `fail <id>` lines in ClickHouse, once at
 * least every completed attempt's line has arrived (lines reach storage in batches).
 */
async function executionsPerId(database: string, final: FinalStates): Promise<Map<string, number>> {
  let expected = 0;
  for (const n of final.completedAttempts.values()) expected += n;
  const read = async () => {
    const rows = await clickhouse<{ id: string; n: string }>(
      // The id is read from the line itself: with several calls per container at once, storage may
      // tie a line to a neighbouring call of the same container.
      `SELECT substring(line, 6) AS id, count() AS n FROM (SELECT line, line_id FROM ${database}.logs WHERE function IN ('exec-log', 'always-fail') AND (startsWith(line, 'exec ') OR startsWith(line, 'fail ')) GROUP BY line, line_id) GROUP BY id`,
    );
    return new Map(rows.map((r) => [r.id, Number(r.n)]));
  };
  return eventually(async () => {
    const counts = await read();
    let total = 0;
    for (const n of counts.values()) total += n;
    return total >= expected ? counts : undefined;
  }, 30_000, 'the functions\' log lines in storage');
}

async function clickhouse<T>(sql: string): Promise<T[]> {
  const reply = await call(`${CLICKHOUSE_TEST_URL}/?query=${encodeURIComponent(`${sql} FORMAT JSONEachRow`)}`);
  if (reply.status !== 200) throw new Error(`ClickHouse: ${reply.body.toString()}`);
  return reply.body
    .toString()
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line) as T);
}

afterAll(() => {
  const dir = path.join(REPO_ROOT, 'bench', 'results');
  mkdirSync(dir, { recursive: true });
  const file = path.join(dir, 'chaos.json');
  // A run of some scenarios (vitest -t) keeps the others' last rows.
  let previous: ChaosRow[] = [];
  try {
    previous = (JSON.parse(readFileSync(file, 'utf8')) as { rows: ChaosRow[] }).rows;
  } catch {
    // No earlier results.
  }
  const ran = new Set(rows.map((r) => r.scenario));
  const result = {
    scenario: 'chaos',
    date: new Date().toISOString(),
    machine: describeMachine(),
    ...describeCommit(),
    settings: { submits: SUBMITS, failingEvery: FAILING_EVERY, submitConcurrency: SUBMIT_CONCURRENCY, heartbeatIntervalMs: HEARTBEAT_INTERVAL_MS, heartbeatMissLimit: HEARTBEAT_MISS_LIMIT, callbackOutageMs: CALLBACK_OUTAGE_MS },
    notes: [
      'lost = accepted (202) ids that did not end succeeded (exec-log) or dead-lettered (always-fail).',
      'duplicateExecutions = executions (the functions\' stored `exec <id>` / `fail <id>` lines) beyond the attempts that completed; allowed by at-least-once.',
      'Both async scenarios use the ClickHouse server backend so the test can count per-(id, attempt) rows and log lines with SQL; test/async covers a chDB gateway restart.',
    ],
    rows: [...rows, ...previous.filter((r) => !ran.has(r.scenario))],
  };
  writeFileSync(file, `${JSON.stringify(result, null, 2)}\n`);
});

describe('chaos: the executor is SIGKILLed twice during 2,000 async submits', () => {
  let cluster: Cluster;
  afterAll(async () => {
    await cluster?.stop();
  });

  it('ends every accepted id succeeded or dead-lettered: lost = 0', async () => {
    cluster = await startCluster({ backend: 'server', gatewayEnv, executorEnv: busEnv });
    await cluster.deploy('exec-log', 'exec-log');
    await cluster.deploy('always-fail', 'always-fail');
    const killAt = new Set([Math.floor(SUBMITS * 0.25), Math.floor(SUBMITS * 0.6)]);
    let kills = 0;
    const report = await submitAll(() => cluster.url, jobs(SUBMITS), SUBMIT_CONCURRENCY, async (count) => {
      if (count % 200 === 0) progress(`accepted ${count}`);
      if (!killAt.has(count)) return;
      progress(`killing the executor at ${count} accepted`);
      kills++;
      await cluster.killExecutor();
      await cluster.startExecutor();
    });
    expect(kills).toBe(2);
    expect(report.notAccepted).toBe(0);
    const ids = report.accepted.map((a) => a.id);
    progress(`all submitted (${report.retriedSubmits} retried submits); waiting for final states`);
    const final = await waitForFinal(cluster.url, ids, 120_000, progress);
    const row = tally('executor SIGKILL x2', report.accepted, final, await executionsPerId(cluster.database, final), `${kills} executor kills`);
    progress(JSON.stringify(row));
    rows.push(row);
    expect(final.unfinished).toEqual([]);
    expect(row.lost).toBe(0);
    expect(row.accepted).toBe(SUBMITS);
  }, SCENARIO_TIMEOUT_MS);
});

describe('chaos: the gateway is SIGKILLed during 2,000 async submits', () => {
  let cluster: Cluster;
  afterAll(async () => {
    await cluster?.stop();
  });

  it('redelivers from the journal after restart: lost = 0, each (id, attempt) recorded once', async () => {
    cluster = await startCluster({ backend: 'server', gatewayEnv, executorEnv: busEnv });
    await cluster.deploy('exec-log', 'exec-log');
    await cluster.deploy('always-fail', 'always-fail');
    const killAt = Math.floor(SUBMITS * 0.4);
    let restarted: Promise<void> | undefined;
    const report = await submitAll(() => cluster.url, jobs(SUBMITS), SUBMIT_CONCURRENCY, (count) => {
      if (count % 200 === 0) progress(`accepted ${count}`);
      if (count !== killAt) return;
      progress(`killing the gateway at ${count} accepted`);
      // Kill and restart without holding this submitter: the others keep hammering the dead port.
      restarted = (async () => {
        await cluster.killGateway();
        await cluster.restartGateway();
      })();
    });
    await restarted;
    expect(report.notAccepted).toBe(0);
    const ids = report.accepted.map((a) => a.id);
    progress(`all submitted (${report.retriedSubmits} retried submits); waiting for final states`);
    const final = await waitForFinal(cluster.url, ids, 120_000, progress);
    const row = tally('gateway SIGKILL x1', report.accepted, final, await executionsPerId(cluster.database, final), `submits retried while the gateway was down: ${report.retriedSubmits}`);
    progress(JSON.stringify(row));
    rows.push(row);
    expect(final.unfinished).toEqual([]);
    expect(row.lost).toBe(0);
    // At-least-once may run a call twice, but storage keeps one record per (id, attempt).
    const repeated = await clickhouse<{ id: string; attempt: number; c: string }>(
      `SELECT id, attempt, count() AS c FROM ${cluster.database}.invocations FINAL WHERE trigger = 'async' GROUP BY id, attempt HAVING c > 1`,
    );
    expect(repeated).toEqual([]);
  }, SCENARIO_TIMEOUT_MS);
});

describe('chaos: sync calls in flight when the executor dies', () => {
  let cluster: Cluster;
  afterAll(async () => {
    await cluster?.stop();
  });

  it('answers each with 502 EXECUTOR_LOST within 2 heartbeat intervals; none hangs', async () => {
    cluster = await startCluster({ backend: 'server', gatewayEnv, executorEnv: busEnv });
    await cluster.deploy('exec-log', 'exec-log');
    const calls = Array.from({ length: 8 }, (_, i) => call(`${cluster.url}/function/exec-log?ms=8000`, { method: 'POST', body: `sync ${i}` }).then((reply) => ({ reply, atMs: Date.now() })));
    await eventually(async () => ((json<{ inFlight: number }>(await call(`${cluster.url}/readyz`)).inFlight >= 8) ? true : undefined), 30_000, '8 calls in flight');
    const killedAtMs = Date.now();
    await cluster.killExecutor();
    const answered = await Promise.all(calls);
    const latencies = answered.map((a) => a.atMs - killedAtMs).sort((a, b) => a - b);
    const latest = latencies[latencies.length - 1];
    for (const { reply } of answered) {
      expect(reply.status).toBe(502);
      const error = json<{ error: { code: string; message: string } }>(reply).error;
      expect(error.code).toBe('EXECUTOR_LOST');
      // The gateway saw the connection drop; it did not wait out the heartbeats.
      expect(error.message).toContain('connection dropped');
    }
    // The spec's bound (a correctness bound, not a benchmark): the kill is noticed from the
    // dropped connection, not after heartbeatMissLimit silent intervals.
    const boundMs = HEARTBEAT_INTERVAL_MS * 2;
    rows.push({ scenario: 'sync in flight, executor SIGKILL', accepted: 8, succeeded: 0, deadLettered: 0, lost: 0, duplicateExecutions: 0, notes: `all 8 got 502 EXECUTOR_LOST (connection dropped); ms after the kill: ${latencies.join(', ')}; slowest ${latest} ms = ${(latest / HEARTBEAT_INTERVAL_MS).toFixed(2)} heartbeat intervals; bound ${boundMs} ms (2 intervals)` });
    expect(latest).toBeLessThanOrEqual(boundMs);
  }, SCENARIO_TIMEOUT_MS);
});

describe('chaos: the callback receiver is down', () => {
  let cluster: Cluster;
  let receiver: Server | undefined;
  afterAll(async () => {
    receiver?.close();
    await cluster?.stop();
  });

  it(`delivers callbacks after a ${CALLBACK_OUTAGE_MS / 1000} s outage of the receiver`, async () => {
    cluster = await startCluster({ backend: 'server', gatewayEnv, executorEnv: busEnv });
    await cluster.deploy('exec-log', 'exec-log');
    // Nothing listens on the port: the receiver is "down" (connection refused) until it listens.
    const port = await freeFixedPort();
    const url = `http://127.0.0.1:${port}/callback`;
    const ids: string[] = [];
    for (let i = 0; i < 20; i++) {
      const reply = await call(`${cluster.url}/async-function/exec-log`, { method: 'POST', body: `cb ${i}`, headers: { 'x-callback-url': url } });
      expect(reply.status).toBe(202);
      ids.push(reply.headers['x-call-id']);
    }
    // Every call finishes and its first callback attempt fails while the receiver is down.
    await eventually(async () => {
      const views = await Promise.all(ids.map((id) => asyncStatus(cluster.url, id)));
      return views.every((v) => v.status === 'succeeded' && (v.callback?.attempts ?? 0) >= 1 && v.callback?.state === 'pending') ? true : undefined;
    }, 30_000, 'failed first callback attempts');
    const downSince = Date.now();
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, CALLBACK_OUTAGE_MS - (Date.now() - downSince))));
    const got = new Map<string, { status: string; attempts: string; body: string }>();
    let allArrived: () => void = () => {};
    const arrived = new Promise<void>((resolve) => (allArrived = resolve));
    receiver = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        got.set(String(req.headers['x-call-id']), { status: String(req.headers['x-function-status']), attempts: String(req.headers['x-attempts']), body: Buffer.concat(chunks).toString() });
        res.end();
        if (ids.every((id) => got.has(id))) allArrived();
      });
    });
    receiver.listen(port, '127.0.0.1');
    await once(receiver, 'listening');
    await arrived;
    for (const [i, id] of ids.entries()) expect(got.get(id)).toEqual({ status: '200', attempts: '1', body: `cb ${i}` });
    const views = await eventually(async () => {
      const all = await Promise.all(ids.map((id) => asyncStatus(cluster.url, id)));
      return all.every((v) => v.callback?.state === 'delivered') ? all : undefined;
    }, 15_000, 'delivered callback states');
    const callbackAttempts = views.map((v) => v.callback?.attempts ?? 0);
    rows.push({ scenario: `callback receiver down ${CALLBACK_OUTAGE_MS / 1000} s`, accepted: ids.length, succeeded: ids.length, deadLettered: 0, lost: 0, duplicateExecutions: 0, notes: `all ${ids.length} callbacks delivered after the outage; attempts per callback ${Math.min(...callbackAttempts)}–${Math.max(...callbackAttempts)}` });
    expect(Math.min(...callbackAttempts)).toBeGreaterThan(1);
  }, SCENARIO_TIMEOUT_MS);
});
