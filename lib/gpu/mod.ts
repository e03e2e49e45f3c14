/**
 * The WebGPU runtime: the adapter and device (`requestGpu`, `Gpu`), tensors, the GPU memory budget and the pager, and
 * the host helpers everything builds on (byte counts, dtypes, the seeded random generator).
 *
 * @example A tensor's round trip through the GPU, accounted in the budget
 * ```ts
 * import { formatBytes, requestGpu, Tensor } from "@qlora/webgpu/gpu";
 * import assert from "node:assert/strict";
 * const gpu = await requestGpu();
 * const t = Tensor.fromArray(gpu, new Float32Array([1, 2, 3]), [3], { label: "t" });
 * assert.deepEqual([...await t.toFloat32()], [1, 2, 3]);
 * assert.ok(gpu.budget.report().current >= 12);
 * assert.equal(formatBytes(6 * 2 ** 30), "6.00 GiB");
 * ```
 *
 * @module
 */

export * from "../bytes.ts";
export * from "../dtype.ts";
export * from "../random.ts";
export * from "./device.ts";
export * from "./adapter.ts";
export * from "./pool.ts";
export * from "./tensor.ts";
export * from "./tensor_arena.ts";
export * from "./budget.ts";
export * from "./pager.ts";
export * from "./dispatch.ts";
export * from "./stats.ts";
export * from "./bind_cache.ts";
export * from "./profiler.ts";
export * from "./accounting.ts";
