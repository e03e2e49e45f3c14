// Paged optimizer bench: raw host↔GPU bandwidth of the mapped-buffer paths (the rooflines
// `mapped_upload` / `mapped_download`), pager throughput as a ratio of it, and AdamW step time with the state
// resident, half spilled and all spilled, on the LoRA (r = 64) state of a Llama-7B-shaped model: `full` is all
// 32 layers (160M parameters, 1.2 GiB of f32 state), `small` (the default, for llvmpipe) one layer.
//
//   deno bench -A bench/paged_bench.ts                 (QLORA_BENCH_SIZE=full for the full size)
//   deno task bench:report [--size small|full]       (every registered case, one JSON array)
//   deno run -A bench/paged_bench.ts [--size small|full] [--reps 5]
//        (markdown tables for bench/RESULTS.md: step times as ratios to the resident step, measured interleaved)
//
// Bytes counted: page-in and write-back move whole pages; an AdamW step streams 28 bytes per parameter
// (reads p, g, m, v; writes p, m, v), whether the state is resident or paged, so a paged step's ratio to the
// copy roofline falls by exactly its slowdown.

import { parseArgs } from "node:util";
import { AdamW, type AdamWOptions, formatBytes, type Gpu, type OptimParam, requestGpu, Tensor } from "../mod.ts";
import { Pager } from "../lib/gpu/mod.ts";
import { type BenchCase, type BenchSize, benchSize, type BenchWork, registerDenoBench } from "./_cases.ts";
import { copyBandwidth, mappedBandwidth } from "./_roofline.ts";
import { timeGpu } from "./_timing.ts";

const MiB = 1 << 20;
const PAGE = 4 * MiB;

/** LoRA A and B sizes (r = 64) of `layers` Llama-7B decoder layers: q, k, v, o, gate, up, down. */
function loraSizes(layers: number, r = 64): number[] {
  const [d, ff] = [4096, 11008];
  const mods: [number, number][] = [[d, d], [d, d], [d, d], [d, d], [d, ff], [d, ff], [ff, d]];
  const sizes: number[] = [];
  for (let l = 0; l < layers; l++) for (const [i, o] of mods) sizes.push(r * i, o * r);
  return sizes;
}

/** Pager page-in of `pages` pages that are on the host only (their slots wait in the pool, as in a step). */
function pageIn(gpu: Gpu, pages: number): Promise<BenchWork> {
  const pager = new Pager(gpu, { pageSize: PAGE });
  const buf = pager.allocate("bench pages", pages);
  buf.host.fill(5);
  const all = Array.from({ length: pages }, (_, i) => i);
  return Promise.resolve({
    step: async () => {
      await pager.pageOut(buf); // clean pages: slots back to the pool, nothing moves
      await pager.pageIn(buf, all);
      pager.release(buf, all, false);
    },
    bytes: pages * PAGE,
    dispose: () => pager.destroy(),
  });
}

/** Pager write-back of `pages` dirty pages. */
async function writeBack(gpu: Gpu, pages: number): Promise<BenchWork> {
  const pager = new Pager(gpu, { pageSize: PAGE });
  const buf = pager.allocate("bench pages", pages);
  const all = Array.from({ length: pages }, (_, i) => i);
  await pager.pageIn(buf, all);
  pager.release(buf, all, false);
  return {
    step: async () => {
      await pager.pageIn(buf, all); // resident: only pins
      pager.release(buf, all, true);
      await pager.writeBack(buf);
    },
    bytes: pages * PAGE,
    dispose: () => pager.destroy(),
  };
}

/** An optimizer configuration: resident AdamW, or PagedAdamW with room for a fraction of its pages. */
interface StepConfig {
  name: string;
  paged: boolean;
  /** Fraction of the state pages the budget leaves room for (default: no limit). */
  room?: number;
  /** Page all state out before each step (all of it starts on host) with room for 2 staging batches. */
  spillAll?: boolean;
  prefetch?: boolean;
  writeBack?: AdamWOptions["writeBack"];
  /** 8-bit blockwise states. */
  bits8?: boolean;
}

const CONFIGS: StepConfig[] = [
  { name: "adamw step, resident", paged: false },
  { name: "paged adamw step, no limit", paged: true },
  { name: "paged adamw step, 50% spilled, prefetch", paged: true, room: 0.5 },
  { name: "paged adamw step, 50% spilled, no prefetch", paged: true, room: 0.5, prefetch: false },
  { name: "paged adamw step, 50% spilled, lazy write-back", paged: true, room: 0.5, writeBack: "lazy" },
  { name: "paged adamw step, 100% spilled, prefetch", paged: true, spillAll: true },
  { name: "paged adamw step, 100% spilled, no prefetch", paged: true, spillAll: true, prefetch: false },
  { name: "adamw8bit step, resident", paged: false, bits8: true },
  { name: "paged adamw8bit step, 50% spilled, prefetch", paged: true, room: 0.5, bits8: true },
];

function loraParams(gpu: Gpu, sizes: number[]): OptimParam[] {
  return sizes.map((n, i) => {
    const grad = Tensor.fromArray(gpu, new Float32Array(n).fill(1e-3), [n], { label: `grad${i}` });
    return { name: `lora${i}`, param: Tensor.empty(gpu, [n], { class: "weights", label: `lora${i}` }), grad };
  });
}

/**
 * Sets up one optimizer configuration on `gpu`. A spilled configuration lowers the budget limit during each
 * step only (to what others hold plus its room), so cases sharing the device do not see it.
 */
function optimizerStep(
  gpu: Gpu,
  sizes: number[],
  c: StepConfig,
): Promise<BenchWork & { onHost(): number; pageCount: number }> {
  const params = loraParams(gpu, sizes);
  const limited = c.paged && (c.spillAll || c.room !== undefined);
  // Spilled runs write back eagerly unless asked otherwise: "auto" would see no limit at construction.
  const writeBack = c.writeBack ?? (limited ? "eager" : "auto");
  const opt = new AdamW(gpu, params, {
    pageSize: PAGE,
    paged: c.paged,
    stateBits: c.bits8 ? 8 : 32,
    prefetch: c.prefetch ?? true,
    writeBack,
  });
  const roomPages = c.spillAll ? 8 : Math.max(2, Math.floor((c.room ?? 1) * opt.pageCount));
  let onHost = 0;
  return Promise.resolve({
    step: async () => {
      if (limited) gpu.budget.setLimit(gpu.budget.report().current - opt.pager!.heldBytes() + roomPages * PAGE);
      if (c.spillAll) await opt.pageOut();
      onHost = gpu.budget.report().paging.pagesOnHost / opt.pageCount;
      await opt.step({ lr: 1e-4 });
      if (limited) gpu.budget.setLimit(Infinity);
    },
    // 8-bit: p, g read, p written (12 B) plus codes and absmax read and written (about 4.06 B).
    bytes: (c.bits8 ? 16.0625 : 28) * sizes.reduce((a, b) => a + b, 0),
    onHost: () => onHost,
    pageCount: opt.pageCount,
    dispose: () => {
      opt.destroy();
      for (const p of params) (p.param.destroy(), p.grad.destroy());
    },
  });
}

/** The paged bench cases at `size`. */
export function cases(size: BenchSize): BenchCase[] {
  const sizes = loraSizes(size === "full" ? 32 : 1);
  const pages = size === "full" ? 64 : 16;
  const params = sizes.reduce((a, b) => a + b, 0);
  return [
    { name: "paged page-in", shape: [pages, PAGE], roofline: "mapped_upload", setup: (gpu) => pageIn(gpu, pages) },
    {
      name: "paged write-back",
      shape: [pages, PAGE],
      roofline: "mapped_download",
      setup: (gpu) => writeBack(gpu, pages),
    },
    ...CONFIGS.map((c): BenchCase => ({
      name: c.name,
      shape: [params],
      roofline: "copy",
      setup: (gpu) => optimizerStep(gpu, sizes, c),
    })),
  ];
}

/** Markdown tables: bandwidths and pager ratios; step times interleaved across configurations, with ratios. */
async function report(size: BenchSize, reps: number): Promise<void> {
  const gpu = await requestGpu();
  const gbs = (x: number) => `${(x / 1e9).toFixed(2)} GB/s`;
  console.log(`Adapter: ${gpu.adapterName}\n`);
  console.log("| path | raw mapped-buffer | pager | pager / raw |\n|---|---|---|---|");
  for (const [dir, name, setup] of [["up", "upload (host → GPU)", pageIn], ["down", "download", writeBack]] as const) {
    const raw = await mappedBandwidth(gpu, dir);
    const work = await setup(gpu, 32);
    const pager = work.bytes! / (await timeGpu(gpu, work.step, 3)).seconds;
    work.dispose();
    console.log(`| ${name} | ${gbs(raw)} | ${gbs(pager)} | ${(pager / raw).toFixed(2)} |`);
  }
  const roof = await copyBandwidth(gpu);
  const sizes = loraSizes(size === "full" ? 32 : 1);
  const works = [];
  for (const c of CONFIGS) {
    // Each configuration on its own device, so that all can stay set up and run interleaved.
    const g = await requestGpu();
    works.push({ c, g, work: await optimizerStep(g, sizes, c), times: [] as number[] });
  }
  for (let r = 0; r <= reps; r++) {
    for (const w of works) {
      const t0 = performance.now();
      await w.work.step();
      await w.g.sync();
      if (r > 0) w.times.push((performance.now() - t0) / 1000); // round 0 warms up
    }
  }
  const median = (t: number[]) => t.sort((a, b) => a - b)[Math.floor(t.length / 2)];
  const base = median(works[0].times);
  const params = sizes.reduce((a, b) => a + b, 0);
  const pageCount = works[0].work.pageCount;
  console.log(
    `\nLoRA r=64 state of ${sizes.length / 14} Llama-7B layer(s): ${params} parameters, ` +
      `${formatBytes(pageCount * PAGE)} of f32 state in ${pageCount} pages. Device copy roofline ${gbs(roof)}; ` +
      `the resident step streams ${gbs((28 * params) / base)} (${((28 * params) / base / roof).toFixed(2)} of it).\n`,
  );
  console.log(
    "| configuration | state on host at step start | step | vs resident (same state bits) |\n|---|---|---|---|",
  );
  for (const w of works) {
    const t = median(w.times);
    const ref = median(works.find((x) => !x.c.paged && !!x.c.bits8 === !!w.c.bits8)!.times);
    console.log(
      `| ${w.c.name} | ${(100 * w.work.onHost()).toFixed(0)}% | ${(1000 * t).toFixed(1)} ms | ${
        (t / ref).toFixed(2)
      }× |`,
    );
    w.work.dispose();
    w.g.destroy();
  }
  gpu.destroy();
}

if (import.meta.main) {
  const { values } = parseArgs({ options: { size: { type: "string" }, reps: { type: "string", default: "5" } } });
  const size = values.size ?? benchSize();
  if (size !== "small" && size !== "full") throw new Error(`--size ${size}: small or full`);
  await report(size, Number(values.reps));
} else {
  registerDenoBench(cases(benchSize()));
}
