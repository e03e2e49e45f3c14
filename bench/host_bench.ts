// Host-side cost of the GPU runtime: what the CPU spends per dispatch and per training step, measured in one run.
//
// - `host dispatch`: CPU µs to record one dispatch through `Gpu.dispatch` (residual_add on 1024 floats, a fresh
//   uniform array each call, as kernels pass them; `gpu.stats().recordMs`), beside a raw Deno WebGPU loop recording
//   the same kernel into one compute pass with one cached bind group (the floor). Submits are not counted on either
//   side (lavapipe runs the kernels inside them). Ratio: ours / raw.
// - `host step`: one steady-state optimizer step of the trainer itself (`finetune`: zero grads, forward + backward
//   with gradient checkpointing and LoRA r = 16 on all seven projections, AdamW with the norm clipped inside it, the
//   loss and norm read together), the fifth after four warm-ups (the buffer pool's cap grows to the step's working
//   set over the first steps), of the tiny model (4 layers) and of a SmolLM2-135M-shaped model with random weights
//   (2 layers; vocabulary 4096 at `small`), batch 1. It reports the
//   counts per step from `gpu.stats()`, model GFLOP/s over the dense matmul of the same run, and the projected
//   host-bound fraction of the step on a real GPU: host time (wall time of the step less the time blocked in host
//   waits and in submits, which a software adapter spends running the kernels) over host time + the model FLOPs at
//   PROJECTED_GPU_FLOPS.
// - `peer torch step`: the same SmolLM2-shaped LoRA step in PyTorch on the CPU (PEFT when importable), run when
//   `python3` has torch (skipped with a message otherwise); the ratio is ours (wall) / torch.
//
//   deno run -A bench/host_bench.ts [--size small|full]   (markdown table for bench/RESULTS.md)

import { parseArgs } from "node:util";
import { finetune, type Gpu, parseFinetuneArgs, requestGpu, resolveFinetuneRun, Tensor } from "../mod.ts";
import type { GpuStats } from "../lib/gpu/mod.ts";
import { writeTinyLlama } from "../lib/testing/mod.ts";
import { type BenchCase, type BenchRecord, type BenchSize, benchSize, formatRecord } from "./_cases.ts";
import { modelFlops, type ModelShape } from "./_model_flops.ts";
import { rooflineValue } from "./_roofline.ts";

/** The assumed GPU throughput for the host-bound projection: 20 TFLOP/s (an H100 on f32 LoRA work, roughly). */
export const PROJECTED_GPU_FLOPS = 20e12;

const R = 16;

function _shapes(size: BenchSize): ModelShape[] {
  const T = size === "full" ? 512 : 64;
  return [
    { name: "tiny", layers: 4, hidden: 64, heads: 4, kvHeads: 2, intermediate: 172, vocab: 260, B: 1, T },
    {
      name: "SmolLM2-135M-shaped",
      layers: 2,
      hidden: 576,
      heads: 9,
      kvHeads: 3,
      intermediate: 1536,
      vocab: size === "full" ? 49152 : 4096,
      B: 1,
      T,
    },
  ];
}

function _round(v: number): number {
  return Number(v.toPrecision(4));
}

/** CPU ms per dispatch through `Gpu` and through a raw loop (best of `iters` rounds of `n` dispatches). */
export async function dispatchCost(gpu: Gpu, n = 2000, iters = 5): Promise<{ ours: number; raw: number }> {
  const acc = Tensor.empty(gpu, [1024], { label: "acc" });
  const x = Tensor.empty(gpu, [1024], { label: "x" });
  const params = () => {
    const p = new Uint32Array([1024, 0]);
    new Float32Array(p.buffer)[1] = 1;
    return p;
  };
  const pipeline = gpu.pipeline("residual_add");
  const uniform = gpu.device.createBuffer({ size: 16, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
  gpu.device.queue.writeBuffer(uniform, 0, params());
  const bindGroup = gpu.device.createBindGroup({
    layout: pipeline.getBindGroupLayout(0),
    entries: [
      { binding: 0, resource: { buffer: acc.buffer } },
      { binding: 1, resource: { buffer: x.buffer } },
      { binding: 2, resource: { buffer: uniform } },
    ],
  });
  // Each returns the ms spent recording (submits excluded: a software adapter runs the kernels inside them).
  const ours = () => {
    gpu.resetStats();
    for (let i = 0; i < n; i++) {
      gpu.dispatch({ kernel: "residual_add", bindings: [acc.buffer, x.buffer, params()], workgroups: 4 });
    }
    gpu.flush();
    return gpu.stats().recordMs;
  };
  const raw = () => {
    const t0 = performance.now();
    const enc = gpu.device.createCommandEncoder();
    const pass = enc.beginComputePass();
    pass.setPipeline(pipeline);
    for (let i = 0; i < n; i++) {
      pass.setBindGroup(0, bindGroup);
      pass.dispatchWorkgroups(4);
    }
    pass.end();
    const cb = enc.finish();
    const ms = performance.now() - t0;
    gpu.device.queue.submit([cb]);
    return ms;
  };
  const best = async (fn: () => number) => {
    let min = Infinity;
    for (let i = 0; i < iters; i++) {
      await gpu.sync();
      min = Math.min(min, fn() / n);
    }
    await gpu.sync();
    return min;
  };
  await best(ours); // warm-up: pipelines, caches
  const out = { raw: await best(raw), ours: await best(ours) };
  acc.destroy();
  x.destroy();
  uniform.destroy();
  return out;
}

/**
 * Counts and times of one steady-state optimizer step of `s` (the fifth of five): the trainer's own step
 * (`finetune` on a written model folder, batch 1, sequences cut to `s.T` tokens, LoRA dropout 0 as the torch peer).
 */
export async function stepCost(gpu: Gpu, s: ModelShape): Promise<{ stats: GpuStats; wallMs: number }> {
  const dir = await Deno.makeTempDir();
  try {
    const { name: _, B, T, ...opts } = s;
    await writeTinyLlama(`${dir}/model`, { ...opts, maxPositions: Math.max(256, T) });
    const words = Array.from({ length: T }, (_, i) => `w${i}`).join(" ");
    await Deno.writeTextFile(`${dir}/data.jsonl`, JSON.stringify({ prompt: "say:", completion: words }) + "\n");
    const parsed = parseFinetuneArgs([
      ...["--model", `${dir}/model`, "--data", `${dir}/data.jsonl`, "--out", `${dir}/out`, "--steps", "5"],
      ...["--lora-r", `${R}`, "--lora-alpha", `${2 * R}`, "--lora-dropout", "0", "--batch-size", `${B}`],
      ...["--grad-accum", "1", "--max-seq-len", `${T}`, "--save-every", "0", "--lr", "1e-3"],
    ]);
    if (parsed.kind !== "run") throw new Error("host step: the finetune arguments did not parse to a run");
    const steps: { stats: GpuStats; wallMs: number }[] = [];
    let t0 = 0;
    const start = () => {
      gpu.resetStats();
      t0 = performance.now();
    };
    start();
    await finetune(gpu, await resolveFinetuneRun(parsed), {
      sink: { writeSync: (b: Uint8Array) => b.length, isTerminal: () => false },
      onStep: () => {
        steps.push({ stats: gpu.stats(), wallMs: performance.now() - t0 });
        start();
      },
    });
    return steps[4];
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Milliseconds of the same LoRA step in torch on the CPU, or a reason it was skipped. */
export async function torchStepMs(s: ModelShape): Promise<number | string> {
  const script = new URL("./_torch_lora_step.py", import.meta.url).pathname;
  const args = [script, ...[s.layers, s.hidden, s.heads, s.kvHeads, s.intermediate, s.vocab, s.B, s.T, R].map(String)];
  let r: Deno.CommandOutput;
  try {
    r = await new Deno.Command("python3", { args, stdout: "piped", stderr: "piped" }).output();
  } catch {
    return "no python3";
  }
  const text = new TextDecoder().decode(r.stdout).trim();
  if (!r.success) return new TextDecoder().decode(r.stderr).trim().split("\n").at(-1) ?? "python3 failed";
  const ms = Number(text.split(/\s+/).at(-1));
  return Number.isFinite(ms) ? ms : text;
}

function _stepRecord(gpu: Gpu, s: ModelShape, r: { stats: GpuStats; wallMs: number }, matmul: number): BenchRecord {
  const flops = modelFlops(s, R);
  const hostMs = Math.max(r.stats.recordMs, r.wallMs - r.stats.waitMs - r.stats.submitMs);
  const gpuMs = flops / PROJECTED_GPU_FLOPS * 1e3;
  const gflops = flops / (r.wallMs / 1e3) / 1e9;
  const st = r.stats;
  return {
    name: `host step ${s.name} (${s.layers} layers)`,
    shape: [s.B, s.T],
    adapter: gpu.adapterName,
    ms: _round(r.wallMs),
    gflops: _round(gflops),
    roofline: "matmul",
    roofline_value: _round(matmul),
    ratio: _round(gflops / matmul),
    timer: "wall",
    extra: {
      buffers: st.buffersCreated,
      dispatches: st.dispatches,
      passes: st.passes,
      submits: st.submits,
      waits: st.waits,
      writeBuffers: st.writeBuffers,
      bindGroups: st.bindGroupsCreated,
      record_ms: _round(st.recordMs),
      submit_ms: _round(st.submitMs),
      wait_ms: _round(st.waitMs),
      host_ms: _round(hostMs),
      host_bound_fraction: _round(hostMs / (hostMs + gpuMs)),
    },
  };
}

/** The host bench cases at `size`. */
export function cases(size: BenchSize): BenchCase[] {
  const shapes = _shapes(size);
  const smol = shapes[1];
  return [
    {
      name: "host dispatch",
      shape: [2000],
      roofline: "raw_dispatch",
      setup: () => Promise.reject(new Error("host dispatch: measured by measure()")),
      measure: async (gpu: Gpu): Promise<BenchRecord> => {
        const { ours, raw } = await dispatchCost(gpu);
        return {
          name: "host dispatch (CPU per dispatch, Gpu vs raw loop)",
          shape: [2000],
          adapter: gpu.adapterName,
          ms: _round(ours),
          roofline: "raw_dispatch",
          roofline_value: _round(raw),
          ratio: _round(ours / raw),
          timer: "wall",
          extra: { us_per_dispatch: _round(ours * 1e3), raw_us_per_dispatch: _round(raw * 1e3) },
        };
      },
    },
    ...shapes.map((s) => ({
      name: `host step ${s.name}`,
      shape: [s.B, s.T],
      roofline: "matmul",
      setup: () => Promise.reject(new Error("host step: measured by measure()")),
      measure: async (gpu: Gpu) => _stepRecord(gpu, s, await stepCost(gpu, s), await rooflineValue(gpu, "matmul")),
    })),
    {
      name: "peer torch step",
      shape: [smol.B, smol.T],
      roofline: "torch_cpu",
      setup: () => Promise.reject(new Error("peer torch step: measured by measure()")),
      measure: async (gpu: Gpu): Promise<BenchRecord> => {
        const torch = await torchStepMs(smol);
        const ours = await stepCost(gpu, smol);
        const skipped = typeof torch === "string";
        if (skipped) console.error(`peer torch step skipped: ${torch}`);
        return {
          name: `peer torch step ${smol.name} (${smol.layers} layers)`,
          shape: [smol.B, smol.T],
          adapter: gpu.adapterName,
          ms: _round(ours.wallMs),
          roofline: "torch_cpu",
          roofline_value: skipped ? NaN : _round(torch),
          ratio: skipped ? NaN : _round(ours.wallMs / torch),
          timer: "wall",
          extra: skipped ? { skipped: torch } : {},
        };
      },
    },
  ];
}

if (import.meta.main) {
  const { values } = parseArgs({ options: { size: { type: "string" } } });
  const size = (values.size ?? benchSize()) as BenchSize;
  const gpu = await requestGpu();
  for (const c of cases(size)) console.log(formatRecord(await c.measure!(gpu)));
  gpu.destroy();
}
