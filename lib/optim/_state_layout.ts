// Where each parameter's optimizer state lives: parameters merged into runs (contiguous views of the same buffers),
// each run cut in segments of at most one page, packed into pages in order.

import type { Tensor } from "../gpu/tensor.ts";

/** Elements of one run whose state sits contiguously in one page. */
export interface Segment {
  /** Index of the run. */
  run: number;
  /** First element of the run in this segment (a multiple of 256). */
  elemOffset: number;
  /** Elements in this segment. */
  n: number;
  /** `n` rounded up to a multiple of 256: the stride between the state arrays in the segment. */
  cap: number;
  /** The page. */
  page: number;
  /** Byte offset in the page (a multiple of 256, so it can be bound). */
  byteOffset: number;
  /** Bytes of state (a multiple of 256). */
  bytes: number;
}

/** The state layout of a set of parameters. */
export interface StateLayout {
  segments: Segment[];
  /** Segments of each page. */
  byPage: Segment[][];
  pageCount: number;
}

const BLOCK = 256;

/** Consecutive parameters laid out as one: their state, update and norm are each one range. */
export interface Run {
  /** Index of the first parameter. */
  first: number;
  /** Element offset of each parameter in the run (each a multiple of 256). */
  offsets: number[];
  /** Elements from the first parameter's start to the last one's end (the padding between them included). */
  size: number;
}

/** What a run needs of a parameter: the parameter and its gradient. */
interface Pair {
  param: Tensor;
  grad: Tensor;
}

/**
 * Merges consecutive parameters into runs where both the parameter and its gradient start where the previous one's
 * extent, padded to 256 elements, ends in the same buffer (as a `TensorArena` packs them). The padding is part of
 * the run: it must be zero, and stays zero under AdamW (zero gradient, zero moments, zero parameter).
 */
export function packRuns(params: readonly Pair[]): Run[] {
  const runs: Run[] = [];
  params.forEach((p, i) => {
    const run = runs[runs.length - 1];
    const prev = params[i - 1];
    const padded = prev && Math.ceil(prev.param.size / BLOCK) * BLOCK * 4;
    const follows = (a: Tensor, b: Tensor) => b.buffer === a.buffer && b.byteOffset === a.byteOffset + padded;
    if (run && follows(prev.param, p.param) && follows(prev.grad, p.grad)) {
      const at = run.size + padded / 4 - prev.param.size;
      run.offsets.push(at);
      run.size = at + p.param.size;
    } else {
      runs.push({ first: i, offsets: [0], size: p.param.size });
    }
  });
  return runs;
}

/** The run layout as state files record it: parameters per run. */
export function runCounts(runs: readonly Run[]): number[] {
  return runs.map((r) => r.offsets.length);
}

/** A run layout in words, for errors: `parameters 0-13, 14-27` (one range per run). */
export function describeRuns(counts: readonly number[]): string {
  let first = 0;
  const parts = counts.map((n) => {
    const part = n === 1 ? `${first}` : `${first}-${first + n - 1}`;
    first += n;
    return part;
  });
  return `runs of parameters ${parts.join(", ") || "(none)"}`;
}

/**
 * Splits runs of `sizes` elements in segments of state and packs them into pages (next fit: a segment
 * never straddles two pages). `bytesPerBlock` is the state size of 256 elements.
 */
export function layoutState(sizes: readonly number[], pageSize: number, bytesPerBlock: number): StateLayout {
  const maxCap = Math.floor(pageSize / bytesPerBlock) * BLOCK;
  if (maxCap === 0) {
    throw new Error(`Page size ${pageSize} B is too small: 256 elements of optimizer state need ${bytesPerBlock} B`);
  }
  const segments: Segment[] = [];
  let page = 0;
  let offset = 0;
  sizes.forEach((size, run) => {
    for (let e = 0; e < size; e += maxCap) {
      const n = Math.min(maxCap, size - e);
      const cap = Math.ceil(n / BLOCK) * BLOCK;
      const bytes = Math.ceil((cap / BLOCK) * bytesPerBlock / 256) * 256;
      if (offset + bytes > pageSize) {
        page++;
        offset = 0;
      }
      segments.push({ run, elemOffset: e, n, cap, page, byteOffset: offset, bytes });
      offset += bytes;
    }
  });
  const pageCount = segments.length ? page + 1 : 0;
  const byPage: Segment[][] = Array.from({ length: pageCount }, () => []);
  for (const s of segments) byPage[s.page].push(s);
  return { segments, byPage, pageCount };
}
