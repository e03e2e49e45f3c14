/**
 * Rotary position embeddings (RoPE) as in Hugging Face Llama: inverse frequencies with `linear` and `llama3`
 * scaling, a cos/sin table, and the in-place rotation (forward) and its inverse (backward).
 *
 * @module
 */

import type { Gpu } from "../../gpu/device.ts";
import { Tensor } from "../../gpu/tensor.ts";
import type { RopeScaling } from "../config.ts";
import { _elementGrid, _fitsBinding, _matrix, _params } from "./_util.ts";

/** RoPE settings of a model config (the fields of `LlamaConfig` that RoPE reads). */
export interface RopeParams {
  /** Head dimension `D` (even). */
  headDim: number;
  /** `rope_theta`. */
  ropeTheta: number;
  /** `rope_scaling`: `null` for plain RoPE. */
  ropeScaling: RopeScaling | null;
}

const f = Math.fround;

/**
 * The `D/2` inverse frequencies, computed with the float32 operations of transformers'
 * `_compute_default_rope_parameters`, `_compute_linear_scaling_rope_parameters` and `_compute_llama3_parameters`
 * (each step rounded to f32 as torch does). Values agree with PyTorch's to within 2 ulp: only `pow`'s last bit
 * differs between math libraries.
 *
 * @param p Head dimension, theta and scaling.
 * @returns f32 `[D/2]`.
 *
 * @example
 * ```ts
 * import { ropeInvFreq } from "@qlora/webgpu";
 * import assert from "node:assert/strict";
 * const inv = ropeInvFreq({ headDim: 4, ropeTheta: 10000, ropeScaling: null });
 * assert.deepEqual([...inv], [1, Math.fround(0.01)]);
 * ```
 */
export function ropeInvFreq(p: RopeParams): Float32Array {
  const dim = p.headDim;
  if (!(dim > 0 && dim % 2 === 0)) throw new Error(`RoPE: head dimension ${dim} is not a positive even number`);
  const inv = new Float32Array(dim / 2);
  for (let i = 0; i < dim / 2; i++) inv[i] = f(1 / f(Math.pow(f(p.ropeTheta), f((2 * i) / dim))));
  const s = p.ropeScaling;
  if (s?.type === "linear") {
    for (let i = 0; i < inv.length; i++) inv[i] = f(inv[i] / f(s.factor));
  } else if (s?.type === "llama3") {
    const old = s.originalMaxPositionEmbeddings;
    const lowWavelen = f(old / s.lowFreqFactor), highWavelen = f(old / s.highFreqFactor);
    for (let i = 0; i < inv.length; i++) {
      const wavelen = f(f(2 * Math.PI) / inv[i]);
      const scaled = wavelen > lowWavelen ? f(inv[i] / f(s.factor)) : inv[i];
      if (wavelen < highWavelen || wavelen > lowWavelen) {
        inv[i] = scaled;
      } else {
        const smooth = f(f(f(f(old) / wavelen) - f(s.lowFreqFactor)) / f(s.highFreqFactor - s.lowFreqFactor));
        inv[i] = f(f(f(f(1 - smooth) * scaled) / f(s.factor)) + f(smooth * scaled));
      }
    }
  } else if (s) {
    throw new Error(`RoPE: unsupported rope_scaling type "${(s as { type: string }).type}"`);
  }
  return inv;
}

/**
 * The cos/sin table for positions `0 .. maxPositions-1`: angle `pos * invFreq[i]` rounded to f32 (as torch's f32
 * product), then cos and sin in float64 rounded to f32 — no GPU trigonometry, whose accuracy far from zero varies
 * between adapters.
 *
 * @param gpu The device.
 * @param invFreq From {@linkcode ropeInvFreq}.
 * @param maxPositions Positions covered (training: the sequence length; generation: the cache length).
 * @returns f32 `[maxPositions, D/2, 2]` (cos, sin), class `weights`.
 *
 * @example
 * ```ts
 * import { requestGpu, ropeTable } from "@qlora/webgpu";
 * import assert from "node:assert/strict";
 * const gpu = await requestGpu();
 * const t = ropeTable(gpu, new Float32Array([1]), 2);
 * assert.deepEqual([...await t.toFloat32()], [1, 0, Math.fround(Math.cos(1)), Math.fround(Math.sin(1))]);
 * ```
 */
export function ropeTable(gpu: Gpu, invFreq: Float32Array, maxPositions: number): Tensor {
  const half = invFreq.length;
  const data = new Float32Array(maxPositions * half * 2);
  for (let pos = 0; pos < maxPositions; pos++) {
    for (let i = 0; i < half; i++) {
      const a = f(pos * invFreq[i]);
      data[(pos * half + i) * 2] = Math.cos(a);
      data[(pos * half + i) * 2 + 1] = Math.sin(a);
    }
  }
  return Tensor.fromArray(gpu, data, [maxPositions, half, 2], { class: "weights", label: "rope table" });
}

/** Options for {@linkcode ropeApply}. */
export interface RopeApplyOptions {
  /** Tokens per sequence: row `r` of `x` is token `r % T` of sequence `floor(r / T)`. */
  T: number;
  /** Heads per row (`nHeads` for q, `nKvHeads` for k). */
  nHeads: number;
  /** Position of token 0 of every sequence (generation: the cache length so far). Default 0. */
  offset?: number;
  /** Optional u32 `[B]` per-sequence offsets, added to `offset`. */
  offsets?: Tensor;
  /** Rotate by `-θ` (the backward pass: apply to `dq`, `dk`). Default false. */
  inverse?: boolean;
}

/**
 * Rotates `x` `[B*T, nHeads*D]` in place by RoPE (HF `rotate_half` convention): with `inverse`, this is the
 * backward pass of the rotation (its transpose).
 *
 * @param gpu The device.
 * @param x f32 `[B*T, nHeads*D]` (q or k rows, heads contiguous), rotated in place.
 * @param table From {@linkcode ropeTable}, `[maxPositions, D/2, 2]`.
 * @param options Layout, position offset(s), direction.
 * @returns `x`.
 * @throws {Error} If a position is past the table (with `offsets`, checked on the GPU: those rows become NaN).
 *
 * @example
 * ```ts
 * import { requestGpu, ropeApply, ropeTable, Tensor } from "@qlora/webgpu";
 * import assert from "node:assert/strict";
 * const gpu = await requestGpu();
 * const table = ropeTable(gpu, new Float32Array([Math.PI / 2]), 4);
 * const q = Tensor.fromArray(gpu, new Float32Array([1, 0]), [1, 2]); // one head, D = 2
 * ropeApply(gpu, q, table, { T: 1, nHeads: 1, offset: 1 }); // rotate by 90°
 * const [a, b] = await q.toFloat32();
 * assert.ok(Math.abs(a) < 1e-6 && Math.abs(b - 1) < 1e-6);
 * ```
 */
export function ropeApply(gpu: Gpu, x: Tensor, table: Tensor, options: RopeApplyOptions): Tensor {
  const { T, nHeads, offset = 0, offsets, inverse = false } = options;
  if (table.shape.length !== 3 || table.shape[2] !== 2 || table.dtype !== "f32") {
    throw new Error(`RoPE table "${table.label}": shape [${table.shape}] ${table.dtype}, want [maxPos, D/2, 2] f32`);
  }
  const [maxPos, half] = table.shape;
  const [rows] = _matrix(x, "RoPE input", nHeads * 2 * half);
  if (rows % T !== 0) throw new Error(`RoPE input "${x.label}": ${rows} rows are not a multiple of T = ${T}`);
  if (offsets && (offsets.dtype !== "u32" || offsets.size !== rows / T)) {
    throw new Error(`RoPE offsets "${offsets.label}": [${offsets.shape}] ${offsets.dtype}, want [${rows / T}] u32`);
  }
  if (!offsets && offset + T > maxPos) {
    throw new Error(`RoPE: positions up to ${offset + T - 1} are past the table "${table.label}" of ${maxPos}`);
  }
  _fitsBinding(gpu, x, "RoPE input");
  const n = rows * nHeads * half;
  gpu.dispatch({
    kernel: "rope_apply",
    bindings: [
      x.buffer,
      table.buffer,
      (offsets ?? table).buffer,
      _params([rows, T, nHeads, half, offset, offsets ? 1 : 0, maxPos, inverse ? 1 : 0]),
    ],
    workgroups: _elementGrid(gpu, n),
  });
  return x;
}
