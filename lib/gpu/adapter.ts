/**
 * Adapter and device acquisition: the limits the kernels need and the optional features found.
 *
 * @module
 */

import { GpuError } from "./dispatch.ts";

/** Optional adapter features the kernels can use; each has a fallback. */
export interface GpuFeatures {
  /** `shader-f16`: f16 arithmetic and storage in WGSL. */
  shaderF16: boolean;
  /** `timestamp-query`: GPU-side timing for benches. */
  timestampQuery: boolean;
}

/** Options for `requestGpu`. */
export interface RequestGpuOptions {
  /** GPU memory budget (bytes or a string such as `"6GiB"`); unset: only the device's own limits. */
  gpuMemory?: number | string;
  /** Passed to `requestAdapter`. */
  powerPreference?: GPUPowerPreference;
  /** Turn off optional features (e.g. to test the f32 fallback on an adapter that has f16). */
  disableFeatures?: (keyof GpuFeatures)[];
  /**
   * Largest storage binding the kernels make, in bytes (default and cap: the adapter's
   * `maxStorageBufferBindingSize`); a smaller value makes them split tensors into more ranges (tests use it).
   */
  maxBindingBytes?: number;
}

/**
 * Requests the adapter and a device with the limits the kernels need (largest storage bindings and buffers the
 * adapter allows), and detects optional features. `requestGpu` wraps the device in a `Gpu`.
 *
 * @param options Power preference and features to leave off (the other options are `requestGpu`'s).
 * @returns The device, the adapter's description and the features in use.
 * @throws {GpuError} If there is no WebGPU adapter, with what to install.
 *
 * @example
 * ```ts
 * import { acquireDevice } from "@qlora/webgpu/gpu";
 * import assert from "node:assert/strict";
 * const { device, features } = await acquireDevice({ disableFeatures: ["shaderF16"] });
 * assert.equal(features.shaderF16, false);
 * assert.ok(device.limits.maxStorageBufferBindingSize > 0);
 * device.destroy();
 * ```
 */
export async function acquireDevice(
  options: RequestGpuOptions = {},
): Promise<{ device: GPUDevice; name: string; features: GpuFeatures }> {
  if (typeof navigator === "undefined" || !navigator.gpu) {
    throw new GpuError("WebGPU is not available in this runtime: run under Deno 2 (`deno run`)");
  }
  const adapter = await navigator.gpu.requestAdapter({ powerPreference: options.powerPreference });
  if (!adapter) {
    throw new GpuError(
      "No WebGPU adapter found. Install a GPU driver with Vulkan support, or Mesa's software rasterizer " +
        "(Debian/Ubuntu: `apt-get install mesa-vulkan-drivers`); Deno also falls back to OpenGL with " +
        "DENO_WEBGPU_BACKEND=gl",
    );
  }
  const off = new Set(options.disableFeatures ?? []);
  const has = (f: string, k: keyof GpuFeatures) => adapter.features.has(f as GPUFeatureName) && !off.has(k);
  const features: GpuFeatures = {
    shaderF16: has("shader-f16", "shaderF16"),
    timestampQuery: has("timestamp-query", "timestampQuery"),
  };
  const requiredFeatures: GPUFeatureName[] = [];
  if (features.shaderF16) requiredFeatures.push("shader-f16");
  if (features.timestampQuery) requiredFeatures.push("timestamp-query");
  const l = adapter.limits;
  const device = await adapter.requestDevice({
    requiredFeatures,
    requiredLimits: {
      maxStorageBufferBindingSize: l.maxStorageBufferBindingSize,
      maxBufferSize: l.maxBufferSize,
      maxComputeWorkgroupStorageSize: l.maxComputeWorkgroupStorageSize,
      maxComputeInvocationsPerWorkgroup: l.maxComputeInvocationsPerWorkgroup,
      maxComputeWorkgroupSizeX: l.maxComputeWorkgroupSizeX,
      maxStorageBuffersPerShaderStage: l.maxStorageBuffersPerShaderStage,
    },
  });
  const name = adapter.info.description || adapter.info.device || adapter.info.vendor || "unknown adapter";
  return { device, name, features };
}
