// A tiny model folder with a PEFT adapter whose B is non-zero, for generation and merge tests.

import { writeTinyLlama } from "../lib/model/tiny_llama.ts";
import { type LoraWeights, writePeftAdapter } from "../lib/io/peft.ts";
import { LORA_TARGETS, loraModulePath } from "../lib/model/lora_config.ts";
import { Rng } from "../lib/random.ts";

/** Model options: 1 layer, hidden 32 (q/o 32×32, k/v 16×32, gate/up 64×32, down 32×64). */
export const TINY = { layers: 1, hidden: 32, intermediate: 64, heads: 2, kvHeads: 1, lmHeadStd: 0.2 } as const;

/** `[out, in]` of each projection of {@linkcode TINY}, in `LORA_TARGETS` order. */
export const TINY_SHAPES: [number, number][] = [[32, 32], [16, 32], [16, 32], [32, 32], [64, 32], [64, 32], [32, 64]];

/** Writes `DIR/model` and `DIR/adapter` (r 2, alpha 4, every projection, A and B ~ N(0, 0.3²)); returns DIR. */
export async function loraFixture(): Promise<string> {
  const dir = await Deno.makeTempDir();
  await writeTinyLlama(`${dir}/model`, TINY);
  const r = 2;
  const rng = new Rng(11);
  const modules = new Map<string, LoraWeights>();
  for (const [i, target] of LORA_TARGETS.entries()) {
    const [outFeatures, inFeatures] = TINY_SHAPES[i];
    modules.set(loraModulePath(0, target), {
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
