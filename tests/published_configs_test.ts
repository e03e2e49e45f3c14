// The config.json of published models (tests/fixtures/configs) parse, with their derived shapes and parameter
// counts; the exact counts are what transformers' AutoModelForCausalLM.from_config gives (tied embeddings once).

import assert from "node:assert/strict";
import { type LlamaConfig, parseLlamaConfig } from "../mod.ts";

async function config(name: string): Promise<unknown> {
  return JSON.parse(await Deno.readTextFile(new URL(`./fixtures/configs/${name}.json`, import.meta.url)));
}

/** Parameters of a Llama-family model with this config, counted from its tensors' shapes. */
function parameters(c: LlamaConfig): number {
  const [H, I, q, kv] = [c.hiddenSize, c.intermediateSize, c.numHeads * c.headDim, c.numKvHeads * c.headDim];
  const attention = H * q + 2 * H * kv + q * H + (c.qkvBias ? q + 2 * kv : 0) + (c.qkNorm ? 2 * c.headDim : 0);
  const layer = attention + 3 * H * I + 2 * H;
  return c.vocabSize * H * (c.tieWordEmbeddings ? 1 : 2) + c.numLayers * layer + H;
}

// name: [model_type, layers, heads, kv heads, head dim, exact parameters, size in billions on the model card]
const PUBLISHED: Record<string, [string, number, number, number, number, number, number]> = {
  "SmolLM2-135M": ["llama", 30, 9, 3, 64, 134_515_008, 0.135],
  "SmolLM2-360M": ["llama", 32, 15, 5, 64, 361_821_120, 0.362],
  "SmolLM2-1.7B": ["llama", 24, 32, 32, 64, 1_711_376_384, 1.71],
  "TinyLlama-1.1B-Chat-v1.0": ["llama", 22, 32, 4, 64, 1_100_048_384, 1.1],
  "Llama-3.2-1B": ["llama", 16, 32, 8, 64, 1_235_814_400, 1.24],
  "Llama-3.2-3B": ["llama", 28, 24, 8, 128, 3_212_749_824, 3.21],
  "Llama-3.1-8B": ["llama", 32, 32, 8, 128, 8_030_261_248, 8.03],
  "Mistral-7B-v0.3": ["mistral", 32, 32, 8, 128, 7_248_023_552, 7.25],
  "Qwen2.5-0.5B": ["qwen2", 24, 14, 2, 64, 494_032_768, 0.49],
  "Qwen2.5-7B": ["qwen2", 28, 28, 4, 128, 7_615_616_512, 7.62],
  "Qwen3-0.6B": ["qwen3", 28, 16, 8, 128, 596_049_920, 0.6],
  "Qwen3-8B": ["qwen3", 36, 32, 8, 128, 8_190_735_360, 8.2],
};

for (const [name, [type, layers, heads, kvHeads, headDim, count, billions]] of Object.entries(PUBLISHED)) {
  Deno.test(`published config ${name}: parses, shapes and parameter count`, async () => {
    const c = parseLlamaConfig(await config(name), `${name}/config.json`);
    assert.deepEqual([c.modelType, c.numLayers, c.numHeads, c.numKvHeads, c.headDim], [
      type,
      layers,
      heads,
      kvHeads,
      headDim,
    ]);
    assert.equal(parameters(c), count);
    assert.ok(Math.abs(count / 1e9 - billions) < 0.01 * billions, `${count} vs the published ${billions}B`);
    assert.equal(c.qkvBias, type === "qwen2");
    assert.equal(c.qkNorm, type === "qwen3");
  });
}

Deno.test("published configs: llama3 RoPE scaling, tied embeddings and EOS ids come through", async () => {
  const l = parseLlamaConfig(await config("Llama-3.2-1B"));
  assert.deepEqual(l.ropeScaling, {
    type: "llama3",
    factor: 32,
    lowFreqFactor: 1,
    highFreqFactor: 4,
    originalMaxPositionEmbeddings: 8192,
  });
  assert.equal(l.tieWordEmbeddings, true);
  assert.equal(l.ropeTheta, 500000);
  const q = parseLlamaConfig(await config("Qwen3-0.6B"));
  assert.deepEqual([q.bosTokenId, q.eosTokenIds, q.rmsNormEps], [151643, [151645], 1e-6]);
});

Deno.test("published configs: Gemma 3, Mixtral and GPT-2 are refused naming their model_type", async () => {
  for (const [name, type] of [["gemma-3-1b-it", "gemma3_text"], ["Mixtral-8x7B-v0.1", "mixtral"], ["gpt2", "gpt2"]]) {
    const json = await config(name);
    assert.throws(
      () => parseLlamaConfig(json, `${name}/config.json`),
      new RegExp(`${name}/config\\.json: architectures = .*unsupported \\(model_type "${type}"\\)`),
    );
  }
});
