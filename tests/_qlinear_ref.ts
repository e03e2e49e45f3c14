// float64 references for the dense matmul and the QLoRA linear layer (forward, backward), used by their tests.
import type { Gpu, QuantizedTensor, Rng } from "../mod.ts";
import { dropoutScale, type MatmulDropout, uploadQuantized } from "../lib/kernels/mod.ts";
import {
  dequantize4bitRef,
  DOUBLE_QUANT_BLOCKSIZE,
  DYNAMIC_CODE_SIGNED,
  type HostQuantized,
  NF4_CODE,
} from "../lib/quant/mod.ts";
import { assertClose } from "./_assert.ts";

/** float64 `alpha · op(a) · op(b) (+ c)`, with the same dropout placement as `matmul`. */
export function refMatmul(
  a: ArrayLike<number>,
  b: ArrayLike<number>,
  M: number,
  N: number,
  K: number,
  o: { transA?: boolean; transB?: boolean; alpha?: number; c?: ArrayLike<number>; dropout?: MatmulDropout },
): Float64Array {
  const out = new Float64Array(M * N);
  const d = (on: string, i: number) =>
    o.dropout && o.dropout.on === on && o.dropout.p > 0 ? dropoutScale(o.dropout.seed, i, o.dropout.p) : 1;
  for (let m = 0; m < M; m++) {
    for (let n = 0; n < N; n++) {
      let s = 0;
      for (let k = 0; k < K; k++) {
        const ia = o.transA ? k * M + m : m * K + k;
        const ib = o.transB ? n * K + k : k * N + n;
        s += a[ia] * d("a", ia) * b[ib] * d("b", ib);
      }
      const i = m * N + n;
      out[i] = (o.alpha ?? 1) * s * d("out", i) + (o.c ? o.c[i] : 0);
    }
  }
  return out;
}

/** A quantized weight on the GPU built from random layout bytes, and its float64 dequantization. */
export interface RandomQuantized {
  w: QuantizedTensor;
  deq: Float64Array;
}

/**
 * Random 4-bit codes and (double-quantized) scales in bitsandbytes' layout with NF4's code table, uploaded with
 * `uploadQuantized`; `deq` is `dequantize4bitRef` of the same bytes. Random codes exercise every nibble, block
 * straddling and absmax code without going through a quantizer.
 */
export function randomQuantized(
  gpu: Gpu,
  rng: Rng,
  N: number,
  K: number,
  opts: { blocksize?: number; doubleQuant?: boolean; label?: string } = {},
): RandomQuantized {
  const { blocksize = 64, doubleQuant = true, label = "w" } = opts;
  const n = N * K;
  const nb = Math.ceil(n / blocksize);
  const packed = new Uint8Array(Math.ceil(n / 2)).map(() => rng.int(256));
  if (n % 2) packed[packed.length - 1] = (packed[packed.length - 1] & 0xf0) | 7;
  const base = { quantType: "nf4" as const, shape: [N, K], dtype: "f32" as const, blocksize, quantMap: NF4_CODE };
  const host: HostQuantized = {
    packed,
    state: doubleQuant
      ? {
        ...base,
        absmax: new Uint8Array(nb).map(() => rng.int(256)),
        nested: {
          absmax: rng.uniformArray(Math.ceil(nb / DOUBLE_QUANT_BLOCKSIZE), 0.02, 0.1),
          quantMap: DYNAMIC_CODE_SIGNED,
          blocksize: DOUBLE_QUANT_BLOCKSIZE,
          offset: Math.fround(0.05),
        },
      }
      : { ...base, absmax: rng.uniformArray(nb, 0.01, 0.1) },
  };
  return { w: uploadQuantized(gpu, host, label), deq: Float64Array.from(dequantize4bitRef(host)) };
}

/** Host inputs of a QLoRA linear layer and its float64 forward/backward. */
export interface LayerRef {
  M: number;
  N: number;
  K: number;
  r: number;
  scale: number;
  p: number;
  seed: number;
  bias?: Float64Array;
}

function _mask(L: LayerRef, M: number, K: number): Float64Array {
  const m = new Float64Array(M * K).fill(1);
  if (L.p > 0) { for (let i = 0; i < m.length; i++) m[i] = dropoutScale(L.seed, i, L.p); }
  return m;
}

/** float64 forward: returns y [M,N] and xa [M,r]. */
export function refForward(
  L: LayerRef,
  x: ArrayLike<number>,
  wd: ArrayLike<number>,
  a: ArrayLike<number>,
  b: ArrayLike<number>,
): { y: Float64Array; xa: Float64Array } {
  const { M, N, K, r } = L;
  const mask = _mask(L, M, K);
  const xd = Float64Array.from({ length: M * K }, (_, i) => x[i] * mask[i]);
  const xa = refMatmul(xd, a, M, r, K, { transB: true });
  const y = refMatmul(x, wd, M, N, K, { transB: true });
  const up = refMatmul(xa, b, M, N, r, { transB: true, alpha: L.scale });
  for (let i = 0; i < y.length; i++) y[i] += up[i] + (L.bias ? L.bias[i % N] : 0);
  return { y, xa };
}

/** float64 backward given dy: dx [M,K], dA [r,K], dB [N,r]. */
export function refBackward(
  L: LayerRef,
  dy: ArrayLike<number>,
  x: ArrayLike<number>,
  wd: ArrayLike<number>,
  a: ArrayLike<number>,
  b: ArrayLike<number>,
): { dx: Float64Array; dA: Float64Array; dB: Float64Array } {
  const { M, N, K, r, scale } = L;
  const mask = _mask(L, M, K);
  const xd = Float64Array.from({ length: M * K }, (_, i) => x[i] * mask[i]);
  const xa = refMatmul(xd, a, M, r, K, { transB: true });
  const dyb = refMatmul(dy, b, M, r, N, {});
  const dB = refMatmul(dy, xa, N, r, M, { transA: true, alpha: scale });
  const dA = refMatmul(dyb, xd, r, K, M, { transA: true, alpha: scale });
  const dx = refMatmul(dy, wd, M, K, N, {});
  const lora = refMatmul(dyb, a, M, K, r, { alpha: scale });
  for (let i = 0; i < dx.length; i++) dx[i] += lora[i] * mask[i];
  return { dx, dA, dB };
}

/** Largest absolute value. */
export function maxAbs(v: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < v.length; i++) m = Math.max(m, Math.abs(v[i]));
  return m;
}

// f32 kernels against float64 references: sums of K terms round with error ~ sqrt(K)·2^-24 relative to the
// largest term, so we allow 2e-5 of the largest output magnitude (plus 1e-4 relative).
export function close(actual: Float32Array, want: Float64Array, label: string): void {
  assertClose(actual, want, { rtol: 1e-4, atol: 2e-5 * Math.max(maxAbs(want), 1e-3) }, label);
}
