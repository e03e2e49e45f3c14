/**
 * A progress bar on stderr: step/total, loss, tokens/s, ETA and GPU memory in use. On a terminal it redraws one
 * line; otherwise (a log file, a pipe) it prints plain lines, at most one per interval plus the first and last.
 *
 * @module
 */

import { formatBytes } from "../bytes.ts";
import { storage, type TextSink } from "../platform/storage.ts";

/** Where the bar writes (the storage's stderr by default: Deno's, or a page's console). */
export type ProgressSink = TextSink;

/** One step's figures. */
export interface ProgressUpdate {
  /** Optimizer steps done. */
  step: number;
  /** The step's loss (omitted: not shown, e.g. for generation). */
  loss?: number;
  /** Tokens per second of the step. */
  tokensPerS: number;
  /** GPU bytes in use (accounted). */
  gpuBytes: number;
}

/** Options of {@linkcode ProgressBar}. */
export interface ProgressOptions {
  /** Where to write. Default the storage's `stderr`. */
  sink?: ProgressSink;
  /** Clock in milliseconds. Default `performance.now`. */
  now?: () => number;
  /** Least time between plain lines, ms (not on a terminal). Default 10000. */
  plainIntervalMs?: number;
  /** Characters of the bar itself. Default 24. */
  barWidth?: number;
}

/**
 * The training progress bar.
 *
 * @example Plain lines when not on a terminal
 * ```ts
 * import { ProgressBar } from "@qlora/webgpu/train";
 * import assert from "node:assert/strict";
 * let text = "";
 * const sink = { writeSync: (b: Uint8Array) => (text += new TextDecoder().decode(b), b.length), isTerminal: () => false };
 * let t = 0;
 * const bar = new ProgressBar(10, { sink, now: () => t });
 * t = 1000;
 * bar.update({ step: 1, loss: 2.5, tokensPerS: 100, gpuBytes: 2 ** 20 });
 * assert.match(text, /^step 1\/10 .*loss 2\.5000 .*100 tok\/s .*GPU 1\.00 MiB/);
 * ```
 */
export class ProgressBar {
  #total: number;
  #sink: ProgressSink;
  #now: () => number;
  #tty: boolean;
  #interval: number;
  #barWidth: number;
  #start: number;
  #startStep: number | null = null;
  #lastPlain = -Infinity;
  #line = "";
  #encoder = new TextEncoder();

  /**
   * Starts the clock.
   *
   * @param totalSteps Steps of the whole run.
   * @param options Sink, clock and layout.
   */
  constructor(totalSteps: number, options: ProgressOptions = {}) {
    this.#total = totalSteps;
    this.#sink = options.sink ?? storage().stderr;
    this.#now = options.now ?? (() => performance.now());
    this.#tty = this.#sink.isTerminal();
    this.#interval = options.plainIntervalMs ?? 10_000;
    this.#barWidth = options.barWidth ?? 24;
    this.#start = this.#now();
  }

  /**
   * Shows a finished step.
   *
   * @param u The step's figures.
   */
  update(u: ProgressUpdate): void {
    const now = this.#now();
    // A resumed run starts counting time from its first step, so the ETA is not skewed by the skipped ones.
    if (this.#startStep === null) this.#startStep = u.step - 1;
    const done = u.step - this.#startStep;
    const perStep = (now - this.#start) / Math.max(1, done);
    const eta = formatDuration((this.#total - u.step) * perStep / 1000);
    const tps = u.tokensPerS >= 100 ? u.tokensPerS.toFixed(0) : u.tokensPerS.toPrecision(3);
    const stats = `${u.loss === undefined ? "" : `loss ${u.loss.toFixed(4)} | `}${tps} tok/s | ETA ${eta} | GPU ${
      formatBytes(u.gpuBytes)
    }`;
    if (this.#tty) {
      const frac = Math.min(1, u.step / this.#total);
      const full = Math.round(frac * this.#barWidth);
      const bar = "█".repeat(full) + "░".repeat(this.#barWidth - full);
      this.#line = `${bar} ${u.step}/${this.#total} | ${stats}`;
      this.#write(`\r\x1b[2K${this.#line}`);
      if (u.step >= this.#total) this.done();
    } else if (now - this.#lastPlain >= this.#interval || u.step === 1 || u.step >= this.#total) {
      this.#lastPlain = now;
      this.#write(`step ${u.step}/${this.#total} | ${stats}\n`);
    }
  }

  /**
   * Prints a message on its own line without breaking the bar.
   *
   * @param message The text.
   */
  log(message: string): void {
    if (this.#tty && this.#line) this.#write(`\r\x1b[2K${message}\n${this.#line}`);
    else this.#write(message + "\n");
  }

  /** Ends the bar's line (on a terminal). */
  done(): void {
    if (this.#tty && this.#line) this.#write("\n");
    this.#line = "";
  }

  #write(text: string): void {
    const bytes = this.#encoder.encode(text);
    let n = 0;
    while (n < bytes.length) n += this.#sink.writeSync(bytes.subarray(n));
  }
}

/**
 * Formats seconds as `1h02m`, `3m05s` or `42s`.
 *
 * @param seconds A duration.
 * @returns A short text (`--` when not finite).
 *
 * @example
 * ```ts
 * import { formatDuration } from "@qlora/webgpu/train";
 * import assert from "node:assert/strict";
 * assert.equal(formatDuration(3725), "1h02m");
 * assert.equal(formatDuration(185), "3m05s");
 * ```
 */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return "--";
  const s = Math.round(seconds);
  const pad = (v: number) => String(v).padStart(2, "0");
  if (s >= 3600) return `${Math.floor(s / 3600)}h${pad(Math.floor(s / 60) % 60)}m`;
  if (s >= 60) return `${Math.floor(s / 60)}m${pad(s % 60)}s`;
  return `${s}s`;
}
