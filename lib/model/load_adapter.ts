/**
 * Putting a PEFT adapter's weights into a loaded {@linkcode LlamaModel} (for generation, or to continue
 * training from it).
 *
 * @module
 */

import { join } from "../platform/path.ts";
import { readJsonFile } from "../io/json_file.ts";
import { type LinearShape, parsePeftConfig, PEFT_CONFIG_FILE, peftToLoraConfig, readPeftAdapter } from "../io/peft.ts";
import type { LlamaModel } from "./llama.ts";
import type { LoraConfig } from "../qlinear/lora_config.ts";

/**
 * The LoRA settings to load a model with so that an adapter folder fits it (`r`, alpha, targets, rsLoRA).
 *
 * @param dir The adapter folder (with `adapter_config.json`).
 * @param seed Seed of the dropout masks (default 0).
 * @returns The settings for `LlamaModel.load`'s `lora` option.
 * @throws {Error} Naming the file when it is missing or not a supported LoRA config.
 *
 * @example
 * ```ts
 * import { adapterLoraConfig } from "@qlora/webgpu/model";
 * import assert from "node:assert/strict";
 * const dir = await Deno.makeTempDir();
 * await Deno.writeTextFile(`${dir}/adapter_config.json`, '{"peft_type": "LORA", "r": 4, "target_modules": ["q_proj"]}');
 * assert.equal((await adapterLoraConfig(dir)).r, 4);
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function adapterLoraConfig(dir: string, seed = 0): Promise<LoraConfig> {
  const path = join(dir, PEFT_CONFIG_FILE);
  return peftToLoraConfig(parsePeftConfig(await readJsonFile(path), path), seed);
}

/**
 * Reads an adapter folder and writes its A and B into the model's adapters (loaded with the adapter's settings,
 * e.g. from {@linkcode adapterLoraConfig}).
 *
 * @param model The model.
 * @param dir The adapter folder.
 * @throws {Error} If the model has no adapters, its rank differs, or the adapter does not fit the model (naming
 *   the module).
 *
 * @example Round trip through a PEFT folder
 * ```ts
 * import { LlamaModel, loadAdapterWeights, requestGpu } from "@qlora/webgpu";
 * import { adapterLoraConfig } from "@qlora/webgpu/model";
 * import { writeTinyLlama } from "@qlora/webgpu/testing";
 * import assert from "node:assert/strict";
 * const dir = await Deno.makeTempDir();
 * await writeTinyLlama(dir, { layers: 1 });
 * await Deno.writeTextFile(`${dir}/adapter_config.json`, '{"peft_type": "LORA", "r": 2, "target_modules": ["q_proj"]}');
 * const model = await LlamaModel.load(await requestGpu(), dir, { lora: await adapterLoraConfig(dir) });
 * await assert.rejects(loadAdapterWeights(model, dir), /adapter_model\.safetensors/);
 * model.destroy();
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function loadAdapterWeights(model: LlamaModel, dir: string): Promise<void> {
  const layers = model.loraLayers();
  if (!model.lora) throw new Error(`Adapter ${dir}: the model was loaded without LoRA adapters`);
  const linears = new Map<string, LinearShape>(layers.map((l) => [l.path, l]));
  const adapter = await readPeftAdapter(dir, linears);
  if (adapter.config.r !== model.lora.r) {
    throw new Error(`Adapter ${dir}: r = ${adapter.config.r}, the model's adapters have r = ${model.lora.r}`);
  }
  for (const l of layers) {
    const w = adapter.modules.get(l.path);
    if (!w) throw new Error(`Adapter ${dir}: no weights for ${l.path}`);
    l.a.write(w.a);
    l.b.write(w.b);
  }
}
