import assert from "node:assert/strict";
import { requestGpu } from "../lib/gpu/device.ts";
import { parseFinetuneArgs } from "../lib/train/options.ts";
import { finetune, resolveFinetuneRun } from "../lib/train/trainer.ts";
import { readMetrics } from "../lib/train/metrics.ts";
import { findLastCheckpoint, readTrainerState } from "../lib/train/checkpoint.ts";
import { readPeftAdapter } from "../lib/io/peft.ts";
import { finetuneFixture, finetuneFlags } from "./_finetune_fixture.ts";

const gpu = await requestGpu();
const sink = { writeSync: (b: Uint8Array) => b.length, isTerminal: () => false };

function args(dir: string, out: string) {
  const parsed = parseFinetuneArgs(finetuneFlags(dir, out, 4));
  assert.ok(parsed.kind === "run");
  return parsed;
}

Deno.test("trainer: a run writes one metrics line per step, checkpoints, the adapter and loss.svg", async () => {
  const dir = await finetuneFixture();
  try {
    const r = await finetune(gpu, await resolveFinetuneRun(args(dir, "a")), { sink });
    const m = await readMetrics(r.metricsPath);
    assert.deepEqual(m.map((x) => x.step), [1, 2, 3, 4]);
    for (const x of m) {
      assert.ok(x.loss > 0 && Number.isFinite(x.grad_norm) && x.tokens > 0 && x.tokens_per_s > 0 && x.gpu_bytes > 0);
    }
    assert.ok(m[3].loss < m[0].loss, `loss ${m[0].loss} -> ${m[3].loss}`);
    assert.equal(m[0].lr, 1e-2 * 0 / 1); // one warmup step (3% of 4, rounded up) starts at 0
    assert.equal(m[1].lr, 1e-2);
    assert.equal((await findLastCheckpoint(`${dir}/a`))?.step, 2);
    const adapter = await readPeftAdapter(`${dir}/a`);
    assert.equal(adapter.modules.size, 7);
    assert.deepEqual([adapter.config.r, adapter.config.loraAlpha, adapter.config.loraDropout], [4, 16, 0.1]);
    assert.ok([...adapter.modules.values()].some((w) => w.b.some((v) => v !== 0)));
    assert.match(await Deno.readTextFile(`${dir}/a/loss.svg`), /<polyline /);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("trainer: a run stopped after a checkpoint and resumed equals an uninterrupted one; same seed, same losses", async () => {
  const dir = await finetuneFixture();
  try {
    const full = await finetune(gpu, await resolveFinetuneRun(args(dir, "full")), { sink });
    const again = await finetune(gpu, await resolveFinetuneRun(args(dir, "again")), { sink });
    const fullM = await readMetrics(full.metricsPath);
    const strip = (ms: typeof fullM) => ms.map(({ tokens_per_s: _, gpu_bytes: __, run: ___, ...rest }) => rest);
    assert.deepEqual(strip(await readMetrics(again.metricsPath)), strip(fullM));
    // Stop after step 3 (checkpoint-2 saved, step 3 logged but not saved), then --resume.
    await finetune(gpu, await resolveFinetuneRun(args(dir, "cut")), { sink, stopAfter: 3 });
    // Temporary files of a final save and loss.svg killed midway are swept when the run resumes.
    const leftovers = ["adapter_model.safetensors.tmp-999999999-0badf00d", "loss.svg.tmp-999999999-0badf00d"];
    for (const n of leftovers) await Deno.writeTextFile(`${dir}/cut/${n}`, "torn");
    const resumed = parseFinetuneArgs(["--resume", `${dir}/cut`]);
    assert.ok(resumed.kind === "resume");
    const run = await resolveFinetuneRun(resumed);
    assert.deepEqual([run.startStep, run.options.loraDropout], [2, 0.1]);
    const r = await finetune(gpu, run, { sink });
    assert.deepEqual(strip(await readMetrics(r.metricsPath)), strip(fullM));
    const cutNames = [...Deno.readDirSync(`${dir}/cut`)].map((e) => e.name);
    assert.deepEqual(leftovers.filter((n) => cutNames.includes(n)), []);
    const runs = new Set((await readMetrics(r.metricsPath)).map((m) => m.run));
    assert.deepEqual([...runs], [run.runId], "every line names the one run, resumed or not");
    assert.equal((await readTrainerState(`${dir}/cut/checkpoint-2`)).runId, run.runId);
    // A fresh run into the finished folder refuses, naming what is there.
    await assert.rejects(
      resolveFinetuneRun(args(dir, "cut")),
      /--out .*cut already holds adapter_config\.json, .*--overwrite/,
    );
    const [a, b] = [await readPeftAdapter(`${dir}/full`), await readPeftAdapter(`${dir}/cut`)];
    for (const [path, w] of a.modules) assert.deepEqual(b.modules.get(path), w, path);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("trainer: a final save that fails keeps the adapter as a checkpoint, and --resume writes it", async () => {
  const dir = await finetuneFixture();
  try {
    const parsed = parseFinetuneArgs([...finetuneFlags(dir, "f", 2), "--save-every", "0"]);
    assert.ok(parsed.kind === "run");
    // A folder where the adapter file goes: the rename into place fails.
    const block = () => Deno.mkdirSync(`${dir}/f/adapter_model.safetensors/x`, { recursive: true });
    await assert.rejects(
      finetune(gpu, await resolveFinetuneRun(parsed), { sink, onStep: (m) => m.step === 2 && block() }),
      /final adapter could not be written to .*f \(.*adapter_model\.safetensors.*\); it is kept in .*checkpoint-2: .*--resume/,
    );
    await Deno.remove(`${dir}/f/adapter_model.safetensors`, { recursive: true });
    const resumed = parseFinetuneArgs(["--resume", `${dir}/f`]);
    assert.ok(resumed.kind === "resume");
    const r = await finetune(gpu, await resolveFinetuneRun(resumed), { sink });
    assert.equal(r.steps, 2);
    assert.equal((await readPeftAdapter(`${dir}/f`)).modules.size, 7);
    assert.deepEqual((await readMetrics(r.metricsPath)).map((m) => m.step), [1, 2]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("trainer: --f16 trains with f16 products where the adapter has shader-f16, else a clear error", async () => {
  const dir = await finetuneFixture();
  try {
    const parsed = parseFinetuneArgs([...finetuneFlags(dir, "h", 3), "--f16", "--save-every", "0"]);
    assert.ok(parsed.kind === "run");
    const run = await resolveFinetuneRun(parsed);
    if (gpu.features.shaderF16) {
      const r = await finetune(gpu, run, { sink });
      const m = await readMetrics(r.metricsPath);
      assert.equal(m.length, 3);
      assert.ok(m.every((x) => Number.isFinite(x.loss) && Number.isFinite(x.grad_norm)));
    } else {
      await assert.rejects(finetune(gpu, run, { sink }), /f16.*shader-f16/);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("trainer: under a --gpu-memory limit the paged optimizer spills to host, with the same results", async () => {
  const dir = await finetuneFixture();
  try {
    const flags = (out: string) => [
      ...finetuneFlags(dir, out, 4),
      ...["--optimizer", "paged_adamw_32bit", "--page-size", "4KiB", "--save-every", "0"],
    ];
    const run = async (out: string, gpuMemory?: number) => {
      const g = await requestGpu({ gpuMemory });
      const parsed = parseFinetuneArgs(flags(out));
      assert.ok(parsed.kind === "run");
      let optimizerBytes = 0;
      let pagedIn = 0;
      let inUse = 0;
      await finetune(g, await resolveFinetuneRun(parsed), {
        sink,
        onStep: () => {
          const r = g.budget.report();
          optimizerBytes = Math.max(optimizerBytes, r.byClass.optimizer);
          pagedIn = r.paging.bytesPagedIn;
          inUse = Math.max(inUse, r.peakInUse);
        },
      });
      const peak = g.budget.report().peak;
      g.destroy();
      return { metrics: await readMetrics(`${dir}/${out}/metrics.jsonl`), optimizerBytes, pagedIn, peak, inUse };
    };
    const free = await run("free");
    // Room for everything in use but half of the optimizer state at the busiest moment of a step (the peak in
    // gpu_bytes also counts the buffer pool's idle bytes, which a limit releases first).
    assert.ok(Math.max(...free.metrics.map((m) => m.gpu_bytes)) >= free.inUse);
    const limit = free.inUse - free.optimizerBytes / 2;
    const tight = await run("tight", limit);
    // Without a limit each page comes in once; under it, evicted pages come back in later steps.
    assert.ok(tight.pagedIn > free.pagedIn, `paged in ${tight.pagedIn} > ${free.pagedIn}`);
    assert.ok(tight.peak <= limit, `peak ${tight.peak} <= limit ${limit}`);
    assert.deepEqual(tight.metrics.map((m) => [m.loss, m.grad_norm]), free.metrics.map((m) => [m.loss, m.grad_norm]));
    const [a, b] = [await readPeftAdapter(`${dir}/free`), await readPeftAdapter(`${dir}/tight`)];
    for (const [path, w] of a.modules) assert.deepEqual(b.modules.get(path), w, path);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
