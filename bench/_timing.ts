// Timing helpers of the benches: GPU time per call from timestamp queries, or the wall clock around `gpu.sync()`.

import type { Gpu } from "../mod.ts";

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
