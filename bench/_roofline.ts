// Every roofline of the benches, measured in the same run as the figures they divide: the device copy bandwidth
// (a vec4 copy kernel, bytes read + written per second), the dense f32 matmul's GFLOP/s (a square, tile-aligned
// problem grown until one call takes long enough to time, ≥ 20 ms, or reaches 4096³), and the raw host↔GPU
// bandwidth of the mapped-buffer paths the pager uses; `rooflineValue` measures each once per device and run.

import { type Gpu, Rng, Tensor } from "../mod.ts";
import { grid2d } from "../lib/gpu/mod.ts";
import { matmul } from "../lib/kernels/mod.ts";
import { timeGpu } from "./_timing.ts";

/** Bytes copied per copy-kernel call (or less when the binding limit is lower). */
const COPY_BYTES = 64 << 20;

/**
 * Device copy bandwidth: bytes read + written per second by the `bench/copy_vec4.wgsl` kernel over `bytes`
 * (default 64 MiB, capped by the binding limit). The kernel is not part of the package, so its pipeline is built
 * and submitted with the raw device API (after `gpu`'s pending work, which `timeGpu` flushes around it).
 */
export async function copyBandwidth(gpu: Gpu, bytes = COPY_BYTES, iters = 5): Promise<number> {
  const size = Math.min(bytes, gpu.maxBindingBytes) & ~15;
  const src = gpu.createBuffer(size, "scratch", "copy roofline src");
  const dst = gpu.createBuffer(size, "scratch", "copy roofline dst");
  const params = gpu.createBuffer(16, "scratch", "copy roofline params", GPUBufferUsage.UNIFORM);
  const wg = 256;
  const items = 4;
  const count = size / 16;
  gpu.write(params, new Uint32Array([count, 0, 0, 0]));
  const code = await Deno.readTextFile(new URL("./copy_vec4.wgsl", import.meta.url));
  const module = gpu.device.createShaderModule({ code, label: "copy_vec4" });
  const pipeline = gpu.device.createComputePipeline({
    layout: "auto",
    compute: { module, entryPoint: "main", constants: { WG: wg, ITEMS: items } },
    label: "copy_vec4",
  });
  const bindGroup = gpu.device.createBindGroup({
    layout: pipeline.getBindGroupLayout(0),
    entries: [src, dst, params].map((buffer, binding) => ({ binding, resource: { buffer } })),
  });
  const [x, y] = grid2d(Math.ceil(count / (wg * items)), gpu.limits.maxComputeWorkgroupsPerDimension);
  const t = await timeGpu(gpu, () => {
    gpu.flush();
    const enc = gpu.device.createCommandEncoder({ label: "copy_vec4" });
    const pass = enc.beginComputePass({ label: "copy_vec4" });
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, bindGroup);
    pass.dispatchWorkgroups(x, y);
    pass.end();
    gpu.device.queue.submit([enc.finish()]);
  }, iters);
  for (const b of [src, dst, params]) gpu.free(b);
  return (2 * size) / t.seconds;
}

/** GFLOP/s of the dense f32 matmul `C = A·B` on the largest square size tried. */
export async function denseMatmulGflops(gpu: Gpu): Promise<number> {
  for (let n = 256;; n *= 2) {
    const rng = new Rng(1);
    const a = Tensor.fromArray(gpu, rng.normalArray(n * n), [n, n]);
    const b = Tensor.fromArray(gpu, rng.normalArray(n * n), [n, n]);
    const t = (await timeGpu(gpu, () => matmul(a, b).destroy(), 3)).seconds;
    a.destroy();
    b.destroy();
    if (t >= 0.02 || n >= 4096) return (2 * n ** 3) / t / 1e9;
  }
}

/** Bytes per staging transfer in the raw mapped-buffer measurement: the pager's default staging buffer (4 pages). */
const CHUNK = 16 << 20;

/** One pass of {@linkcode rawTransfer}: `step` moves `bytes`; `dispose` frees the buffers. */
interface RawTransfer {
  step(): Promise<void>;
  bytes: number;
  dispose(): void;
}

/**
 * One pass of the raw mapped-buffer path over `total` bytes, with a ring of two staging buffers as the pager
 * uses. Upload: fill a MAP_WRITE buffer, unmap, copyBufferToBuffer, map again. Download: copyBufferToBuffer into
 * a MAP_READ buffer, mapAsync, copy out, unmap.
 */
function rawTransfer(gpu: Gpu, dir: "up" | "down", total: number): RawTransfer {
  const target = gpu.createBuffer(CHUNK, "scratch", "raw bandwidth target");
  const host = new Uint8Array(CHUNK).fill(3);
  const ring = [0, 1].map((i) =>
    gpu.budget.createStagingBuffer({
      size: CHUNK,
      usage: dir === "up"
        ? GPUBufferUsage.MAP_WRITE | GPUBufferUsage.COPY_SRC
        : GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
      label: `raw ${dir} ${i}`,
      mappedAtCreation: dir === "up",
    })
  );
  const ready: Promise<void>[] = [Promise.resolve(), Promise.resolve()];
  const n = Math.max(2, Math.round(total / CHUNK));
  const step = async () => {
    for (let k = 0; k < n; k++) {
      const s = ring[k % 2];
      await ready[k % 2];
      if (dir === "up") {
        new Uint8Array(s.getMappedRange()).set(host);
        s.unmap();
        gpu.copy(s, 0, target, 0, CHUNK);
        gpu.flush();
        ready[k % 2] = s.mapAsync(GPUMapMode.WRITE);
      } else {
        gpu.copy(target, 0, s, 0, CHUNK);
        gpu.flush();
        ready[k % 2] = s.mapAsync(GPUMapMode.READ).then(() => {
          host.set(new Uint8Array(s.getMappedRange()));
          s.unmap();
        });
      }
    }
    await Promise.all(ready);
  };
  return {
    step,
    bytes: n * CHUNK,
    dispose: () => {
      for (const s of ring) gpu.budget.free(s);
      gpu.free(target);
    },
  };
}

/** Bytes per second of the raw mapped-buffer path over 256 MiB. */
export async function mappedBandwidth(gpu: Gpu, dir: "up" | "down"): Promise<number> {
  const work = rawTransfer(gpu, dir, 256 << 20);
  try {
    return work.bytes! / (await timeGpu(gpu, work.step, 3)).seconds;
  } finally {
    work.dispose();
  }
}

/** A roofline: what it measures, its unit, and how to measure it on a device. */
export interface Roofline {
  /** `GB/s` (compare with bytes moved) or `GFLOP/s` (compare with arithmetic). */
  unit: "GB/s" | "GFLOP/s";
  /** Measures it; the value in `unit`. */
  measure(gpu: Gpu): Promise<number>;
}

/** Every roofline, by name. */
export const ROOFLINES: Readonly<Record<string, Roofline>> = {
  // Best of three: a roofline is what the device can do, and a shared machine only ever slows it down.
  copy: {
    unit: "GB/s",
    measure: async (gpu) =>
      Math.max(...[await copyBandwidth(gpu), await copyBandwidth(gpu), await copyBandwidth(gpu)]) / 1e9,
  },
  matmul: { unit: "GFLOP/s", measure: denseMatmulGflops },
  mapped_upload: { unit: "GB/s", measure: async (gpu) => (await mappedBandwidth(gpu, "up")) / 1e9 },
  mapped_download: { unit: "GB/s", measure: async (gpu) => (await mappedBandwidth(gpu, "down")) / 1e9 },
};

const _measured = new WeakMap<Gpu, Map<string, Promise<number>>>();

/** The named roofline's value on `gpu`, measured once per device and run. */
export function rooflineValue(gpu: Gpu, name: string): Promise<number> {
  const roofline = ROOFLINES[name];
  if (!roofline) throw new Error(`Unknown roofline "${name}" (${Object.keys(ROOFLINES).join(", ")})`);
  let byName = _measured.get(gpu);
  if (!byName) _measured.set(gpu, byName = new Map());
  let v = byName.get(name);
  if (!v) byName.set(name, v = roofline.measure(gpu));
  return v;
}
