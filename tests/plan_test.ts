// The memory plan equals what a run measures: finetune's gpu_bytes against planMemory, for the tiny model and a
// SmolLM2-width one (two layers, random weights), with and without checkpointing, resident and paged.

import assert from "node:assert/strict";
import { requestGpu } from "../lib/gpu/device.ts";
import { parseLlamaConfig } from "../lib/model/config.ts";
import { readMetrics } from "../lib/train/metrics.ts";
import { type FinetuneOptions, parseFinetuneArgs } from "../lib/train/options.ts";
import { finetune, resolveFinetuneRun } from "../lib/train/trainer.ts";
import { largestFitting, planMemory, type PlanOptions } from "../lib/train/plan.ts";
import { writeTinyLlama } from "../lib/testing/tiny_llama.ts";
import { GPU_LIMIT_PRESETS } from "../lib/gpu/accounting.ts";

const gpu = await requestGpu();
const limits = {
  maxBufferSize: gpu.limits.maxBufferSize,
  maxStorageBufferBindingSize: gpu.limits.maxStorageBufferBindingSize,
};
const SEQ = 16;
const sink = { writeSync: (b: Uint8Array) => b.length, isTerminal: () => false };

const MODELS = {
  tiny: { layers: 1, hidden: 32, intermediate: 64, heads: 2, kvHeads: 1 },
  smollm2: { layers: 2, hidden: 576, intermediate: 1536, heads: 9, kvHeads: 3 },
};

/** Runs two steps of full-length batches; returns the highest gpu_bytes and the plan of the same run. */
async function measureAndPlan(model: keyof typeof MODELS, flags: string[], limitPages?: number) {
  const dir = await Deno.makeTempDir();
  try {
    await writeTinyLlama(`${dir}/model`, MODELS[model]);
    const long = Array.from({ length: 40 }, (_, i) => ["abc", "hello", "xyz", "mnop"][i % 4]).join(" ");
    await Deno.writeTextFile(`${dir}/d.jsonl`, `{"text": "${long}"}\n`.repeat(4));
    const args = [
      ...["--model", `${dir}/model`, "--data", `${dir}/d.jsonl`, "--out", `${dir}/out`, "--steps", "2"],
      ...["--max-seq-len", `${SEQ}`, "--batch-size", "1", "--grad-accum", "1", "--save-every", "0", ...flags],
    ];
    let parsed = parseFinetuneArgs(args);
    assert.ok(parsed.kind === "run");
    const config = parseLlamaConfig(JSON.parse(await Deno.readTextFile(`${dir}/model/config.json`)));
    const base = (o: FinetuneOptions): PlanOptions => ({ ...o, config, maxSeqLen: SEQ, limits });
    if (limitPages !== undefined) {
      // A limit that holds all but `limitPages` pages of optimizer state: the pager must evict.
      const free = await planMemory(base(parsed.options));
      const limit = Math.max(free.loadPeakBytes, free.peakBytes - limitPages * parsed.options.pageSize!);
      assert.ok(limit < free.peakBytes);
      parsed = parseFinetuneArgs([...args, "--gpu-memory", `${limit}`]);
      assert.ok(parsed.kind === "run");
    }
    const o = parsed.options;
    // A device of its own, for the run's memory limit.
    const runGpu = await requestGpu({ gpuMemory: o.gpuMemory ?? undefined });
    const result = await finetune(runGpu, await resolveFinetuneRun(parsed), { sink });
    assert.equal(runGpu.budget.report().byClass.optimizer, 0, "finetune frees its optimizer state");
    const measured = Math.max(...(await readMetrics(result.metricsPath)).map((m) => m.gpu_bytes));
    const plan = await planMemory(base(o));
    return { measured, plan };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const CASES: [keyof typeof MODELS, string, string[], number?][] = [
  ["tiny", "checkpointing, adamw", ["--optimizer", "adamw", "--lora-r", "4"]],
  ["tiny", "no checkpointing, adamw", ["--optimizer", "adamw", "--lora-r", "4", "--no-checkpointing"]],
  ["tiny", "checkpointing, paged", ["--optimizer", "paged_adamw_32bit", "--lora-r", "4", "--page-size", "4KiB"]],
  ["smollm2", "checkpointing, adamw", ["--optimizer", "adamw", "--lora-r", "8"]],
  ["smollm2", "no checkpointing, paged and evicting", [
    ...["--optimizer", "paged_adamw_32bit", "--page-size", "64KiB", "--no-checkpointing"],
  ], 16],
];

for (const [model, what, flags, limitPages] of CASES) {
  Deno.test(`plan: ${model}, ${what}: the planned peak is the measured gpu_bytes within 1%`, async () => {
    const { measured, plan } = await measureAndPlan(model, flags, limitPages);
    assert.ok(plan.fits, plan.error ?? "");
    assert.ok(
      Math.abs(plan.peakBytes - measured) <= 0.01 * measured,
      `planned ${plan.peakBytes}, measured ${measured}`,
    );
    if (limitPages !== undefined) assert.ok(plan.peakBytes <= plan.limitBytes!);
  });
}

Deno.test("plan: a run past the limit does not fit, naming the allocation; searches find the edge", async () => {
  const config = parseLlamaConfig(
    JSON.parse(await Deno.readTextFile(new URL("./fixtures/configs/SmolLM2-135M.json", import.meta.url))),
  );
  const o = parseFinetuneArgs(["--model", "m", "--data", "d", "--out", "o", "--lora-r", "8", "--grad-accum", "1"]);
  assert.ok(o.kind === "run");
  const options: PlanOptions = { ...o.options, config, maxSeqLen: 256, limits, gpuMemory: 2 ** 30 };
  const plan = await planMemory(options);
  assert.ok(plan.fits);
  const seq = await largestFitting({ ...options, batchSize: 1 }, "maxSeqLen", config.maxPositionEmbeddings, 64);
  assert.ok(seq >= 256 && seq < config.maxPositionEmbeddings);
  assert.ok((await planMemory({ ...options, batchSize: 1, maxSeqLen: seq })).fits);
  const over = await planMemory({ ...options, batchSize: 1, maxSeqLen: seq + 64 });
  assert.ok(!over.fits && /GPU memory budget exceeded/.test(over.error!));
});

Deno.test("plan: an RTX 4090 preset; the embedding past maxBufferSize in row chunks; a buffer past it does not fit", async () => {
  const config = parseLlamaConfig(
    JSON.parse(await Deno.readTextFile(new URL("./fixtures/configs/SmolLM2-135M.json", import.meta.url))),
  );
  const o = parseFinetuneArgs(["--model", "m", "--data", "d", "--out", "o", "--grad-accum", "1"]);
  assert.ok(o.kind === "run");
  const preset = GPU_LIMIT_PRESETS["rtx4090"];
  const base = { ...o.options, config, maxSeqLen: 64, gpuMemory: preset.memory };
  const plan = await planMemory({ ...base, limits: preset });
  assert.ok(plan.fits);
  // The adapters and their gradients: two arenas, each tensor padded to 256 elements (f32).
  const c = config;
  const [q, kv, r] = [c.numHeads * c.headDim, c.numKvHeads * c.headDim, o.options.loraR];
  const shapes = [[q, c.hiddenSize], [kv, c.hiddenSize], [kv, c.hiddenSize], [c.hiddenSize, q]];
  shapes.push([c.intermediateSize, c.hiddenSize], [c.intermediateSize, c.hiddenSize], [
    c.hiddenSize,
    c.intermediateSize,
  ]);
  const pad = (n: number) => Math.ceil(n / 256) * 256 * 4;
  const arena = c.numLayers * shapes.reduce((s, [N, K]) => s + pad(r * K) + pad(N * r), 0);
  assert.equal(plan.classes["lora parameters"], arena);
  assert.equal(plan.classes["lora gradients"], arena);
  // 16 MiB buffers: the 49152 × 576 bf16 embedding (54 MiB) is held in 4 row chunks, the bytes unchanged.
  const chunked = await planMemory({
    ...base,
    limits: { maxBufferSize: 2 ** 24, maxStorageBufferBindingSize: 2 ** 24 },
  });
  assert.ok(chunked.fits, chunked.error ?? "");
  assert.equal(chunked.classes.embeddings, 49152 * 576 * 2);
  const small = await planMemory({ ...base, limits: { maxBufferSize: 2 ** 20, maxStorageBufferBindingSize: 2 ** 20 } });
  assert.ok(!small.fits && /q_proj.weight" of \d+ bytes .*maxBufferSize/.test(small.error!), small.error ?? "");
});
