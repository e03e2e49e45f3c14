/**
 * One Llama decoder layer on the GPU: forward (optionally keeping what the backward needs) and backward.
 *
 * ```
 * x ─RMSNorm→ xn1 ─q,k,v→ [per-head RMSNorm(q,k)] → RoPE(q,k) → causal GQA attention → att ─o→ + x = h
 * h ─RMSNorm→ xn2 ─gate,up→ SiLU(gate)·up = act ─down→ + h = out
 * ```
 * The bracketed q/k norms are Qwen3's (`q_norm`, `k_norm`: one `[headDim]` weight applied to every head).
 * Every intermediate is freed as soon as nothing later in the pass reads it; with `keep`, the tensors the
 * backward reads are returned instead. The layer input itself belongs to the caller (the checkpoint). The seven
 * projections are {@linkcode Projection}s (`QLoRALinear`, or LLM-QAT's `QatLinear`): what each one's backward needs is the context its forward returns, kept
 * with the rest, or rebuilt by the recompute without the frozen product where the output is not needed.
 *
 * @module
 */

import type { Gpu } from "../gpu/device.ts";
import { Tensor } from "../gpu/tensor.ts";
import type { LoraLayer, QLoRASaved } from "../qlinear/layer.ts";
import { attentionBackward, attentionForward, type AttentionShape } from "../kernels/attention.ts";
import { rmsNormBackward, type RmsNormForward, rmsNormForward } from "../kernels/rms_norm.ts";
import { ropeApply } from "../kernels/rope.ts";
import { swigluBackward, swigluForward } from "../kernels/swiglu.ts";
import { deriveSeed } from "../random.ts";

/** Shapes and shared tensors of one pass over a batch. */
export interface LayerContext {
  /** Sequences. */
  B: number;
  /** Tokens per sequence. */
  T: number;
  /** u32 `[B]` real lengths (right padding), or null when every sequence is full. */
  seqLens: Tensor | null;
  /** RoPE cos/sin table covering positions `0..T-1`. */
  rope: Tensor;
  /** Dropout seed of this pass (the same in the recompute), or null for inference (no dropout). */
  seed: number | null;
}

/** Shapes and tensors of a KV-cached inference step (prefill: `Tq` prompt rows; decode: 1 row). */
export interface CachedContext {
  /** Sequences. */
  B: number;
  /** Query rows per sequence in this step. */
  Tq: number;
  /** Cache rows per sequence. */
  capacity: number;
  /** RoPE table covering `capacity` positions. */
  rope: Tensor;
  /** u32 `[B]`: position of each sequence's first row in this step. */
  offsets: Tensor;
  /** u32 `[B]`: valid cache rows of each sequence after this step. */
  seqLens: Tensor;
  /** Host copy of `offsets`: where this step's k/v rows go in the cache. */
  writeAt: readonly number[];
}

/** What the backward of a layer reads: the forward's intermediates (each `[B·T, ·]` f32). */
export interface LayerActivations {
  xn1: Tensor;
  rstd1: Tensor;
  /** q and k after their norms and RoPE: the attention's inputs. */
  q: Tensor;
  k: Tensor;
  v: Tensor;
  /** With q/k norms: q_proj's and k_proj's outputs (the norms' inputs) and the norms' per-row rstd; else null. */
  qIn: Tensor | null;
  qRstd: Tensor | null;
  kIn: Tensor | null;
  kRstd: Tensor | null;
  /** What each projection's backward needs, in {@linkcode LORA_TARGETS} order. */
  proj: QLoRASaved[];
  att: Tensor;
  lse: Tensor;
  h: Tensor;
  xn2: Tensor;
  rstd2: Tensor;
  gate: Tensor;
  up: Tensor;
  act: Tensor;
}

/** What a decoder layer needs of a projection: `QLoRALinear` and `QatLinear` both are one. */
export interface Projection {
  /** Module path. */
  readonly path: string;
  /**
   * `y` `[M, N]` of `x` `[M, K]`; with `save` the context of the backward; with `keepCheckpoint` what a recompute
   * can reuse (`QLoRALinear`: the adapter input XA; null when nothing is worth keeping), which a later forward or
   * recompute of the same input and seed takes back as `checkpoint`; with `addTo`, `y` is added into that tensor
   * (and is it): a residual in the same dispatch.
   */
  forward(
    x: Tensor,
    options?: {
      seed?: number | null;
      save?: boolean;
      keepCheckpoint?: boolean;
      checkpoint?: Tensor | null;
      addTo?: Tensor;
    },
  ): { y: Tensor; saved: QLoRASaved | null; checkpoint?: Tensor | null };
  /** The context of a saving forward, without forming `y` (from the forward's checkpoint when given). */
  recompute(x: Tensor, seed: number | null, checkpoint?: Tensor | null): QLoRASaved;
  /**
   * Accumulates the parameter gradients and returns `dX` when asked (added into `addTo`, which it returns, when
   * given: the gradient of an input several projections read); consumes the context.
   */
  backward(dy: Tensor, saved: QLoRASaved, needDx?: boolean, addTo?: Tensor): Tensor | null;
  /** Whether it has a LoRA adapter. */
  hasAdapter(): this is LoraLayer;
  /** Zeroes its gradients. */
  zeroGrad(): void;
  /** Frees its tensors. */
  destroy(): void;
}

/**
 * What a checkpointed forward keeps besides the layer input, so that the recompute does not form it again: each
 * projection's checkpoint (a `QLoRALinear`'s adapter input `XA` `[B·T, r]`), in {@linkcode LORA_TARGETS} order.
 * The recompute takes ownership of them.
 */
export interface LayerCheckpoint {
  /** One per projection; null where it keeps nothing. */
  proj: (Tensor | null)[];
}

/** The seven projections, in {@linkcode LORA_TARGETS} order. */
export type LayerProjections = [
  q: Projection,
  k: Projection,
  v: Projection,
  o: Projection,
  gate: Projection,
  up: Projection,
  down: Projection,
];

const _free = (...ts: (Tensor | null | undefined)[]) => ts.forEach((t) => t?.destroy());

/** A decoder layer's frozen weights and adapters, with forward and backward over a batch. */
export class DecoderLayer {
  /** Layer index. */
  readonly index: number;
  /** `input_layernorm.weight` `[H]`. */
  readonly inputNorm: Tensor;
  /** `post_attention_layernorm.weight` `[H]`. */
  readonly postNorm: Tensor;
  /** `self_attn.q_norm.weight` `[headDim]` (Qwen3), or null. */
  readonly qNorm: Tensor | null;
  /** `self_attn.k_norm.weight` `[headDim]` (Qwen3), or null. */
  readonly kNorm: Tensor | null;
  /** q, k, v, o, gate, up, down. */
  readonly proj: LayerProjections;
  /**
   * Fake quantization of `k_proj`'s and `v_proj`'s outputs (`[rows, KVH·D]`, in place), or null: LLM-QAT's KV
   * cache quantizer, in the training forward and in the cached one alike (its gradient is straight-through).
   */
  kvQuant: ((kv: Tensor) => void) | null = null;
  readonly #gpu: Gpu;
  readonly #eps: number;
  readonly #heads: number;
  readonly #kvHeads: number;
  readonly #headDim: number;

  /**
   * @param gpu The device.
   * @param index Layer index.
   * @param weights Norm weights (q/k norms both or neither) and projections.
   * @param shape Heads, KV heads, RMSNorm eps.
   */
  constructor(
    gpu: Gpu,
    index: number,
    weights: {
      inputNorm: Tensor;
      postNorm: Tensor;
      qNorm?: Tensor | null;
      kNorm?: Tensor | null;
      proj: LayerProjections;
    },
    shape: { heads: number; kvHeads: number; headDim: number; eps: number },
  ) {
    this.#gpu = gpu;
    this.index = index;
    this.inputNorm = weights.inputNorm;
    this.postNorm = weights.postNorm;
    this.qNorm = weights.qNorm ?? null;
    this.kNorm = weights.kNorm ?? null;
    if (!this.qNorm !== !this.kNorm) throw new Error(`Decoder layer ${index}: q_norm and k_norm come together`);
    this.proj = weights.proj;
    this.#eps = shape.eps;
    this.#heads = shape.heads;
    this.#kvHeads = shape.kvHeads;
    this.#headDim = shape.headDim;
  }

  /** Dropout seed of projection `p` in a pass seeded `seed`. */
  #seed(seed: number | null, p: number): number | null {
    return seed === null ? null : deriveSeed(seed, this.index, p);
  }

  /**
   * Forward of the layer.
   *
   * @param x Input `[B·T, H]` (not modified, not freed).
   * @param ctx Batch shapes, lengths, RoPE table, seed.
   * @param keep `true`: return the activations the backward needs; `"checkpoint"`: only the small
   *   {@linkcode LayerCheckpoint} a later {@linkcode DecoderLayer.recompute} reuses; `false`: nothing. What is not
   *   returned is freed as soon as possible.
   * @returns The output `[B·T, H]`, the kept activations (or null) and the checkpoint (or null).
   */
  forward(
    x: Tensor,
    ctx: LayerContext,
    keep: boolean | "checkpoint",
  ): { out: Tensor; saved: LayerActivations | null; checkpoint: LayerCheckpoint | null } {
    const { out, saved, checkpoint } = this.#run(x, ctx, keep === true, true, keep === "checkpoint", null);
    return { out: out!, saved, checkpoint };
  }

  /**
   * The checkpointed layer's forward again, for its backward: the kept activations only. The layer's output is
   * not formed, which also skips down_proj's frozen product (only its adapter's `xa` is needed); with the
   * forward's checkpoint, no adapter input is formed again.
   *
   * @param x The layer input kept by the checkpoint.
   * @param ctx The forward's context (same dropout seed, so the same masks).
   * @param checkpoint What the `"checkpoint"` forward kept (consumed), or null.
   * @returns The activations for {@linkcode DecoderLayer.backward}.
   */
  recompute(x: Tensor, ctx: LayerContext, checkpoint: LayerCheckpoint | null = null): LayerActivations {
    return this.#run(x, ctx, true, false, false, checkpoint).saved!;
  }

  #run(
    x: Tensor,
    ctx: LayerContext,
    keep: boolean,
    needOut: boolean,
    keepCheckpoint: boolean,
    cp: LayerCheckpoint | null,
  ) {
    const gpu = this.#gpu;
    const [pq, pk, pv, po, pg, pu, pd] = this.proj;
    const fwd = (p: Projection, input: Tensor, i: number, addTo?: Tensor) =>
      p.forward(input, {
        seed: this.#seed(ctx.seed, i),
        save: keep,
        keepCheckpoint,
        checkpoint: cp?.proj[i],
        addTo,
      });
    const { y: xn1, rstd: rstd1 } = rmsNormForward(gpu, x, this.inputNorm, this.#eps);
    const q = fwd(pq, xn1, 0);
    const k = fwd(pk, xn1, 1);
    const v = fwd(pv, xn1, 2);
    if (this.kvQuant) [k.y, v.y].forEach(this.kvQuant);
    if (!keep) _free(xn1, rstd1);
    const qn = this.#headNorm(q.y, this.qNorm);
    const kn = this.#headNorm(k.y, this.kNorm);
    // The norms' inputs are kept only for their backward.
    if (!keep && qn) _free(q.y, k.y, qn.rstd, kn?.rstd);
    const [qr, kr] = [qn?.y ?? q.y, kn?.y ?? k.y];
    ropeApply(gpu, qr, kr, ctx.rope, { T: ctx.T, nHeads: this.#heads, nKvHeads: this.#kvHeads });
    const { out: att, lse } = attentionForward(gpu, qr, kr, v.y, this.#attnShape(ctx));
    if (!keep) _free(qr, kr, v.y, lse);
    // The residuals: o and down add into a copy of their skip input (no separate add).
    const h = this.#copy(x, "h");
    const o = fwd(po, att, 3, h);
    if (!keep) _free(att);
    const { y: xn2, rstd: rstd2 } = rmsNormForward(gpu, h, this.postNorm, this.#eps);
    const g = fwd(pg, xn2, 4);
    const u = fwd(pu, xn2, 5);
    if (!keep) _free(xn2, rstd2);
    const act = swigluForward(gpu, g.y, u.y);
    if (!keep) _free(g.y, u.y);
    let d: { y: Tensor | null; saved: QLoRASaved | null; checkpoint?: Tensor | null };
    if (needOut) d = fwd(pd, act, 6, this.#copy(h, "layer out"));
    else d = { y: null, saved: pd.recompute(act, this.#seed(ctx.seed, 6), cp?.proj[6]) };
    const out = d.y;
    if (!keep) {
      _free(act, h);
      const proj = [q, k, v, o, g, u, d].map((r) => r.checkpoint ?? null);
      return { out, saved: null, checkpoint: keepCheckpoint ? { proj } : null };
    }
    const saved: LayerActivations = {
      xn1,
      rstd1,
      q: qr,
      k: kr,
      v: v.y,
      qIn: qn && q.y,
      qRstd: qn?.rstd ?? null,
      kIn: kn && k.y,
      kRstd: kn?.rstd ?? null,
      proj: [q, k, v, o, g, u, d].map((r) => r.saved!),
      att,
      lse,
      h,
      xn2,
      rstd2,
      gate: g.y,
      up: u.y,
      act,
    };
    return { out, saved, checkpoint: null };
  }

  /**
   * Backward of the layer: accumulates the LoRA gradients and returns `dx`. Consumes `dOut` and `saved`
   * (both freed).
   *
   * @param dOut Gradient of the output `[B·T, H]`.
   * @param x The forward's input.
   * @param saved The forward's activations (`keep`).
   * @param ctx The forward's context.
   * @param needDx Whether to form the input gradient (false for the first layer: embeddings are frozen).
   * @returns `dx` `[B·T, H]`, or null.
   */
  backward(dOut: Tensor, x: Tensor, saved: LayerActivations, ctx: LayerContext, needDx: boolean): Tensor | null {
    const gpu = this.#gpu;
    const s = saved;
    const [pq, pk, pv, po, pg, pu, pd] = this.proj;
    // Each projection's backward consumes its saved context (its xa); the inputs are freed here.
    const dAct = pd.backward(dOut, s.proj[6])!;
    _free(s.act);
    const { dGate, dUp } = swigluBackward(gpu, dAct, s.gate, s.up);
    _free(dAct, s.gate, s.up);
    // Inputs read by several projections: their dX terms add into the first's.
    const dXn2 = pu.backward(dUp, s.proj[5])!;
    pg.backward(dGate, s.proj[4], true, dXn2);
    _free(dGate, dUp, s.xn2);
    // dH: the norm's gradient added to the residual's, dOut, in place.
    const dH = rmsNormBackward(gpu, dXn2, s.h, this.postNorm, s.rstd2, dOut, { accumulate: true });
    _free(dXn2, s.h, s.rstd2);

    const dAtt = po.backward(dH, s.proj[3])!;
    const fwd = { out: s.att, lse: s.lse };
    const { dq, dk, dv } = attentionBackward(gpu, s.q, s.k, s.v, fwd, dAtt, this.#attnShape(ctx));
    _free(dAtt, s.att, s.lse, s.q, s.k, s.v);
    ropeApply(gpu, dq, dk, ctx.rope, { T: ctx.T, nHeads: this.#heads, nKvHeads: this.#kvHeads, inverse: true });
    const dqIn = this.#headNormBackward(dq, s.qIn, this.qNorm, s.qRstd);
    const dkIn = this.#headNormBackward(dk, s.kIn, this.kNorm, s.kRstd);

    const dXn1 = pq.backward(dqIn, s.proj[0], needDx);
    pk.backward(dkIn, s.proj[1], needDx, dXn1 ?? undefined);
    pv.backward(dv, s.proj[2], needDx, dXn1 ?? undefined);
    _free(dqIn, dkIn, dv);
    let dx: Tensor | null = null;
    if (dXn1) {
      dx = rmsNormBackward(gpu, dXn1, x, this.inputNorm, s.rstd1, dH, { accumulate: true });
    } else dH.destroy();
    _free(dXn1, s.xn1, s.rstd1);
    return dx;
  }

  /**
   * Inference forward with a KV cache: writes this step's k/v rows into `kCache`/`vCache` (`[B, capacity, KVH·D]`)
   * and attends over the cache. No dropout, nothing kept.
   *
   * @param x Input `[B·Tq, H]` (not freed).
   * @param kCache This layer's key cache.
   * @param vCache This layer's value cache.
   * @param ctx Step shapes and positions.
   * @returns The output `[B·Tq, H]`.
   */
  forwardCached(x: Tensor, kCache: Tensor, vCache: Tensor, ctx: CachedContext): Tensor {
    const gpu = this.#gpu;
    const [pq, pk, pv, po, pg, pu, pd] = this.proj;
    const { y: xn1, rstd: rstd1 } = rmsNormForward(gpu, x, this.inputNorm, this.#eps);
    const [q0, k0, v] = [pq, pk, pv].map((p) => p.forward(xn1).y);
    if (this.kvQuant) [k0, v].forEach(this.kvQuant);
    _free(xn1, rstd1);
    const [qn, kn] = [this.#headNorm(q0, this.qNorm), this.#headNorm(k0, this.kNorm)];
    if (qn) _free(q0, k0, qn.rstd, kn?.rstd);
    const [q, k] = [qn?.y ?? q0, kn?.y ?? k0];
    const heads = { nHeads: this.#heads, nKvHeads: this.#kvHeads };
    ropeApply(gpu, q, k, ctx.rope, { T: ctx.Tq, ...heads, offsets: ctx.offsets });
    const rowBytes = this.#kvHeads * this.#headDim * 4;
    for (let b = 0; b < ctx.B; b++) {
      const [src, dst] = [b * ctx.Tq * rowBytes, (b * ctx.capacity + ctx.writeAt[b]) * rowBytes];
      gpu.copy(k.buffer, k.byteOffset + src, kCache.buffer, kCache.byteOffset + dst, ctx.Tq * rowBytes);
      gpu.copy(v.buffer, v.byteOffset + src, vCache.buffer, vCache.byteOffset + dst, ctx.Tq * rowBytes);
    }
    _free(k, v);
    const shape: AttentionShape = {
      B: ctx.B,
      T: ctx.Tq,
      Tk: ctx.capacity,
      nHeads: this.#heads,
      nKvHeads: this.#kvHeads,
      headDim: this.#headDim,
      seqLens: ctx.seqLens,
      qOffsets: ctx.offsets,
    };
    const { out: att, lse } = attentionForward(gpu, q, kCache, vCache, shape);
    _free(q, lse);
    const h = po.forward(att, { addTo: this.#copy(x, "h") }).y;
    att.destroy();
    const { y: xn2, rstd: rstd2 } = rmsNormForward(gpu, h, this.postNorm, this.#eps);
    const g = pg.forward(xn2).y;
    const u = pu.forward(xn2).y;
    _free(xn2, rstd2);
    const act = swigluForward(gpu, g, u);
    _free(g, u);
    const out = pd.forward(act, { addTo: this.#copy(h, "layer out") }).y;
    _free(act, h);
    return out;
  }

  /** A copy of `t` (a residual for a projection to add into: a buffer copy, not a dispatch). */
  #copy(t: Tensor, label: string): Tensor {
    const c = Tensor.empty(this.#gpu, t.shape, { label, zero: false });
    this.#gpu.copy(t.buffer, t.byteOffset, c.buffer, c.byteOffset, t.byteLength);
    return c;
  }

  /** Qwen3's RMSNorm of each head of q or k (rows of `headDim`), or null without q/k norms. */
  #headNorm(x: Tensor, weight: Tensor | null): RmsNormForward | null {
    return weight && rmsNormForward(this.#gpu, x, weight, this.#eps);
  }

  /** The gradient through {@linkcode DecoderLayer.#headNorm} (consumes `d`, `x`, `rstd`), or `d` without one. */
  #headNormBackward(d: Tensor, x: Tensor | null, weight: Tensor | null, rstd: Tensor | null): Tensor {
    if (!weight) return d;
    const dx = rmsNormBackward(this.#gpu, d, x!, weight, rstd!);
    _free(d, x, rstd);
    return dx;
  }

  #attnShape(ctx: LayerContext): AttentionShape {
    return {
      B: ctx.B,
      T: ctx.T,
      nHeads: this.#heads,
      nKvHeads: this.#kvHeads,
      headDim: this.#headDim,
      seqLens: ctx.seqLens ?? undefined,
    };
  }

  /** Frees the layer's weights and adapters. */
  destroy(): void {
    this.inputNorm.destroy();
    this.postNorm.destroy();
    _free(this.qNorm, this.kNorm);
    for (const p of this.proj) p.destroy();
  }
}
