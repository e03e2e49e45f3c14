/**
 * SwiGLU, the gate of Llama's MLP: `h = silu(gate) * up`, forward and backward on the GPU.
 *
 * @module
 */

import type { Gpu } from "../../gpu/device.ts";
import type { Tensor } from "../../gpu/tensor.ts";
import { bindingLimit, rowBinding, rowRanges } from "../../kernels/_row_chunks.ts";
import { _distinct, _elementGrid, _expect, _output, _params } from "./_util.ts";

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
 * @param maxBindingBytes Storage binding limit to split the range by (default and cap: the device's).
 * @returns `h`, shaped like `gate`.
 *
 * @example
 * ```ts
 * import { requestGpu, swigluForward, Tensor } from "@qlora/webgpu";
 * import assert from "node:assert/strict";
 * const gpu = await requestGpu();
 * const gate = Tensor.fromArray(gpu, new Float32Array([0, 2]), [2]);
 * const up = Tensor.fromArray(gpu, new Float32Array([5, 3]), [2]);
 * const h = await swigluForward(gpu, gate, up).toFloat32();
 * assert.equal(h[0], 0);
 * assert.ok(Math.abs(h[1] - 6 / (1 + Math.exp(-2))) < 1e-6);
 * ```
 */
export function swigluForward(gpu: Gpu, gate: Tensor, up: Tensor, out?: Tensor, maxBindingBytes?: number): Tensor {
  _expect(gate, "SwiGLU gate", gate.size);
  _expect(up, "SwiGLU up", gate.size);
  const h = _output(gpu, out, gate.shape, "swiglu h");
  _distinct("swigluForward", gate, h);
  _distinct("swigluForward", up, h);
  for (const range of _ranges(gpu, gate.size, maxBindingBytes, "swigluForward")) {
    const n = range[1] - range[0];
    gpu.dispatch({
      kernel: "swiglu_forward",
      bindings: [...[gate, up, h].map((t) => rowBinding(t, 4, range)), _params([n])],
      workgroups: _elementGrid(gpu, n),
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
 * @param maxBindingBytes Storage binding limit to split the range by (default and cap: the device's).
 * @returns `dGate` and `dUp`.
 *
 * @example
 * ```ts
 * import { requestGpu, swigluBackward, Tensor } from "@qlora/webgpu";
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
  maxBindingBytes?: number,
): SwigluGrads {
  _expect(gate, "SwiGLU gate", gate.size);
  _expect(up, "SwiGLU up", gate.size);
  _expect(dh, "SwiGLU dh", gate.size);
  const dGate = _output(gpu, out.dGate, gate.shape, "swiglu dGate");
  const dUp = _output(gpu, out.dUp, gate.shape, "swiglu dUp");
  for (const t of [dh, gate, up]) _distinct("swigluBackward", t, dGate, dUp);
  for (const range of _ranges(gpu, gate.size, maxBindingBytes, "swigluBackward")) {
    const n = range[1] - range[0];
    gpu.dispatch({
      kernel: "swiglu_backward",
      bindings: [...[dh, gate, up, dGate, dUp].map((t) => rowBinding(t, 4, range)), _params([n])],
      workgroups: _elementGrid(gpu, n),
    });
  }
  return { dGate, dUp };
}

// Element ranges that fit one storage binding each (elementwise: any aligned split works).
function _ranges(gpu: Gpu, n: number, maxBindingBytes: number | undefined, op: string): [number, number][] {
  return rowRanges(n, [4], bindingLimit(gpu, maxBindingBytes), gpu.limits.minStorageBufferOffsetAlignment, op);
}
