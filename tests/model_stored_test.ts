// Frozen embedding, norms and lm_head held as the checkpoint stores them (bf16, f16): the same logits, loss and
// LoRA gradients, bit for bit, as the f32 copy of the same checkpoint, in half the bytes.
import assert from "node:assert/strict";
import { type Gpu, LlamaModel, requestGpu, SafetensorsFile, writeSafetensors } from "../mod.ts";
import { writeTinyLlama } from "../lib/testing/mod.ts";

/** The model's logits, loss and LoRA gradients on a fixed batch, and the bytes of its `weights` class. */
async function _run(gpu: Gpu, dir: string) {
  const before = gpu.budget.report().byClass.weights;
  const model = await LlamaModel.load(gpu, dir, { lora: { r: 4, seed: 1 } });
  const weightBytes = gpu.budget.report().byClass.weights - before;
  for (const l of model.loraLayers()) l.b.write(new Float32Array(l.b.size).map((_, i) => Math.sin(i) * 0.05));
  const ids = new Int32Array([3, 17, 42, 99, 7, 250, 64, 12]);
  const batch = { batchSize: 2, seqLen: 4, inputIds: ids, labels: ids };
  const { logits } = await model.forward(batch, { logits: true });
  const out = [await logits!.toFloat32()];
  logits!.destroy();
  model.zeroGrad();
  const { lossSum } = await model.forwardBackward(batch);
  out.push(new Float32Array([lossSum]));
  for (const l of model.loraLayers()) out.push(await l.gradA.toFloat32(), await l.gradB.toFloat32());
  model.destroy();
  return { out, weightBytes };
}

/** An f32 copy of a single-file checkpoint folder. */
async function _f32Copy(dir: string): Promise<string> {
  const copy = await Deno.makeTempDir();
  await Deno.copyFile(`${dir}/config.json`, `${copy}/config.json`);
  using f = await SafetensorsFile.open(`${dir}/model.safetensors`);
  const tensors = [];
  for (const name of f.names()) {
    const data = new Uint8Array((await f.readF32(name)).buffer);
    tensors.push({ name, dtype: "F32" as const, shape: f.info(name).shape, data });
  }
  await writeSafetensors(`${copy}/model.safetensors`, tensors);
  return copy;
}

for (
  const [dtype, tied, maxBindingBytes] of [["bf16", false, undefined], ["f16", true, 10_000], [
    "bf16",
    false,
    10_000,
  ]] as const
) {
  const what = `${dtype}${tied ? " tied" : ""}${maxBindingBytes ? " (lm_head in chunks)" : ""}`;
  Deno.test(`model stored: ${what} frozen tensors give the f32 copy's results`, async () => {
    // 10 kB bindings (f16): the tied lm_head is held in vocabulary chunks, the embedding read in ranges.
    const gpu = await requestGpu({ maxBindingBytes });
    const dir = await Deno.makeTempDir();
    const cfg = await writeTinyLlama(dir, { layers: 2, dtype, tied, seed: 3 });
    const copy = await _f32Copy(dir);
    const held = await _run(gpu, dir);
    const f32 = await _run(gpu, copy);
    held.out.forEach((v, i) => assert.deepEqual(v, f32.out[i], `output ${i}`));
    // Embedding, lm_head (untied, or tied and copied into chunks) and the 2 · layers + 1 norms, at 2 bytes, not 4.
    const V = cfg.vocab_size as number, H = cfg.hidden_size as number;
    const frozen = (tied && !maxBindingBytes ? 1 : 2) * V * H + 5 * H;
    assert.equal(f32.weightBytes - held.weightBytes, 2 * frozen);
    gpu.destroy();
    await Deno.remove(dir, { recursive: true });
    await Deno.remove(copy, { recursive: true });
  });
}
