/**
 * Dense f32 matrix multiply on the GPU (`wgsl/matmul_f32.wgsl`): `C = alpha · op(A) · op(B) (+ C)`, with
 * transposes and an optional dropout mask. The GEMM speed reference, and the LoRA products of the QLoRA layer.
 * Operands over one storage binding are split into row ranges: rows of M (`a` and `out`), or for `aᵀ·b` rows of
 * the reduction dimension (summed into `out` range by range).
 *
 * @module
 */

import { DTYPE_BYTES } from "../dtype.ts";
import { Tensor } from "../gpu/tensor.ts";
import { dropoutThreshold } from "./dropout.ts";
import {
  checkBindingSize,
  f32Bits,
  matrixTile,
  params,
  productFlops,
  rowBinding,
  rowRanges,
  storedFormat,
} from "./_kernel.ts";

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

function _shape2(t: Tensor, name: string, anyFloat = false): [number, number] {
  if (t.shape.length !== 2 || (t.dtype !== "f32" && !anyFloat)) {
    throw new Error(`matmul: ${name} "${t.label}" is [${t.shape}] ${t.dtype}, expected a 2-D f32 matrix`);
  }
  return [t.shape[0], t.shape[1]];
}

/**
 * Multiplies two f32 matrices: `out = alpha · op(a) · op(b)`, or `out += …` when accumulating. Recorded on
 * `a.gpu` (submitted at the next flush/read).
 *
 * @param a `[M, K]` (or `[K, M]` with `transA`).
 * @param b `[K, N]` (or `[N, K]` with `transB`); f32, or a frozen weight as its checkpoint stores it (bf16, f16:
 *   read as f32, exactly; bound whole, so `a` is not transposed).
 * @param options Transposes, scale, accumulation, destination, dropout.
 * @returns `out` (`[M, N]` f32).
 * @throws {Error} On shape or dtype mismatches, naming the tensors and shapes.
 *
 * @example A · Bᵀ
 * ```ts
 * import { requestGpu, Tensor } from "@qlora/webgpu";
 * import { matmul } from "@qlora/webgpu/kernels";
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
  const [br, bc] = _shape2(b, "b", true);
  const bFormat = storedFormat(b, "matmul: b");
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
  // A new out is written in full (the first range does not accumulate), unless there is nothing to sum over.
  const out = options.out ?? Tensor.empty(gpu, [M, N], { label: options.label ?? "matmul out", zero: K === 0 });
  const [or, oc] = _shape2(out, "out");
  if (or !== M || oc !== N) {
    throw new Error(`matmul: out "${out.label}" is [${out.shape}], expected [${M},${N}]`);
  }
  if (M === 0 || N === 0) return out;
  const split = _split(a, b, out, transA, transB);
  if (bFormat !== 0 && split === "k") {
    throw new Error(`matmul: b "${b.label}" is ${b.dtype}: a 16-bit b is bound whole, so aᵀ·b must fit one binding`);
  }
  const ranges = split === "m"
    ? rowRanges(gpu, M, [K * 4, N * 4], "matmul")
    : rowRanges(gpu, K, [M * 4, N * 4], "matmul");
  const constants = {
    TRANS_A: transA ? 1 : 0,
    TRANS_B: transB ? 1 : 0,
    DROP: dropout && dropout.p > 0 ? _DROP_MODE[dropout.on] : 0,
    B_FMT: bFormat,
  };
  for (const [r0, r1] of ranges) {
    const rows = r1 - r0;
    // Rows of M: slices of a and out. Rows of K (a reduction): slices of a and b, summed into out.
    const [m, k] = split === "m" ? [rows, K] : [M, rows];
    // The mask is keyed by the element's index in the whole tensor: offset it by the rows bound before this range.
    // On the product with a reduction split, every range drops the same elements of out (dropout is linear).
    const dropRows = { a: a.shape[1], b: split === "k" ? N : 0, out: split === "m" ? N : 0 };
    const adds = accumulate || (split === "k" && r0 > 0);
    const u = params([
      m,
      N,
      k,
      adds ? 1 : 0,
      f32Bits(alpha),
      dropout?.seed ?? 0,
      dropout ? dropoutThreshold(dropout.p) : 0,
      f32Bits(dropout ? 1 / (1 - dropout.p) : 1),
      dropout ? r0 * dropRows[dropout.on] : 0,
    ]);
    const BM = matrixTile(m);
    const BN = matrixTile(N);
    gpu.dispatch({
      kernel: "matmul_f32",
      constants: { ...constants, BM, BN },
      bindings: split === "m"
        ? [rowBinding(a, K * 4, [r0, r1]), b.binding, rowBinding(out, N * 4, [r0, r1]), u]
        : [rowBinding(a, M * 4, [r0, r1]), rowBinding(b, N * 4, [r0, r1]), out.binding, u],
      workgroups: [Math.ceil(N / BN), Math.ceil(m / BM)],
      // The range's a and b, and out (read too when added into); see _kernel.ts for the conventions.
      bytes: 4 * m * k + DTYPE_BYTES[b.dtype] * k * N + (adds ? 8 : 4) * m * N,
      flops: productFlops(m, N, k),
    });
  }
  return out;
}

// Which rows to split when an operand is over the binding limit: rows of M (a [M, K] and out) when a is not
// transposed, else rows of K (a [K, M] and b [K, N]: a reduction, accumulated range by range). Operands bound
// whole must fit.
function _split(a: Tensor, b: Tensor, out: Tensor, transA: boolean, transB: boolean): "m" | "k" {
  const over = [a, b, out].some((t) => t.byteLength > a.gpu.maxBindingBytes);
  if (!over || !transA) {
    if (over) checkBindingSize(a.gpu, "matmul (rows of a and out are split)", [["b", b.byteLength]]);
    return "m";
  }
  if (transB) {
    checkBindingSize(a.gpu, "matmul (aᵀ·bᵀ is not split)", [["a", a.byteLength], ["b", b.byteLength]]);
  }
  checkBindingSize(a.gpu, "matmul (rows of aᵀ and b are split)", [["out", out.byteLength]]);
  return "k";
}
