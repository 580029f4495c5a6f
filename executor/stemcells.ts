/**
 * How many stem cells (prewarmed runtime containers, OpenWhisk's "prewarm" containers) a node
 * keeps per runtime: at least executor.stemCells, and reactively more, up to
 * executor.maxStemCells, when the recent rate of starts that could use one (stem cell
 * specializations plus eligible cold starts) is higher. The memory budget has the last word:
 * stem cells are only started in free memory, never by evicting warm containers.
 */
import type { FunctionSpec } from '../bus/index.ts';
import type { StemCellShape } from './container-spec.ts';
import { cpusOf, type HardeningSettings } from './hardening.ts';

/** The window the start rate is measured over. */
export const STEM_RATE_WINDOW_MS = 60_000;

/** True when a function can run in a stem cell of `shape`: same runtime, memory, CPU, no network. */
export function fitsStemCell(fn: FunctionSpec, shape: StemCellShape, hardening: HardeningSettings): boolean {
  return fn.runtime === shape.runtime && fn.network !== true && fn.limits.memoryMB === shape.memoryMb && cpusOf(fn, hardening) === shape.cpus;
}

export class StemCellSizer {
  readonly #min: number;
  readonly #max: number;
  readonly #windowMs: number;
  /** Times of recent eligible starts, oldest first. */
  readonly #starts: number[] = [];

  constructor(min: number, max: number, windowMs = STEM_RATE_WINDOW_MS) {
    this.#min = min;
    this.#max = Math.max(min, max);
    this.#windowMs = windowMs;
  }

  /** A start that could use (or used) a stem cell happened at `nowMs`. */
  recordStart(nowMs: number): void {
    this.#starts.push(nowMs);
    this.#trim(nowMs);
  }

  #trim(nowMs: number): void {
    while (this.#starts.length > 0 && this.#starts[0] <= nowMs - this.#windowMs) this.#starts.shift();
  }

  /** Stem cells to keep now: the starts of the last window, within [min, max]. */
  target(nowMs: number): number {
    this.#trim(nowMs);
    if (this.#max === 0) return 0;
    return Math.min(this.#max, Math.max(this.#min, this.#starts.length));
  }
}
