/**
 * SwiGLU, the gate of Llama's MLP: `h = silu(gate) * up`, forward and backward on the GPU (`wgsl/swiglu.wgsl`).
 * Tensors past one storage binding are processed in element ranges.
 *
 * @module
 */

import type { Gpu } from "../gpu/device.ts";
import type { Tensor } from "../gpu/tensor.ts";
import { distinct, elementGrid, expectSize, output, params, rowBinding, rowRanges } from "./_kernel.ts";

/** Gradients from {@linkcode swigluBackward}. */
export interface SwigluGrads {
  /** Gradient with respect to `gate`, shaped like it. */
  dGate: Tensor;
  /** Gradient with respect to `up`, shaped like it. */
  dUp: Tensor;
}

/**
 * `h = silu(gate) * up` elementwise, with `silu(g) = g * sigmoid(g)`.
 *
 * @param gpu The device.
 * @param gate f32 tensor (e.g. `[rows, intermediate]`).
 * @param up f32 tensor, same size.
 * @param out Optional output to reuse (same size; not `gate` or `up`).
 * @returns `h`, shaped like `gate`.
 *
 * @example
 * ```ts
 * import { requestGpu, Tensor } from "@qlora/webgpu";
 * import { swigluForward } from "@qlora/webgpu/kernels";
 * import assert from "node:assert/strict";
 * const gpu = await requestGpu();
 * const gate = Tensor.fromArray(gpu, new Float32Array([0, 2]), [2]);
 * const up = Tensor.fromArray(gpu, new Float32Array([5, 3]), [2]);
 * const h = await swigluForward(gpu, gate, up).toFloat32();
 * assert.equal(h[0], 0);
 * assert.ok(Math.abs(h[1] - 6 / (1 + Math.exp(-2))) < 1e-6);
 * ```
 */
export function swigluForward(gpu: Gpu, gate: Tensor, up: Tensor, out?: Tensor): Tensor {
  expectSize(gate, "SwiGLU gate", gate.size);
  expectSize(up, "SwiGLU up", gate.size);
  const h = output(gpu, out, gate.shape, "swiglu h");
  distinct("swigluForward", gate, h);
  distinct("swigluForward", up, h);
  for (const range of rowRanges(gpu, gate.size, [4], "swigluForward")) {
    const n = range[1] - range[0];
    gpu.dispatch({
      kernel: "swiglu",
      entryPoint: "forward",
      bindings: [...[gate, up, h].map((t) => rowBinding(t, 4, range)), params([n])],
      workgroups: elementGrid(gpu, n),
      bytes: 3 * 4 * n,
    });
  }
  return h;
}

/**
 * Gradients of {@linkcode swigluForward}: `dGate = dh * up * s * (1 + gate * (1 - s))` with `s = sigmoid(gate)`,
 * and `dUp = dh * silu(gate)`.
 *
 * @param gpu The device.
 * @param dh Upstream gradient, size of `gate`.
 * @param gate The forward's `gate`.
 * @param up The forward's `up`.
 * @param out Optional outputs to reuse (not aliasing the inputs).
 * @returns `dGate` and `dUp`.
 *
 * @example
 * ```ts
 * import { requestGpu, Tensor } from "@qlora/webgpu";
 * import { swigluBackward } from "@qlora/webgpu/kernels";
 * import assert from "node:assert/strict";
 * const gpu = await requestGpu();
 * const one = (v: number) => Tensor.fromArray(gpu, new Float32Array([v]), [1]);
 * const { dGate, dUp } = swigluBackward(gpu, one(1), one(0), one(4));
 * assert.deepEqual([...await dGate.toFloat32()], [2]); // up * sigmoid(0)
 * assert.deepEqual([...await dUp.toFloat32()], [0]); // silu(0)
 * ```
 */
export function swigluBackward(
  gpu: Gpu,
  dh: Tensor,
  gate: Tensor,
  up: Tensor,
  out: Partial<SwigluGrads> = {},
): SwigluGrads {
  expectSize(gate, "SwiGLU gate", gate.size);
  expectSize(up, "SwiGLU up", gate.size);
  expectSize(dh, "SwiGLU dh", gate.size);
  const dGate = output(gpu, out.dGate, gate.shape, "swiglu dGate");
  const dUp = output(gpu, out.dUp, gate.shape, "swiglu dUp");
  for (const t of [dh, gate, up]) distinct("swigluBackward", t, dGate, dUp);
  for (const range of rowRanges(gpu, gate.size, [4], "swigluBackward")) {
    const n = range[1] - range[0];
    gpu.dispatch({
      kernel: "swiglu",
      entryPoint: "backward",
      bindings: [...[dh, gate, up, dGate, dUp].map((t) => rowBinding(t, 4, range)), params([n])],
      workgroups: elementGrid(gpu, n),
      bytes: 5 * 4 * n,
    });
  }
  return { dGate, dUp };
}
