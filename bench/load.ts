/**
 * The benchmarks' side of the load generator: forks bench/load-worker.ts (its own process, so
 * autocannon never shares an event loop with the benchmark or with Skiff) and hands it jobs.
 */
import { fork, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { BurstJob, BurstResult, DurationJob, DurationResult, LoadJob, LoadResult, ScheduleJob, ScheduleResult, WorkerReply } from './load-jobs.ts';

export type * from './load-jobs.ts';

const WORKER_ENTRY = path.join(path.dirname(fileURLToPath(import.meta.url)), 'load-worker.ts');

/** Owns one load generator process; jobs run one at a time. */
export class LoadGenerator {
  readonly #child: ChildProcess;
  readonly #exited: Promise<void>;
  #queue: Promise<unknown> = Promise.resolve();

  constructor() {
    this.#child = fork(WORKER_ENTRY, [], { execArgv: ['--import', 'tsx'], serialization: 'advanced', stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    this.#exited = new Promise((resolve) => this.#child.once('exit', () => resolve()));
  }

  /** The generator's process id (its CPU is its own, apart from the benchmark's). */
  get pid(): number | undefined {
    return this.#child.pid;
  }

  run(job: DurationJob): Promise<DurationResult>;
  run(job: BurstJob): Promise<BurstResult>;
  run(job: ScheduleJob): Promise<ScheduleResult>;
  run(job: LoadJob): Promise<LoadResult> {
    const next = this.#queue.then(() => this.#send(job));
    this.#queue = next.catch(() => undefined);
    return next;
  }

  #send(job: LoadJob): Promise<LoadResult> {
    return new Promise((resolve, reject) => {
      const onExit = () => reject(new Error('the load generator exited during a job'));
      this.#child.once('exit', onExit);
      this.#child.once('message', (reply: WorkerReply) => {
        this.#child.off('exit', onExit);
        if (reply.ok) resolve(reply.result);
        else reject(new Error(`load generator: ${reply.error}`));
      });
      this.#child.send(job);
    });
  }

  /** Idempotent: disconnects the worker (it exits) and waits for it. */
  async close(): Promise<void> {
    if (this.#child.connected) this.#child.disconnect();
    await this.#exited;
  }
}
