// A tiny model folder with a PEFT adapter whose B is non-zero, for generation and merge tests.

import { type TinyLlamaOptions, writeTinyLlama } from "../lib/testing/tiny_llama.ts";
import { type LoraWeights, writePeftAdapter } from "../lib/io/peft.ts";
import { SafetensorsCheckpoint } from "../lib/io/safetensors_checkpoint.ts";
import { LORA_TARGETS, loraModulePath } from "../lib/qlinear/lora_config.ts";
import { Rng } from "../lib/random.ts";

/** Model options: 1 layer, hidden 32 (q/o 32×32, k/v 16×32, gate/up 64×32, down 32×64). */
export const TINY = { layers: 1, hidden: 32, intermediate: 64, heads: 2, kvHeads: 1, lmHeadStd: 0.2 } as const;

/**
 * {@linkcode TINY} as a tied Qwen3: q/k norms, and head_dim 32 where hidden / heads is 16 (q 64×32, k/v 32×32,
 * o 32×64), as Qwen3-0.6B's 128 is twice its 1024 / 16.
 */
export const QWEN3_TINY: TinyLlamaOptions = { ...TINY, qkNorm: true, headDim: 32, tied: true };

/**
 * Writes `DIR/model` (default {@linkcode TINY}) and `DIR/adapter` (r 2, alpha 4, every projection, A and B ~
 * N(0, 0.3²)); returns DIR.
 */
export async function loraFixture(model: TinyLlamaOptions = TINY): Promise<string> {
  const dir = await Deno.makeTempDir();
  await writeTinyLlama(`${dir}/model`, model);
  // The projections' [out, in] as written, so the adapter fits whatever shapes the options give.
  using ckpt = await SafetensorsCheckpoint.open(`${dir}/model`);
  const r = 2;
  const rng = new Rng(11);
  const modules = new Map<string, LoraWeights>();
  for (const target of LORA_TARGETS) {
    const path = loraModulePath(0, target);
    const [outFeatures, inFeatures] = ckpt.info(`${path}.weight`).shape;
    modules.set(path, {
      a: rng.normalArray(r * inFeatures, 0, 0.3),
      b: rng.normalArray(outFeatures * r, 0, 0.3),
      inFeatures,
      outFeatures,
    });
  }
  const config = {
    r,
    loraAlpha: 4,
    loraDropout: 0,
    targetModules: [...LORA_TARGETS],
    useRslora: false,
    baseModelNameOrPath: null,
  };
  await writePeftAdapter(`${dir}/adapter`, { config, modules });
  return dir;
}
