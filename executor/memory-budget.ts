/**
 * The node's memory budget: the sum of the memory limits of its containers (function
 * containers and stem cells) never goes past it. Cold starts and stem cells reserve their limit
 * before they are created; a removal gives it back.
 */
import os from 'node:os';

const MB = 1024 * 1024;
/** Share of the machine's memory the budget takes when executor.memoryBudgetMb is 0. */
export const DEFAULT_MEMORY_SHARE = 0.5;

/** executor.memoryBudgetMb, with 0 meaning a share of this machine's memory. */
export function resolveMemoryBudgetMb(configuredMb: number, totalBytes: number = os.totalmem()): number {
  return configuredMb > 0 ? configuredMb : Math.floor((totalBytes / MB) * DEFAULT_MEMORY_SHARE);
}

export class MemoryBudget {
  readonly totalMb: number;
  #usedMb = 0;

  constructor(totalMb: number) {
    this.totalMb = totalMb;
  }

  get usedMb(): number {
    return this.#usedMb;
  }

  get freeMb(): number {
    return Math.max(0, this.totalMb - this.#usedMb);
  }

  fits(mb: number): boolean {
    return this.#usedMb + mb <= this.totalMb;
  }

  /** Takes `mb` if it fits; false (nothing taken) if not. */
  tryReserve(mb: number): boolean {
    if (!this.fits(mb)) return false;
    this.#usedMb += mb;
    return true;
  }

  release(mb: number): void {
    this.#usedMb = Math.max(0, this.#usedMb - mb);
  }
}
