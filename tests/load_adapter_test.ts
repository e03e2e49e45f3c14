import assert from "node:assert/strict";
import { requestGpu } from "../lib/gpu/device.ts";
import { readPeftAdapter } from "../lib/io/peft.ts";
import { LlamaModel } from "../lib/model/llama.ts";
import { adapterLoraConfig, loadAdapterWeights } from "../lib/model/load_adapter.ts";
import { parseFinetuneArgs } from "../lib/train/options.ts";
import { finetune, resolveFinetuneRun } from "../lib/train/trainer.ts";
import { loraFixture } from "./_lora_fixture.ts";

const gpu = await requestGpu();
const dir = await loraFixture();

Deno.test("load adapter: A and B land in the model's adapters; a rank mismatch is named", async () => {
  const file = await readPeftAdapter(`${dir}/adapter`);
  const lora = await adapterLoraConfig(`${dir}/adapter`);
  assert.deepEqual([lora.r, lora.alpha, lora.targetModules?.length], [2, 4, 7]);
  const model = await LlamaModel.load(gpu, `${dir}/model`, { lora });
  await loadAdapterWeights(model, `${dir}/adapter`);
  for (const l of model.loraLayers()) {
    assert.deepEqual(await l.a.toFloat32(), file.modules.get(l.path)!.a, l.path);
    assert.deepEqual(await l.b.toFloat32(), file.modules.get(l.path)!.b, l.path);
  }
  model.destroy();
  const other = await LlamaModel.load(gpu, `${dir}/model`, { lora: { ...lora, r: 4 } });
  await assert.rejects(loadAdapterWeights(other, `${dir}/adapter`), /r = 2, the model.s adapters have r = 4/);
  other.destroy();
});

Deno.test("load adapter: the trainer's --init-adapter starts from the adapter (lr 0 leaves it unchanged)", async () => {
  await Deno.writeTextFile(`${dir}/d.jsonl`, '{"prompt": "ab=", "completion": "ba"}\n');
  const parsed = parseFinetuneArgs([
    ...[
      "--model",
      `${dir}/model`,
      "--data",
      `${dir}/d.jsonl`,
      "--out",
      `${dir}/run`,
      "--init-adapter",
      `${dir}/adapter`,
    ],
    ...["--lr", "0", "--steps", "1", "--grad-accum", "1", "--save-every", "0"],
  ]);
  assert.ok(parsed.kind === "run");
  const sink = { writeSync: (b: Uint8Array) => b.length, isTerminal: () => false };
  await finetune(gpu, await resolveFinetuneRun(parsed), { sink });
  const [a, b] = [await readPeftAdapter(`${dir}/adapter`), await readPeftAdapter(`${dir}/run`)];
  assert.equal(b.config.r, 2);
  for (const [m, w] of a.modules) assert.deepEqual(b.modules.get(m), w, m);
});
