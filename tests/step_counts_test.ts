import assert from "node:assert/strict";
import { requestGpu } from "../lib/gpu/device.ts";
import { writeTinyLlama } from "../lib/testing/tiny_llama.ts";
import { parseFinetuneArgs } from "../lib/train/options.ts";
import { finetune, resolveFinetuneRun } from "../lib/train/trainer.ts";
import { countGpuCalls, type GpuCounts } from "./_gpu_counts.ts";

const sink = { writeSync: (b: Uint8Array) => b.length, isTerminal: () => false };

// Steady-state steps (the first compiles pipelines and sets up) of a 4-layer tiny model, batch 1, checkpointing.
async function stepCounts(optimizer: string, gradAccum: number, layers = 4): Promise<GpuCounts[]> {
  const dir = await Deno.makeTempDir();
  try {
    await writeTinyLlama(`${dir}/model`, { layers, hidden: 32, intermediate: 64, heads: 2, kvHeads: 1 });
    const lines = ["abc", "xyz", "hello", "qr"].map((w) => JSON.stringify({ prompt: `${w}=`, completion: w }));
    await Deno.writeTextFile(`${dir}/d.jsonl`, lines.join("\n") + "\n");
    const parsed = parseFinetuneArgs([
      ...["--model", `${dir}/model`, "--data", `${dir}/d.jsonl`, "--out", `${dir}/out`, "--lora-r", "4"],
      ...["--grad-accum", `${gradAccum}`, "--steps", "3", "--save-every", "0", "--optimizer", optimizer],
    ]);
    assert.ok(parsed.kind === "run");
    const counter = countGpuCalls();
    const counts: GpuCounts[] = [];
    try {
      await finetune(await requestGpu(), await resolveFinetuneRun(parsed), {
        sink,
        onStep: () => counts.push(counter.take()),
      });
    } finally {
      counter.stop();
    }
    return counts.slice(1);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("step counts: two host waits per optimizer step (loss and grad norm read together), none per micro-batch", async () => {
  for (const [optimizer, accum] of [["paged_adamw_32bit", 1], ["adamw", 3], ["paged_adamw_8bit", 2]] as const) {
    for (const c of await stepCounts(optimizer, accum)) {
      assert.equal(c.waits, 2, `${optimizer}, grad-accum ${accum}: ${c.waits} host waits`);
    }
  }
});

Deno.test("step counts: at most 60 dispatches per decoder layer and step (checkpointing, optimizer included)", async () => {
  const [four, two] = [await stepCounts("paged_adamw_32bit", 1, 4), await stepCounts("paged_adamw_32bit", 1, 2)];
  for (const [i, c] of four.entries()) {
    // A layer's share is what two more layers add; the rest is the embedding, the loss head and the optimizer.
    // Per layer: 129 with one norm partial and one AdamW dispatch per LoRA tensor, 102 with the adapters in arenas
    // (one run, one page), 57 with the LoRA products fused into the NF4 kernels, the residuals added in place, q and
    // k rotated together, dY·B and dB in one dispatch and XA kept with the checkpoint.
    const perLayer = (c.dispatches - two[i].dispatches) / 2;
    assert.ok(perLayer <= 60, `${perLayer} dispatches per layer`);
    assert.ok(c.dispatches - 4 * perLayer <= 10, `${c.dispatches - 4 * perLayer} dispatches outside the layers`);
    assert.equal(c.byKernel.get("adamw_f32:main:{}"), 1, "one AdamW dispatch: the adapters are one run in one page");
    assert.ok(![...c.byKernel.keys()].some((k) => k.startsWith("clip_grad_norm:scale:")), "no separate clip pass");
    assert.ok(![...c.byKernel.keys()].some((k) => k.startsWith("residual_add:")), "residuals added in place");
  }
});
