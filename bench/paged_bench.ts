// Paged optimizer bench: raw host↔GPU bandwidth of the mapped-buffer paths, pager throughput as a ratio of it,
// and AdamW step time with the state resident, half spilled and all spilled, on LoRA (r = 64) state of a
// Llama-7B-shaped model (`layers` of 32; the default is scaled down for llvmpipe).
//
//   deno bench -A bench/paged_bench.ts                 (Deno.bench cases)
//   deno run -A bench/paged_bench.ts [--layers 2]      (a markdown table with the ratios, for bench/RESULTS.md)

import { parseArgs } from "node:util";
import { AdamW, formatBytes, type Gpu, PagedAdamW, Pager, requestGpu, Tensor } from "../mod.ts";

const MiB = 1 << 20;

/** LoRA A and B shapes (r = 64) of one Llama-7B decoder layer: q, k, v, o, gate, up, down. */
function loraSizes(layers: number, r = 64): number[] {
  const [d, ff] = [4096, 11008];
  const mods: [number, number][] = [[d, d], [d, d], [d, d], [d, d], [d, ff], [d, ff], [ff, d]];
  const sizes: number[] = [];
  for (let l = 0; l < layers; l++) for (const [i, o] of mods) sizes.push(r * i, o * r);
  return sizes;
}

/** Seconds per call of `fn` (median of `reps`, after one warmup). */
async function timeIt(fn: () => Promise<void>, reps: number): Promise<number> {
  await fn();
  const t: number[] = [];
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    await fn();
    t.push((performance.now() - t0) / 1000);
  }
  return t.sort((a, b) => a - b)[Math.floor(reps / 2)];
}

/**
 * Raw bandwidth of the mapped-buffer paths, with the same ring of two staging buffers the pager uses:
 * upload = fill a MAP_WRITE buffer, unmap, copyBufferToBuffer, remap; download = copyBufferToBuffer into a
 * MAP_READ buffer, mapAsync, copy out, unmap. Bytes per second.
 */
export async function rawBandwidth(gpu: Gpu, chunk: number, total: number): Promise<{ up: number; down: number }> {
  const dev = gpu.device;
  const target = gpu.createBuffer(chunk, "scratch", "raw bandwidth target");
  const host = new Uint8Array(chunk).fill(3);
  const ups = [0, 1].map((i) =>
    gpu.budget.createStagingBuffer({
      size: chunk,
      usage: GPUBufferUsage.MAP_WRITE | GPUBufferUsage.COPY_SRC,
      label: `raw up ${i}`,
      mappedAtCreation: true,
    })
  );
  const downs = [0, 1].map((i) =>
    gpu.budget.createStagingBuffer({
      size: chunk,
      usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
      label: `raw down ${i}`,
    })
  );
  const n = Math.max(2, Math.round(total / chunk));
  const upReady: Promise<void>[] = [Promise.resolve(), Promise.resolve()];
  const up = await timeIt(async () => {
    for (let k = 0; k < n; k++) {
      const s = ups[k % 2];
      await upReady[k % 2];
      new Uint8Array(s.getMappedRange()).set(host);
      s.unmap();
      const enc = dev.createCommandEncoder();
      enc.copyBufferToBuffer(s, 0, target, 0, chunk);
      dev.queue.submit([enc.finish()]);
      upReady[k % 2] = s.mapAsync(GPUMapMode.WRITE);
    }
    await Promise.all(upReady);
  }, 3);
  const down = await timeIt(async () => {
    const pending: Promise<void>[] = [Promise.resolve(), Promise.resolve()];
    for (let k = 0; k < n; k++) {
      await pending[k % 2];
      const s = downs[k % 2];
      const enc = dev.createCommandEncoder();
      enc.copyBufferToBuffer(target, 0, s, 0, chunk);
      dev.queue.submit([enc.finish()]);
      pending[k % 2] = s.mapAsync(GPUMapMode.READ).then(() => {
        host.set(new Uint8Array(s.getMappedRange()));
        s.unmap();
      });
    }
    await Promise.all(pending);
  }, 3);
  for (const s of [...ups, ...downs]) gpu.budget.free(s);
  gpu.free(target);
  return { up: (n * chunk) / up, down: (n * chunk) / down };
}

/** Pager throughput, bytes per second: page-in of `pages` non-resident pages, and write-back of as many dirty ones. */
export async function pagerThroughput(
  gpu: Gpu,
  pageSize: number,
  pages: number,
): Promise<{ up: number; down: number }> {
  const pager = new Pager(gpu, { pageSize });
  const buf = pager.allocate("bench pages", pages);
  buf.host.fill(5);
  const all = Array.from({ length: pages }, (_, i) => i);
  const up = await timeIt(async () => {
    await pager.pageOut(buf);
    await pager.pageIn(buf, all);
    pager.release(buf, all, false);
    await gpu.sync();
  }, 3);
  const down = await timeIt(async () => {
    await pager.pageIn(buf, all);
    pager.release(buf, all, true);
    await pager.writeBack(buf);
  }, 3);
  pager.destroy();
  return { up: (pages * pageSize) / up, down: (pages * pageSize) / down };
}

/** One optimizer configuration of {@linkcode stepTimes}. */
interface StepConfig {
  name: string;
  paged: boolean;
  /** Fraction of the state pages the budget leaves room for (paged only). */
  room?: number;
  /** Evict every page before each step: all state starts on host. */
  spillAll?: boolean;
  prefetch?: boolean;
  writeBack?: "auto" | "eager" | "lazy";
}

/** Median step time (seconds) of each configuration over LoRA state of `layers` layers. */
export async function stepTimes(
  layers: number,
  configs: StepConfig[],
  reps: number,
): Promise<{ name: string; seconds: number; spilled: number; pageCount: number; stateBytes: number }[]> {
  const sizes = loraSizes(layers);
  const out = [];
  for (const c of configs) {
    const probe = await requestGpu();
    const tensors = sizes.map((n, i) => ({
      name: `lora${i}`,
      param: Tensor.empty(probe, [n], { class: "weights", label: `lora${i}` }),
      grad: Tensor.empty(probe, [n], { label: `grad${i}` }),
    }));
    const others = probe.budget.report().current;
    const pageSize = 4 * MiB;
    // Size the budget from the page count a resident layout has, then run on a device with that limit.
    const pageCount = new PagedAdamW(probe, tensors, { pageSize }).pageCount;
    probe.destroy();
    const roomPages = c.spillAll ? 8 : Math.max(2, Math.floor((c.room ?? 1) * pageCount));
    const gpu = await requestGpu(
      c.paged && (c.room ?? 1) < 1 || c.spillAll ? { gpuMemory: others + roomPages * pageSize } : {},
    );
    const params = sizes.map((n, i) => ({
      name: `lora${i}`,
      param: Tensor.empty(gpu, [n], { class: "weights", label: `lora${i}` }),
      grad: Tensor.empty(gpu, [n], { label: `grad${i}` }),
    }));
    for (const p of params) {
      gpu.dispatch({
        kernel: "fill",
        bindings: [p.grad.buffer, new Float32Array([p.grad.size, 1e-3, 0, 0])],
        workgroups: Math.ceil(p.grad.size / 256),
      });
    }
    const opt = c.paged
      ? new PagedAdamW(gpu, params, { pageSize, prefetch: c.prefetch ?? true, writeBack: c.writeBack ?? "auto" })
      : new AdamW(gpu, params, { pageSize });
    let onHost = 0;
    const seconds = await timeIt(async () => {
      if (c.spillAll) await opt.pageOut();
      onHost = gpu.budget.report().paging.pagesOnHost;
      await opt.step({ lr: 1e-4 });
      await gpu.sync();
    }, reps);
    out.push({
      name: c.name,
      seconds,
      spilled: c.paged ? onHost / opt.pageCount : 0,
      pageCount: opt.pageCount,
      stateBytes: opt.pageCount * pageSize,
    });
    opt.destroy();
    gpu.destroy();
  }
  return out;
}

const CONFIGS: StepConfig[] = [
  { name: "AdamW, resident", paged: false },
  { name: "PagedAdamW, no limit (all resident, no write-back)", paged: true },
  { name: "PagedAdamW, 50% spilled, eager write-back, prefetch", paged: true, room: 0.5 },
  { name: "PagedAdamW, 50% spilled, eager write-back, no prefetch", paged: true, room: 0.5, prefetch: false },
  { name: "PagedAdamW, 50% spilled, lazy write-back, prefetch", paged: true, room: 0.5, writeBack: "lazy" },
  { name: "PagedAdamW, 100% spilled, eager write-back, prefetch", paged: true, spillAll: true },
  { name: "PagedAdamW, 100% spilled, eager write-back, no prefetch", paged: true, spillAll: true, prefetch: false },
];

if (import.meta.main) {
  const { values } = parseArgs({
    options: { layers: { type: "string", default: "1" }, reps: { type: "string", default: "3" } },
  });
  const layers = Number(values.layers);
  const gpu = await requestGpu();
  console.log(`Adapter: ${gpu.adapterName}`);
  const raw = await rawBandwidth(gpu, 16 * MiB, 256 * MiB);
  const pg = await pagerThroughput(gpu, 4 * MiB, 32);
  gpu.destroy();
  const gbs = (x: number) => `${(x / 1e9).toFixed(2)} GB/s`;
  console.log("| path | raw mapped-buffer | pager | pager / raw |\n|---|---|---|---|");
  console.log(`| upload (host → GPU) | ${gbs(raw.up)} | ${gbs(pg.up)} | ${(pg.up / raw.up).toFixed(2)} |`);
  console.log(`| download (GPU → host) | ${gbs(raw.down)} | ${gbs(pg.down)} | ${(pg.down / raw.down).toFixed(2)} |`);
  const steps = await stepTimes(layers, CONFIGS, Number(values.reps));
  const base = steps[0].seconds;
  console.log(
    `\nLoRA r=64 state of ${layers} Llama-7B layer(s): ${loraSizes(layers).reduce((a, b) => a + b, 0)} params, ` +
      `${formatBytes(steps[0].stateBytes)} of f32 state in ${steps[0].pageCount} pages of 4 MiB`,
  );
  console.log("| configuration | state on host at step start | step | vs resident |\n|---|---|---|---|");
  for (const s of steps) {
    console.log(
      `| ${s.name} | ${(100 * s.spilled).toFixed(0)}% | ${(1000 * s.seconds).toFixed(1)} ms | ${
        (s.seconds / base).toFixed(2)
      }× |`,
    );
  }
} else {
  const gpu = await requestGpu();
  Deno.bench({ name: "raw mapped upload+download, 64 MiB", n: 3, warmup: 1 }, async () => {
    await rawBandwidth(gpu, 16 * MiB, 64 * MiB);
  });
  Deno.bench({ name: "pager page-in + write-back, 16 pages of 4 MiB", n: 3, warmup: 1 }, async () => {
    await pagerThroughput(gpu, 4 * MiB, 16);
  });
  for (const c of CONFIGS) {
    Deno.bench({ name: `step: ${c.name} (1 layer)`, n: 1, warmup: 0 }, async () => {
      await stepTimes(1, [c], 2);
    });
  }
}
