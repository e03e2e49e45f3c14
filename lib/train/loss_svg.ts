/**
 * The loss curve of a run as a plain SVG picture (axes, ticks, labels, the curve), viewable in any browser.
 *
 * @module
 */

import { writeFileAtomic } from "../io/atomic_write.ts";

/** One point of the curve. */
export interface LossPoint {
  /** Optimizer step. */
  step: number;
  /** Loss at that step (non-finite values leave a gap). */
  loss: number;
}

/** Options of {@linkcode lossSvg}. */
export interface LossSvgOptions {
  /** Title above the plot. Default "Training loss". */
  title?: string;
  /** Picture width in pixels. Default 720. */
  width?: number;
  /** Picture height in pixels. Default 420. */
  height?: number;
}

/**
 * Draws the loss per step: linear axes with "nice" ticks (1, 2, 5 × 10^k), axis labels, the curve, and a
 * marker per point when there are few of them.
 *
 * @param points The curve, in step order.
 * @param options Title and size.
 * @returns The SVG document.
 * @throws {Error} If no point has a finite loss.
 *
 * @example
 * ```ts
 * import { lossSvg } from "@qlora/webgpu/train";
 * import assert from "node:assert/strict";
 * const svg = lossSvg([{ step: 1, loss: 3.2 }, { step: 2, loss: 2.5 }, { step: 3, loss: 2.1 }]);
 * assert.match(svg, /^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
 * assert.match(svg, /<polyline /);
 * ```
 */
export function lossSvg(points: readonly LossPoint[], options: LossSvgOptions = {}): string {
  const { title = "Training loss", width = 720, height = 420 } = options;
  const finite = points.filter((p) => Number.isFinite(p.loss) && Number.isFinite(p.step));
  if (finite.length === 0) throw new Error("Loss curve: no finite loss to draw");
  const m = { left: 70, right: 20, top: 40, bottom: 55 };
  const [pw, ph] = [width - m.left - m.right, height - m.top - m.bottom];
  const steps = finite.map((p) => p.step);
  const losses = finite.map((p) => p.loss);
  const xt = _ticks(Math.min(...steps), Math.max(...steps), 8, true);
  const yt = _ticks(Math.min(...losses), Math.max(...losses), 6, false);
  const [x0, x1, y0, y1] = [xt[0], xt[xt.length - 1], yt[0], yt[yt.length - 1]];
  const x = (v: number) => m.left + (x1 === x0 ? pw / 2 : (v - x0) / (x1 - x0) * pw);
  const y = (v: number) => m.top + ph - (y1 === y0 ? ph / 2 : (v - y0) / (y1 - y0) * ph);
  const f = (v: number) => v.toFixed(1);
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" ` +
    `font-family="sans-serif" font-size="12">`,
    `<rect width="${width}" height="${height}" fill="white"/>`,
    `<text x="${width / 2}" y="24" text-anchor="middle" font-size="16">${_escape(title)}</text>`,
  ];
  for (const t of xt) {
    out.push(`<line x1="${f(x(t))}" y1="${m.top}" x2="${f(x(t))}" y2="${m.top + ph}" stroke="#eee"/>`);
    out.push(`<line x1="${f(x(t))}" y1="${m.top + ph}" x2="${f(x(t))}" y2="${m.top + ph + 5}" stroke="black"/>`);
    out.push(`<text x="${f(x(t))}" y="${m.top + ph + 18}" text-anchor="middle">${_label(t)}</text>`);
  }
  for (const t of yt) {
    out.push(`<line x1="${m.left}" y1="${f(y(t))}" x2="${m.left + pw}" y2="${f(y(t))}" stroke="#eee"/>`);
    out.push(`<line x1="${m.left - 5}" y1="${f(y(t))}" x2="${m.left}" y2="${f(y(t))}" stroke="black"/>`);
    out.push(`<text x="${m.left - 8}" y="${f(y(t) + 4)}" text-anchor="end">${_label(t)}</text>`);
  }
  out.push(`<path d="M${m.left},${m.top}V${m.top + ph}H${m.left + pw}" fill="none" stroke="black"/>`);
  out.push(`<text x="${m.left + pw / 2}" y="${height - 12}" text-anchor="middle">optimizer step</text>`);
  out.push(
    `<text x="16" y="${m.top + ph / 2}" text-anchor="middle" transform="rotate(-90 16 ${m.top + ph / 2})">loss</text>`,
  );
  // Gaps (non-finite losses) split the curve into several polylines.
  let run: string[] = [];
  const flush = () => {
    if (run.length > 0) {
      out.push(`<polyline points="${run.join(" ")}" fill="none" stroke="#1f77b4" stroke-width="1.5"/>`);
    }
    run = [];
  };
  for (const p of points) {
    if (Number.isFinite(p.loss) && Number.isFinite(p.step)) run.push(`${f(x(p.step))},${f(y(p.loss))}`);
    else flush();
  }
  flush();
  if (finite.length <= 60) {
    for (const p of finite) out.push(`<circle cx="${f(x(p.step))}" cy="${f(y(p.loss))}" r="2.5" fill="#1f77b4"/>`);
  }
  out.push("</svg>");
  return out.join("\n") + "\n";
}

/**
 * Writes {@linkcode lossSvg} of step metrics to a file, atomically.
 *
 * @param path Destination, e.g. `OUT/loss.svg`.
 * @param points The curve.
 * @param options Title and size.
 *
 * @example
 * ```ts
 * import { writeLossSvg } from "@qlora/webgpu/train";
 * import assert from "node:assert/strict";
 * const path = await Deno.makeTempFile({ suffix: ".svg" });
 * await writeLossSvg(path, [{ step: 1, loss: 1 }]);
 * assert.match(await Deno.readTextFile(path), /<\/svg>/);
 * ```
 */
export async function writeLossSvg(
  path: string,
  points: readonly LossPoint[],
  options?: LossSvgOptions,
): Promise<void> {
  await writeFileAtomic(path, lossSvg(points, options));
}

/** Ticks covering [lo, hi] at a 1/2/5 × 10^k spacing; the first and last tick enclose the range. */
function _ticks(lo: number, hi: number, count: number, integer: boolean): number[] {
  if (hi === lo) {
    const pad = integer ? 1 : Math.abs(lo) * 0.1 || 1;
    [lo, hi] = [lo - pad, hi + pad];
  }
  const raw = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  let step = [1, 2, 5, 10].map((k) => k * mag).find((s) => s >= raw)!;
  if (integer) step = Math.max(1, Math.round(step));
  const ticks: number[] = [];
  for (let t = Math.floor(lo / step) * step; t <= hi + step * 1e-9; t += step) ticks.push(_round(t));
  if (ticks[ticks.length - 1] < hi) ticks.push(_round(ticks[ticks.length - 1] + step));
  return ticks;
}

function _round(v: number): number {
  return Number(v.toPrecision(12));
}

function _label(v: number): string {
  return Math.abs(v) >= 1e4 || (v !== 0 && Math.abs(v) < 1e-3) ? v.toExponential(1) : String(v);
}

function _escape(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}
