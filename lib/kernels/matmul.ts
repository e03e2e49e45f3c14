/**
 * Dense f32 matrix multiply on the GPU (`wgsl/matmul_f32.wgsl`): `C = alpha · op(A) · op(B) (+ C)`, with
 * transposes and an optional dropout mask. The GEMM speed reference, and the LoRA products of the QLoRA layer.
 *
 * @module
 */

import { Tensor } from "../gpu/tensor.ts";
import { checkBindingSize } from "./_checks.ts";
import { dropoutThreshold } from "./dropout.ts";

/** Where {@linkcode matmul} applies a dropout mask (see `lib/kernels/dropout.ts`). */
export interface MatmulDropout {
  /** Drop probability in [0, 1). */
  p: number;
  /** Mask seed. */
  seed: number;
  /** The stored matrix whose row-major element index keys the mask: operand `a`, operand `b`, or the product. */
  on: "a" | "b" | "out";
}

/** Options of {@linkcode matmul}. */
export interface MatmulOptions {
  /** `a` is stored `[K, M]` (default: `[M, K]`). */
  transA?: boolean;
  /** `b` is stored `[N, K]` (default: `[K, N]`). */
  transB?: boolean;
  /** Scales the product (default 1). */
  alpha?: number;
  /** Add into `out` instead of overwriting it (needs `out`). */
  accumulate?: boolean;
  /** Destination `[M, N]` f32 (default: a new activations tensor). */
  out?: Tensor;
  /** Dropout applied to an operand or to the scaled product before accumulation. */
  dropout?: MatmulDropout;
  /** Label of a new `out` tensor (default `"matmul out"`). */
  label?: string;
}

const _DROP_MODE = { a: 1, b: 2, out: 3 } as const;

// Two tile sizes only: every variant is a pipeline to compile (slow on GL drivers, which compile on first use).
function _tile(n: number): number {
  return n <= 16 ? 16 : 64;
}

function _shape2(t: Tensor, name: string): [number, number] {
  if (t.shape.length !== 2 || t.dtype !== "f32") {
    throw new Error(`matmul: ${name} "${t.label}" must be a 2-D f32 tensor, got [${t.shape}] ${t.dtype}`);
  }
  return [t.shape[0], t.shape[1]];
}

/**
 * Multiplies two f32 matrices: `out = alpha · op(a) · op(b)`, or `out += …` when accumulating. Recorded on
 * `a.gpu` (submitted at the next flush/read).
 *
 * @param a `[M, K]` (or `[K, M]` with `transA`).
 * @param b `[K, N]` (or `[N, K]` with `transB`).
 * @param options Transposes, scale, accumulation, destination, dropout.
 * @returns `out` (`[M, N]` f32).
 * @throws {Error} On shape or dtype mismatches, naming the tensors and shapes.
 *
 * @example A · Bᵀ
 * ```ts
 * import { matmul, requestGpu, Tensor } from "@qlora/webgpu";
 * import assert from "node:assert/strict";
 * const gpu = await requestGpu();
 * const a = Tensor.fromArray(gpu, new Float32Array([1, 2, 3, 4]), [2, 2]);
 * const b = Tensor.fromArray(gpu, new Float32Array([1, 0, 0, 1, 1, 1]), [3, 2]);
 * const c = matmul(a, b, { transB: true });
 * assert.deepEqual([...await c.toFloat32()], [1, 2, 3, 3, 4, 7]);
 * ```
 */
export function matmul(a: Tensor, b: Tensor, options: MatmulOptions = {}): Tensor {
  const { transA = false, transB = false, alpha = 1, accumulate = false, dropout } = options;
  const [ar, ac] = _shape2(a, "a");
  const [br, bc] = _shape2(b, "b");
  const [M, K] = transA ? [ac, ar] : [ar, ac];
  const [K2, N] = transB ? [bc, br] : [br, bc];
  if (K !== K2) {
    throw new Error(
      `matmul: inner dimensions differ: a "${a.label}" [${a.shape}]${transA ? "ᵀ" : ""} · b "${b.label}" ` +
        `[${b.shape}]${transB ? "ᵀ" : ""}`,
    );
  }
  if (accumulate && !options.out) throw new Error("matmul: accumulate needs an out tensor");
  const gpu = a.gpu;
  checkBindingSize(gpu, "matmul", [["a", a.byteLength], ["b", b.byteLength], ["out", M * N * 4]]);
  const out = options.out ?? Tensor.empty(gpu, [M, N], { label: options.label ?? "matmul out" });
  const [or, oc] = _shape2(out, "out");
  if (or !== M || oc !== N) {
    throw new Error(`matmul: out "${out.label}" is [${out.shape}], expected [${M},${N}]`);
  }
  const BM = _tile(M);
  const BN = _tile(N);
  const u = new Uint32Array(8);
  const f = new Float32Array(u.buffer);
  u.set([M, N, K, accumulate ? 1 : 0]);
  f[4] = alpha;
  u[5] = dropout?.seed ?? 0;
  u[6] = dropout ? dropoutThreshold(dropout.p) : 0;
  f[7] = dropout ? 1 / (1 - dropout.p) : 1;
  if (M === 0 || N === 0) return out;
  gpu.dispatch({
    kernel: "matmul_f32",
    constants: {
      TRANS_A: transA ? 1 : 0,
      TRANS_B: transB ? 1 : 0,
      DROP: dropout && dropout.p > 0 ? _DROP_MODE[dropout.on] : 0,
      BM,
      BN,
    },
    bindings: [a.buffer, b.buffer, out.buffer, u],
    workgroups: [Math.ceil(N / BN), Math.ceil(M / BM)],
  });
  return out;
}
