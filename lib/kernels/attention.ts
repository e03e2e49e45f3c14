/**
 * Causal grouped-query self-attention on the GPU (`wgsl/attention.wgsl`), forward and backward, FlashAttention-2 style: scores are computed tile
 * by tile with an online softmax and never stored; the backward pass recomputes them from `q`, `k` and the saved
 * per-row logsumexp.
 *
 * Layout (what the q/k/v projections produce, no transposes): `q` `[B, Tq, nHeads, D]`, `k`/`v`
 * `[B, Tk, nKvHeads, D]`, row-major, f32. Batches are right-padded: keys at or past `seqLens[b]` are masked out.
 * Query row `t` of sequence `b` sits at position `qOffset + qOffsets[b] + t` and sees keys up to that position, so
 * training uses `Tk = Tq` and offset 0, and decoding with a KV cache of capacity `Tk` passes the new rows with
 * `qOffset`/`qOffsets` = tokens already cached and `seqLens` = cached + new.
 *
 * @module
 */

import type { Binding, Gpu } from "../gpu/device.ts";
import type { Tensor } from "../gpu/tensor.ts";
import { distinct, elementGrid, expectSize, fitsBinding, grid, output, params, productFlops } from "./_kernel.ts";

/** Shape and masking of an attention call. */
export interface AttentionShape {
  /** Sequences in the batch. */
  B: number;
  /** Query rows per sequence. */
  T: number;
  /** Key/value rows per sequence (KV-cache capacity); default `T`. */
  Tk?: number;
  /** Query heads. */
  nHeads: number;
  /** Key/value heads (divides `nHeads`; query head `h` uses KV head `floor(h / (nHeads / nKvHeads))`). */
  nKvHeads: number;
  /** Head dimension `D`: a multiple of 4, at most 128. */
  headDim: number;
  /** u32 `[B]`: valid keys per sequence (right padding); default `Tk` for all. */
  seqLens?: Tensor;
  /** Position of query row 0 of every sequence; default 0. */
  qOffset?: number;
  /** u32 `[B]`: per-sequence positions of query row 0, added to `qOffset`. */
  qOffsets?: Tensor;
}

/** Result of {@linkcode attentionForward}. */
export interface AttentionForward {
  /** f32 `[B, T, nHeads, D]`. */
  out: Tensor;
  /** f32 `[B, nHeads, T]`: logsumexp of each row's scaled scores (0 for a row with no key); keep for backward. */
  lse: Tensor;
}

/** Result of {@linkcode attentionBackward}. */
export interface AttentionGrads {
  /** f32, shaped like `q`. */
  dq: Tensor;
  /** f32, shaped like `k` (summed over the query heads of each KV group; zero for padded keys). */
  dk: Tensor;
  /** f32, shaped like `v`. */
  dv: Tensor;
}

interface _Plan {
  Tk: number;
  D: number;
  /**
   * (query row, key) pairs the kernels compute a score for, over every sequence and query head, or undefined where
   * the positions are on the GPU (`qOffsets`). Causal: row `t` sees `min(qOffset + t + 1, Tk)` keys. Keys past
   * `seqLens` (right padding, also on the GPU) are skipped by the kernels but counted here: with padding, the
   * FLOPs stated are an upper bound.
   */
  pairs: number | undefined;
  /** Bytes of q, k (v is the same) and of lse (or delta). */
  bytes: { q: number; k: number; lse: number };
  /** Bindings 0-5 (q, k, v, seqLens, qOffsets, uniforms) of an entry point tiled by `bq` query and `bk` key rows. */
  inputs: (bq: number, bk: number) => Binding[];
}

function _plan(gpu: Gpu, q: Tensor, k: Tensor, v: Tensor, s: AttentionShape): _Plan {
  const { B, T, nHeads, nKvHeads, headDim: D } = s;
  const Tk = s.Tk ?? T;
  if (!(D % 4 === 0 && D > 0 && D <= 128)) {
    throw new Error(`Attention: head dimension ${D} must be a multiple of 4 up to 128`);
  }
  if (!(nKvHeads > 0 && nHeads % nKvHeads === 0)) {
    throw new Error(`Attention: ${nHeads} query heads are not a multiple of ${nKvHeads} KV heads`);
  }
  expectSize(q, "Attention q", B * T * nHeads * D);
  expectSize(k, "Attention k", B * Tk * nKvHeads * D);
  expectSize(v, "Attention v", B * Tk * nKvHeads * D);
  for (const t of [q, k, v]) fitsBinding(gpu, t, "Attention input");
  for (const [t, name] of [[s.seqLens, "seqLens"], [s.qOffsets, "qOffsets"]] as const) {
    if (t) expectSize(t, `Attention ${name}`, B, "u32");
  }
  const inputs = (bq: number, bk: number): ReturnType<_Plan["inputs"]> => [
    q.binding,
    k.binding,
    v.binding,
    // Absent masks bind q as a stand-in (read-only, never read: the use flags are 0).
    (s.seqLens ?? q).binding,
    (s.qOffsets ?? q).binding,
    params(
      [B, T, Tk, nHeads, nKvHeads, s.qOffset ?? 0, s.seqLens ? 1 : 0, s.qOffsets ? 1 : 0, bq, bk, D / 4],
      [1 / Math.sqrt(D)],
    ),
  ];
  // Rows t < c see qOffset + t + 1 keys, the others all Tk.
  const q0 = s.qOffset ?? 0;
  const c = Math.min(Math.max(Tk - q0, 0), T);
  const perHead = c * q0 + (c * (c + 1)) / 2 + (T - c) * Tk;
  const pairs = s.qOffsets ? undefined : B * nHeads * perHead;
  return { Tk, D, inputs, pairs, bytes: { q: q.byteLength, k: k.byteLength, lse: 4 * B * nHeads * T } };
}

/**
 * FLOPs of `products` products over the computed (query row, key) pairs, D multiply-adds per pair each (what the
 * kernels do, recomputation included; `_Plan.pairs` gives the causal count). Softmax exponentials are
 * not counted.
 */
function _flops(plan: _Plan, products: number): number | undefined {
  return plan.pairs === undefined ? undefined : products * productFlops(plan.pairs, 1, plan.D);
}

/**
 * Rows per tile (query rows and key rows alike): 16, or fewer so that a workgroup of `rows * D/4` invocations fits
 * (workgroup memory holds one or two `rows²` f32 score tiles only).
 */
function _headTile(gpu: Gpu, D: number): number {
  const maxInvocations = Math.min(256, gpu.limits.maxComputeInvocationsPerWorkgroup);
  let rows = 16;
  while (rows > 1 && rows * (D / 4) > maxInvocations) rows /= 2;
  return rows;
}

/** Query rows per forward workgroup: the tile, or fewer when decoding one or a few rows. */
function _queryRows(tile: number, T: number): number {
  let rows = 1;
  while (rows < T && rows < tile) rows *= 2;
  return rows;
}

/**
 * Causal GQA attention with key padding, scale `1 / sqrt(D)`, fused (no `[T, T]` scores in memory).
 *
 * @param gpu The device.
 * @param q f32 `[B, T, nHeads, D]`.
 * @param k f32 `[B, Tk, nKvHeads, D]`.
 * @param v f32 `[B, Tk, nKvHeads, D]`.
 * @param shape Sizes, padding and positions (see the module doc).
 * @param out Optional outputs to reuse.
 * @returns The attention output and the per-row logsumexp.
 *
 * @example Two tokens, one head: the second attends to both
 * ```ts
 * import { requestGpu, Tensor } from "@qlora/webgpu";
 * import { attentionForward } from "@qlora/webgpu/kernels";
 * import assert from "node:assert/strict";
 * const gpu = await requestGpu();
 * const q = Tensor.empty(gpu, [1, 2, 1, 4]); // zeros: zero scores, uniform weights
 * const k = Tensor.empty(gpu, [1, 2, 1, 4]);
 * const v = Tensor.fromArray(gpu, new Float32Array([1, 1, 1, 1, 3, 3, 3, 3]), [1, 2, 1, 4]);
 * const { out, lse } = attentionForward(gpu, q, k, v, { B: 1, T: 2, nHeads: 1, nKvHeads: 1, headDim: 4 });
 * assert.deepEqual([...await out.toFloat32()], [1, 1, 1, 1, 2, 2, 2, 2]);
 * assert.ok(Math.abs((await lse.toFloat32())[1] - Math.log(2)) < 1e-6);
 * ```
 */
export function attentionForward(
  gpu: Gpu,
  q: Tensor,
  k: Tensor,
  v: Tensor,
  shape: AttentionShape,
  out: Partial<AttentionForward> = {},
): AttentionForward {
  const plan = _plan(gpu, q, k, v, shape);
  const { B, T, nHeads } = shape;
  const o = output(gpu, out.out, q.shape, "attention out");
  const lse = output(gpu, out.lse, [B, nHeads, T], "attention lse");
  for (const t of [q, k, v]) distinct("attentionForward", t, o, lse);
  const D = plan.D;
  const BK = _headTile(gpu, D);
  const BQ = _queryRows(BK, T);
  gpu.dispatch({
    kernel: "attention",
    entryPoint: "forward",
    constants: { D, BQ, BK },
    bindings: [...plan.inputs(BQ, BK), o.binding, lse.binding],
    workgroups: grid(gpu, B * nHeads * Math.ceil(T / BQ)),
    // Reads q, k, v; writes out and lse. Two products: q·kᵀ and p·v.
    bytes: 2 * plan.bytes.q + 2 * plan.bytes.k + plan.bytes.lse,
    flops: _flops(plan, 2),
  });
  return { out: o, lse };
}

/**
 * Gradients of {@linkcode attentionForward} (FlashAttention-2 backward): `delta = rowsum(dOut ∘ out)`, then dK/dV
 * with one key row per invocation (summed over the query heads of its group, no atomics), then dQ.
 *
 * @param gpu The device.
 * @param q The forward's `q`.
 * @param k The forward's `k`.
 * @param v The forward's `v`.
 * @param fwd The forward's `out` and `lse`.
 * @param dOut Gradient of the output, shaped like `q`.
 * @param shape The forward's shape.
 * @param grads Optional outputs to reuse.
 * @returns `dq`, `dk`, `dv`.
 *
 * @example The gradient of v is the attention weights summed over rows
 * ```ts
 * import { requestGpu, Tensor } from "@qlora/webgpu";
 * import { attentionBackward, attentionForward } from "@qlora/webgpu/kernels";
 * import assert from "node:assert/strict";
 * const gpu = await requestGpu();
 * const shape = { B: 1, T: 2, nHeads: 1, nKvHeads: 1, headDim: 4 };
 * const z = () => Tensor.empty(gpu, [1, 2, 1, 4]); // zeros
 * const [q, k, v] = [z(), z(), z()];
 * const fwd = attentionForward(gpu, q, k, v, shape);
 * const dOut = Tensor.fromArray(gpu, new Float32Array(8).fill(1), [1, 2, 1, 4]);
 * const { dv } = attentionBackward(gpu, q, k, v, fwd, dOut, shape);
 * assert.deepEqual([...await dv.toFloat32()], [1.5, 1.5, 1.5, 1.5, 0.5, 0.5, 0.5, 0.5]);
 * ```
 */
export function attentionBackward(
  gpu: Gpu,
  q: Tensor,
  k: Tensor,
  v: Tensor,
  fwd: AttentionForward,
  dOut: Tensor,
  shape: AttentionShape,
  grads: Partial<AttentionGrads> = {},
): AttentionGrads {
  const plan = _plan(gpu, q, k, v, shape);
  const { B, T, nHeads, nKvHeads } = shape;
  expectSize(fwd.out, "Attention out", q.size);
  expectSize(fwd.lse, "Attention lse", B * nHeads * T);
  expectSize(dOut, "Attention dOut", q.size);
  const dq = output(gpu, grads.dq, q.shape, "attention dq");
  const dk = output(gpu, grads.dk, k.shape, "attention dk");
  const dv = output(gpu, grads.dv, v.shape, "attention dv");
  for (const t of [q, k, v, fwd.out, fwd.lse, dOut]) distinct("attentionBackward", t, dq, dk, dv);
  const delta = gpu.createBuffer(B * nHeads * T * 4, "scratch", "attention delta");
  const rows = B * T * nHeads;
  gpu.dispatch({
    kernel: "attention",
    entryPoint: "backward_delta",
    bindings: [dOut.binding, fwd.out.binding, delta, params([rows, T, nHeads, plan.D / 4])],
    workgroups: elementGrid(gpu, rows, 64),
    bytes: 2 * plan.bytes.q + plan.bytes.lse,
    flops: productFlops(rows, 1, plan.D),
  });
  const saved = [dOut.binding, fwd.lse.binding, delta];
  const D = plan.D;
  const tile = _headTile(gpu, D);
  gpu.dispatch({
    kernel: "attention",
    entryPoint: "backward_dkdv",
    constants: { D, BK: tile, BQ: tile },
    bindings: [...plan.inputs(tile, tile), ...saved, dk.binding, dv.binding],
    workgroups: grid(gpu, B * nKvHeads * Math.ceil(plan.Tk / tile)),
    // Reads q, k, v, dOut, lse, delta; writes dk, dv. Four products: q·kᵀ and dOut·vᵀ (recomputed), pᵀ·dOut, dSᵀ·q.
    bytes: 2 * plan.bytes.q + 4 * plan.bytes.k + 2 * plan.bytes.lse,
    flops: _flops(plan, 4),
  });
  const BQ = _queryRows(tile, T);
  gpu.dispatch({
    kernel: "attention",
    entryPoint: "backward_dq",
    constants: { D, BQ, BK: tile },
    bindings: [...plan.inputs(BQ, tile), ...saved, dq.binding],
    workgroups: grid(gpu, B * nHeads * Math.ceil(T / BQ)),
    // Reads q, k, v, dOut, lse, delta; writes dq. Three products: q·kᵀ and dOut·vᵀ (recomputed again), dS·k.
    bytes: 3 * plan.bytes.q + 2 * plan.bytes.k + 2 * plan.bytes.lse,
    flops: _flops(plan, 3),
  });
  gpu.free(delta);
  return { dq, dk, dv };
}
