// Rooflines for the benches, measured in the same run as the figures they divide: the device copy bandwidth
// (a vec4 copy kernel, bytes read + written per second), and a registry other benches add to (e.g. the dense
// matmul's GFLOP/s). Also `timeGpu`, the timing helper every bench uses.

import { type Gpu, grid2d } from "../mod.ts";
import { denseMatmulGflops } from "./_matmul_roofline.ts";

/** How a time was measured: GPU timestamps (`timestamp-query`) or the wall clock around `gpu.sync()`. */
export type Timer = "timestamp" | "wall";

/** A measured time per call. */
export interface Timing {
  /** Seconds per call (median over the iterations). */
  seconds: number;
  /** How it was measured. */
  timer: Timer;
}

/**
 * Times `fn` (which records GPU work; it may also await) on the GPU: median seconds per call over `iters` calls,
 * after one warm-up call. With `timestamp-query`, each call is bracketed by two empty compute passes that write
 * timestamps (so host overhead between submissions is not counted while the GPU stays busy); a result that is
 * not plausible against the wall clock (e.g. an adapter whose ticks are not nanoseconds) falls back to it.
 * Without timestamps, or with `timer` `"wall"`: the wall clock from before `fn` to after `gpu.sync()`.
 */
export async function timeGpu(
  gpu: Gpu,
  fn: () => void | Promise<void>,
  iters = 5,
  timer: Timer = "timestamp",
): Promise<Timing> {
  await fn();
  await gpu.sync();
  const wall: number[] = [];
  const stamps = gpu.features.timestampQuery && timer === "timestamp" ? _stampRecorder(gpu, iters) : undefined;
  for (let i = 0; i < iters; i++) {
    const t0 = performance.now();
    stamps?.mark(2 * i);
    await fn();
    stamps?.mark(2 * i + 1);
    await gpu.sync();
    wall.push((performance.now() - t0) / 1000);
  }
  const wallMedian = _median(wall);
  if (stamps) {
    const gpuTimes = await stamps.read();
    const t = _median(gpuTimes);
    stamps.destroy();
    // Ticks that are not nanoseconds, or a timer that did not run, show up as times beyond the wall clock.
    if (t > 0 && t <= wallMedian * 1.05) return { seconds: t, timer: "timestamp" };
  }
  return { seconds: wallMedian, timer: "wall" };
}

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

/** A roofline: what it measures, its unit, and how to measure it on a device. */
export interface Roofline {
  /** `GB/s` (compare with bytes moved) or `GFLOP/s` (compare with arithmetic). */
  unit: "GB/s" | "GFLOP/s";
  /** Measures it; the value in `unit`. */
  measure(gpu: Gpu): Promise<number>;
}

/** Rooflines by name; benches add theirs here (one line each). */
export const ROOFLINES: Record<string, Roofline> = {
  // Best of three: a roofline is what the device can do, and a shared machine only ever slows it down.
  copy: {
    unit: "GB/s",
    measure: async (gpu) =>
      Math.max(...[await copyBandwidth(gpu), await copyBandwidth(gpu), await copyBandwidth(gpu)]) / 1e9,
  },
  matmul: { unit: "GFLOP/s", measure: denseMatmulGflops },
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

function _median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

/** Writes GPU timestamps at indices of a query set through empty compute passes, ordered with `gpu`'s work. */
function _stampRecorder(gpu: Gpu, iters: number) {
  const querySet = gpu.device.createQuerySet({ type: "timestamp", count: 2 * iters, label: "timeGpu" });
  const resolved = gpu.createBuffer(16 * iters, "scratch", "timeGpu timestamps", GPUBufferUsage.QUERY_RESOLVE);
  return {
    mark(index: number): void {
      gpu.flush();
      const enc = gpu.device.createCommandEncoder({ label: "timeGpu mark" });
      const pass = enc.beginComputePass({
        timestampWrites: index % 2 === 0
          ? { querySet, beginningOfPassWriteIndex: index }
          : { querySet, endOfPassWriteIndex: index },
      });
      pass.end();
      gpu.device.queue.submit([enc.finish()]);
    },
    async read(): Promise<number[]> {
      const enc = gpu.device.createCommandEncoder({ label: "timeGpu resolve" });
      enc.resolveQuerySet(querySet, 0, 2 * iters, resolved, 0);
      gpu.device.queue.submit([enc.finish()]);
      const ns = new BigUint64Array(await gpu.read(resolved));
      return Array.from({ length: iters }, (_, i) => Number(ns[2 * i + 1] - ns[2 * i]) / 1e9);
    },
    destroy(): void {
      querySet.destroy();
      gpu.free(resolved);
    },
  };
}
