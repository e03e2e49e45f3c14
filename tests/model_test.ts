// The whole model against the independent PyTorch reference (scripts/golden_reference.py, float64), gradient
// checkpointing on/off, overfitting one batch, bad inputs, and non-finite loss detection.
import assert from "node:assert/strict";
import {
  AdamW,
  type Batch,
  dequantizeNF4,
  type Gpu,
  LlamaModel,
  NonFiniteLossError,
  parseLlamaConfig,
  requestGpu,
  SafetensorsFile,
} from "../mod.ts";
import { FIXTURES } from "../scripts/make_model_fixture.ts";
import { relError } from "./_assert.ts";

const path = (name: string, kind: string) =>
  new URL(`./fixtures/${name}_${kind}.safetensors`, import.meta.url).pathname;
// One device for the file: pipelines compile once (slow on the GL backend).
const gpu = await requestGpu();

async function fixture(name: string) {
  const inputs = path(name, "inputs");
  using f = await SafetensorsFile.open(inputs);
  const config = parseLlamaConfig(JSON.parse(f.metadata.config), inputs);
  const ids = new Int32Array((await f.read("input_ids")).slice().buffer);
  const labels = new Int32Array((await f.read("labels")).slice().buffer);
  const [B, T] = f.info("input_ids").shape;
  const tensors = new Map<string, Float32Array>();
  for (const name of f.names()) {
    if (name.startsWith("dequant.") || name.includes(".lora_")) tensors.set(name, await f.readF32(name));
  }
  const attentionMask = new Int32Array((await f.read("attention_mask")).slice().buffer);
  const batch: Batch = { batchSize: B, seqLen: T, inputIds: ids, labels, attentionMask };
  return { config, batch, tensors };
}

async function loadFixtureModel(name = "llama_tiny", dropout = 0, on: Gpu = gpu) {
  const { config, batch, tensors } = await fixture(name);
  const lora = { ...FIXTURES[name].lora, dropout };
  const model = await LlamaModel.load(on, path(name, "inputs"), { config, lora });
  for (const l of model.loraLayers()) {
    l.a.write(tensors.get(`${l.path}.lora_A.weight`)!);
    l.b.write(tensors.get(`${l.path}.lora_B.weight`)!);
  }
  return { model, batch, tensors };
}

async function grads(model: LlamaModel): Promise<Map<string, Float32Array>> {
  const out = new Map<string, Float32Array>();
  for (const l of model.loraLayers()) {
    out.set(`${l.path}.lora_A.grad`, await l.gradA.toFloat32());
    out.set(`${l.path}.lora_B.grad`, await l.gradB.toFloat32());
  }
  return out;
}

// Each fixture also with lm_head split in vocabulary chunks (as for a vocabulary past the binding limit).
for (const [name, maxBindingBytes] of Object.keys(FIXTURES).flatMap((n) => [[n, undefined], [n, 10_000]] as const)) {
  const what = maxBindingBytes ? " (lm_head in 3 vocabulary chunks)" : "";
  Deno.test(`model: ${name}${what} logits, loss and LoRA gradients match the PyTorch float64 reference`, async () => {
    // A small binding limit splits lm_head (and the row-split kernels' operands) into ranges.
    const on = maxBindingBytes ? await requestGpu({ maxBindingBytes }) : gpu;
    const { model, batch, tensors } = await loadFixtureModel(name, 0, on);
    using golden = await SafetensorsFile.open(path(name, "golden"));
    // The GPU quantize-on-load must give the very weights the reference used (TS reference NF4 round trip).
    for (const lin of model.linearLayers()) {
      const deq = dequantizeNF4(lin.weight);
      const got = (await deq.toFloat32()).subarray(0, lin.weight.shape[0] * lin.weight.shape[1]);
      deq.destroy();
      assert.ok(relError(got, tensors.get(`dequant.${lin.path}.weight`)!) < 1e-6, `${lin.path} weights differ`);
    }
    const fwd = await model.forward(batch, { logits: true });
    const logits = await fwd.logits!.toFloat32();
    fwd.logits!.destroy();
    const wantLogits = await golden.readF32("logits");
    const wantLoss = (await golden.readF32("loss_sum"))[0];
    assert.ok(relError(logits, wantLogits) < 1e-5, `logits rel-L2 ${relError(logits, wantLogits)}`);
    assert.equal(fwd.tokens, (await golden.readF32("tokens"))[0]);
    assert.ok(Math.abs(fwd.lossSum - wantLoss) < 1e-4 * Math.abs(wantLoss), `loss ${fwd.lossSum} vs ${wantLoss}`);

    const r = await model.forwardBackward(batch, { gradScale: 1 });
    assert.ok(Math.abs(r.lossSum - wantLoss) < 1e-4 * Math.abs(wantLoss));
    const got = await grads(model);
    const { numLayers } = model.config;
    assert.equal(got.size, 2 * numLayers * FIXTURES[name].lora.targetModules.length);

    for (const [name, g] of got) {
      const want = await golden.readF32(name);
      assert.ok(want.some((x) => x !== 0), `${name}: reference gradient is zero`);

      assert.ok(relError(g, want) < 1e-4, `${name}: rel-L2 ${relError(g, want)}`);
    }
    // A second micro-batch accumulates: gradients double.
    await model.forwardBackward(batch, { gradScale: 1 });
    const twice = await grads(model);
    for (const [name, g] of got) assert.ok(relError(twice.get(name)!, g.map((x) => 2 * x)) < 1e-5, name);
    model.zeroGrad();
    assert.ok((await model.loraLayers()[0].gradA.toFloat32()).every((x) => x === 0));
    model.destroy();
    if (on !== gpu) on.destroy();
  });
}

// Qwen3 too: the recompute must rebuild the q/k norms' inputs and rstd.
for (const name of ["llama_tiny", "qwen3_tiny"]) {
  Deno.test(`model: ${name} gradient checkpointing gives the same gradients (with dropout) and a lower activation peak`, async () => {
    // Dropout on: the recompute must reproduce the forward's masks.
    const { model } = await loadFixtureModel(name, 0.2);
    const B = 4, T = 32;
    const ids = Int32Array.from({ length: B * T }, (_, i) => (i * 37 + 11) % 96);
    const batch: Batch = { batchSize: B, seqLen: T, inputIds: ids, labels: ids };
    await gpu.sync();
    // What lives between steps (the LoRA gradient accumulators): the baseline of the step's peak.
    const held = gpu.budget.report().byClass.activations;
    const peak = async (ckpt: boolean, seed = 3) => {
      model.gradientCheckpointing = ckpt;
      model.zeroGrad();
      await gpu.sync();
      gpu.budget.resetPeak();
      const r = await model.forwardBackward(batch, { seed });
      const p = gpu.budget.report().peakByClass.activations - held;
      return { r, p, g: await grads(model) };
    };
    const on = await peak(true);
    const off = await peak(false);
    assert.equal(on.r.lossSum, off.r.lossSum);
    for (const [name, g] of on.g) assert.ok(relError(g, off.g.get(name)!) < 1e-5, name);
    assert.ok(on.p < off.p * 0.7, `activation peak with checkpointing ${on.p} vs ${off.p}`);
    // Another seed, other masks: dropout is really on.
    const reseeded = await peak(true, 4);
    assert.ok(
      relError(
        reseeded.g.get(`model.layers.0.self_attn.q_proj.lora_A.grad`)!,
        on.g.get(`model.layers.0.self_attn.q_proj.lora_A.grad`)!,
      ) > 1e-3,
    );
    // Nothing leaks: activations return to what they were before the step.
    assert.equal(gpu.budget.report().byClass.activations, held);
    model.destroy();
  });
}

Deno.test("model: LoRA fine-tuning overfits one batch (AdamW)", async () => {
  const { model, batch } = await loadFixtureModel();
  const opt = new AdamW(
    gpu,
    model.loraLayers().flatMap((l) => [
      { name: `${l.path}.A`, param: l.a, grad: l.gradA },
      { name: `${l.path}.B`, param: l.b, grad: l.gradB },
    ]),
    { lr: 1e-2, weightDecay: 0 },
  );
  const losses: number[] = [];
  for (let step = 0; step < 30; step++) {
    model.zeroGrad();
    const { lossSum, tokens } = await model.forwardBackward(batch, { seed: step });
    losses.push(lossSum / tokens);
    await opt.step();
  }
  assert.ok(losses.at(-1)! < 0.3 * losses[0], `loss ${losses[0]} -> ${losses.at(-1)}`);
  model.destroy();
});

Deno.test("model: NaN in an adapter is reported as a non-finite loss; bad batches are named", async () => {
  const { model, batch } = await loadFixtureModel();
  await gpu.sync();
  const held = gpu.budget.report().byClass.activations;
  await assert.rejects(
    model.forwardBackward({ ...batch, inputIds: batch.inputIds.map((x) => x + 96) }),
    /inputIds\[0\] = \d+ is outside the vocabulary \[0, 96\)/,
  );
  const l = model.loraLayer("model.layers.1.mlp.down_proj");
  l.b.write(new Float32Array(l.b.size).fill(NaN));
  await assert.rejects(model.forwardBackward(batch), NonFiniteLossError);
  assert.equal(gpu.budget.report().byClass.activations, held);
  assert.throws(() => model.loraLayer("model.layers.9.mlp.up_proj"), /has no LoRA adapter/);
  model.destroy();
});
