/**
 * Storage's threads (the chDB worker and every ClickHouse thread it starts, the batch encoders)
 * run at a lower CPU priority than the request path, so a batch insert or a merge never takes a
 * core from an invocation: storage does its work in the time calls leave. Linux keeps a nice
 * value per thread and a new thread inherits its creator's, so a worker lowers its own priority
 * before it starts anything. No side effects on import (the workers load it).
 */
import { readlinkSync } from 'node:fs';
import os from 'node:os';

/** The nice value threads may take: 0 (unchanged) to 19 (lowest priority). */
export const MAX_THREAD_NICE = 19;

/** Whether `nice` is a value threads may take (0..MAX_THREAD_NICE). */
export function isThreadNice(nice: number): boolean {
  return Number.isInteger(nice) && nice >= 0 && nice <= MAX_THREAD_NICE;
}

/**
 * Sets the calling thread's nice value (raising it needs no privilege). False where a thread
 * cannot be named (no /proc/thread-self: not Linux) or the system refused; the thread then runs
 * at its process's priority.
 */
export function niceThisThread(nice: number): boolean {
  if (!isThreadNice(nice)) throw new RangeError(`a thread nice value must be an integer 0..${MAX_THREAD_NICE}, got ${nice}`);
  if (nice === 0) return true;
  try {
    // "<pid>/task/<tid>": setpriority on a tid changes that one thread on Linux.
    const tid = Number(readlinkSync('/proc/thread-self').split('/').pop());
    if (!Number.isInteger(tid) || tid <= 0) return false;
    os.setPriority(tid, nice);
    return true;
  } catch {
    return false;
  }
}
