/**
 * Rotary position embeddings (RoPE) as in Hugging Face Llama, host side: inverse frequencies with `linear` and
 * `llama3` scaling, and the cos/sin table that `ropeApply` (`lib/kernels/rope.ts`) rotates by.
 *
 * @module
 */

import type { Gpu } from "../gpu/device.ts";
import { Tensor } from "../gpu/tensor.ts";
import type { RopeScaling } from "./config.ts";

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
 * import { ropeInvFreq } from "@qlora/webgpu/model";
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
 * import { requestGpu } from "@qlora/webgpu";
 * import { ropeTable } from "@qlora/webgpu/model";
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
