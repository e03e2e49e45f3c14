/**
 * LoRA adapters in PEFT's format, so adapters move between this toolkit and Hugging Face PEFT:
 * `adapter_model.safetensors` (f32; `base_model.model.<module>.lora_A.weight` `[r, in]` and `…lora_B.weight`
 * `[out, r]`, as `get_peft_model_state_dict` names them) and `adapter_config.json` (a `LoraConfig`).
 *
 * Modules are named by their Hugging Face module path, the weight name without `.weight`, e.g.
 * `model.layers.0.self_attn.q_proj`.
 *
 * @module
 */

import { join } from "../platform/path.ts";
import { readJsonFile, writeJsonFile } from "./json_file.ts";
import { SafetensorsFile } from "./safetensors_reader.ts";
import { type SafetensorsTensorData, writeSafetensors } from "./safetensors_writer.ts";
import { LORA_TARGETS, type LoraConfig, type LoraTarget, type ResolvedLoraConfig } from "../qlinear/lora_config.ts";
import { storage } from "../platform/storage.ts";

/** File name of the adapter weights. */
export const PEFT_WEIGHTS_FILE = "adapter_model.safetensors";
/** File name of the adapter config. */
export const PEFT_CONFIG_FILE = "adapter_config.json";

/** The LoRA settings of an adapter (PEFT's `LoraConfig` fields in brackets). */
export interface PeftLoraConfig {
  /** Rank (`r`). */
  r: number;
  /** Scale numerator (`lora_alpha`). */
  loraAlpha: number;
  /** Dropout on the adapter input during training (`lora_dropout`). */
  loraDropout: number;
  /** Module names adapted, e.g. `q_proj` (`target_modules`). */
  targetModules: string[];
  /** Scale `alpha/√r` instead of `alpha/r` (`use_rslora`). */
  useRslora: boolean;
  /** The base model (`base_model_name_or_path`), or null. */
  baseModelNameOrPath: string | null;
}

/** One adapted linear layer: `y += s · B(A x)`. */
export interface LoraWeights {
  /** `[r, inFeatures]` row-major. */
  a: Float32Array;
  /** `[outFeatures, r]` row-major. */
  b: Float32Array;
  /** Input features of the layer. */
  inFeatures: number;
  /** Output features of the layer. */
  outFeatures: number;
}

/** An adapter: settings and the A/B pair of each module, by module path. */
export interface PeftAdapter {
  /** The settings. */
  config: PeftLoraConfig;
  /** A/B weights by module path (`model.layers.0.self_attn.q_proj`). */
  modules: Map<string, LoraWeights>;
}

/** Shape of a linear layer the model has, to check an adapter against. */
export interface LinearShape {
  /** Input features. */
  inFeatures: number;
  /** Output features. */
  outFeatures: number;
}

/**
 * The PEFT tensor name of a module's A or B matrix.
 *
 * @param module The module path, e.g. `model.layers.0.self_attn.q_proj`.
 * @param which `"A"` or `"B"`.
 * @returns E.g. `base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight`.
 *
 * @example
 * ```ts
 * import { peftTensorName } from "@qlora/webgpu/io";
 * import assert from "node:assert/strict";
 * assert.equal(peftTensorName("model.layers.3.mlp.down_proj", "B"), "base_model.model.model.layers.3.mlp.down_proj.lora_B.weight");
 * ```
 */
export function peftTensorName(module: string, which: "A" | "B"): string {
  return `base_model.model.${module}.lora_${which}.weight`;
}

/**
 * The model's LoRA settings for an adapter's config (`all-linear` means every projection).
 *
 * @param config The adapter's settings.
 * @param seed Seed of the dropout masks (and of A's init when the adapter is not loaded).
 * @returns A {@linkcode LoraConfig}; its resolved scale is `alpha/r`, or `alpha/√r` with `use_rslora`.
 * @throws {Error} For a target module that is not a decoder projection.
 *
 * @example The scale follows use_rslora
 * ```ts
 * import { resolveLoraConfig } from "@qlora/webgpu";
 * import { peftToLoraConfig } from "@qlora/webgpu/io";
 * import assert from "node:assert/strict";
 * const cfg = { r: 64, loraAlpha: 16, loraDropout: 0, targetModules: ["q_proj"], useRslora: false, baseModelNameOrPath: null };
 * assert.equal(resolveLoraConfig(peftToLoraConfig(cfg)).scale, 0.25);
 * assert.equal(resolveLoraConfig(peftToLoraConfig({ ...cfg, useRslora: true })).scale, 2);
 * ```
 */
export function peftToLoraConfig(config: PeftLoraConfig, seed = 0): LoraConfig {
  const all = config.targetModules.includes("all-linear");
  for (const t of config.targetModules) {
    if (!all && !LORA_TARGETS.includes(t as LoraTarget)) {
      throw new Error(`Adapter target module "${t}" is not a decoder projection (${LORA_TARGETS.join(", ")})`);
    }
  }
  return {
    r: config.r,
    alpha: config.loraAlpha,
    dropout: config.loraDropout,
    targetModules: all ? [...LORA_TARGETS] : config.targetModules as LoraTarget[],
    useRslora: config.useRslora,
    seed,
  };
}

/**
 * The adapter settings to write for the model's LoRA settings.
 *
 * @param config The model's resolved LoRA settings.
 * @param baseModelNameOrPath The base model, or null.
 * @returns The adapter's settings.
 *
 * @example
 * ```ts
 * import { resolveLoraConfig } from "@qlora/webgpu";
 * import { loraToPeftConfig } from "@qlora/webgpu/io";
 * import assert from "node:assert/strict";
 * const peft = loraToPeftConfig(resolveLoraConfig({ r: 8, alpha: 16 }), "meta-llama/Llama-2-7b-hf");
 * assert.equal(peft.loraAlpha, 16);
 * assert.equal(peft.targetModules.length, 7);
 * ```
 */
export function loraToPeftConfig(config: ResolvedLoraConfig, baseModelNameOrPath: string | null): PeftLoraConfig {
  return {
    r: config.r,
    loraAlpha: config.alpha,
    loraDropout: config.dropout,
    targetModules: [...config.targetModules],
    useRslora: config.useRslora,
    baseModelNameOrPath,
  };
}

/**
 * The `adapter_config.json` object PEFT's `LoraConfig.from_pretrained` loads.
 *
 * @param config The settings.
 * @returns A JSON-ready object (inference mode, no bias, no DoRA, default init).
 *
 * @example
 * ```ts
 * import { peftConfigJson } from "@qlora/webgpu/io";
 * import assert from "node:assert/strict";
 * const json = peftConfigJson({ r: 8, loraAlpha: 16, loraDropout: 0.05, targetModules: ["q_proj"], useRslora: false, baseModelNameOrPath: null });
 * assert.equal(json.peft_type, "LORA");
 * assert.equal(json.task_type, "CAUSAL_LM");
 * ```
 */
export function peftConfigJson(config: PeftLoraConfig): Record<string, unknown> {
  return {
    alpha_pattern: {},
    auto_mapping: null,
    base_model_name_or_path: config.baseModelNameOrPath,
    bias: "none",
    fan_in_fan_out: false,
    inference_mode: true,
    init_lora_weights: true,
    layers_pattern: null,
    layers_to_transform: null,
    lora_alpha: config.loraAlpha,
    lora_dropout: config.loraDropout,
    modules_to_save: null,
    peft_type: "LORA",
    r: config.r,
    rank_pattern: {},
    revision: null,
    target_modules: [...config.targetModules],
    task_type: "CAUSAL_LM",
    use_dora: false,
    use_rslora: config.useRslora,
  };
}

/**
 * Parses and checks an `adapter_config.json` object.
 *
 * @param json The parsed file.
 * @param source The file name, for errors.
 * @returns The settings.
 * @throws {Error} Naming the file and field for a non-LoRA adapter, or features this toolkit does not support
 *   (bias, DoRA, per-layer rank or alpha patterns, `fan_in_fan_out`, `modules_to_save`).
 *
 * @example
 * ```ts
 * import { parsePeftConfig } from "@qlora/webgpu/io";
 * import assert from "node:assert/strict";
 * const cfg = parsePeftConfig({ peft_type: "LORA", r: 4, lora_alpha: 8, target_modules: ["v_proj"] }, "a.json");
 * assert.equal(cfg.r, 4);
 * assert.throws(() => parsePeftConfig({ peft_type: "IA3" }, "a.json"), /a\.json: peft_type "IA3"/);
 * ```
 */
export function parsePeftConfig(json: Record<string, unknown>, source: string): PeftLoraConfig {
  const fail = (msg: string): never => {
    throw new Error(`${source}: ${msg}`);
  };
  if (json.peft_type !== "LORA") fail(`peft_type ${JSON.stringify(json.peft_type)} is not supported; expected "LORA"`);
  const r = json.r;
  if (typeof r !== "number" || !Number.isInteger(r) || r < 1) {
    fail(`r = ${JSON.stringify(r)}: expected a positive integer`);
  }
  const alpha = json.lora_alpha ?? 8; // PEFT's default
  if (typeof alpha !== "number" || !Number.isFinite(alpha)) {
    fail(`lora_alpha = ${JSON.stringify(alpha)}: expected a number`);
  }
  const dropout = json.lora_dropout ?? 0;
  if (typeof dropout !== "number" || !(dropout >= 0 && dropout < 1)) {
    fail(`lora_dropout = ${JSON.stringify(dropout)}: expected a number in [0, 1)`);
  }
  const bias = json.bias ?? "none";
  if (bias !== "none") fail(`bias "${bias}" is not supported; expected "none"`);
  for (const key of ["use_dora", "fan_in_fan_out"]) if (json[key] === true) fail(`${key} = true is not supported`);
  for (const key of ["rank_pattern", "alpha_pattern"]) {
    const v = json[key];
    if (v && typeof v === "object" && Object.keys(v).length > 0) {
      fail(`${key} (per-module rank/alpha) is not supported`);
    }
  }
  const extra = json.modules_to_save;
  if (Array.isArray(extra) && extra.length > 0) fail(`modules_to_save is not supported`);
  const targets = json.target_modules ?? [];
  const targetModules = typeof targets === "string" ? [targets] : targets;
  if (!Array.isArray(targetModules) || !targetModules.every((t) => typeof t === "string")) {
    fail(`target_modules = ${JSON.stringify(targets)}: expected a list of module names`);
  }
  const base = json.base_model_name_or_path;
  return {
    r: r as number,
    loraAlpha: alpha as number,
    loraDropout: dropout as number,
    targetModules: targetModules as string[],
    useRslora: json.use_rslora === true,
    baseModelNameOrPath: typeof base === "string" ? base : null,
  };
}

/**
 * Writes an adapter folder: `adapter_model.safetensors` (f32, PEFT names) and `adapter_config.json`, each to a
 * temporary name then renamed.
 *
 * @param dir The folder (created if missing).
 * @param adapter The settings and weights.
 * @throws {Error} Naming the module whose A or B does not match `r` and its features.
 *
 * @example Write and read back
 * ```ts
 * import { readPeftAdapter, writePeftAdapter } from "@qlora/webgpu";
 * import assert from "node:assert/strict";
 * const dir = await Deno.makeTempDir();
 * const config = { r: 1, loraAlpha: 2, loraDropout: 0, targetModules: ["q_proj"], useRslora: false, baseModelNameOrPath: null };
 * const w = { a: new Float32Array([1, 2]), b: new Float32Array([3, 4, 5]), inFeatures: 2, outFeatures: 3 };
 * await writePeftAdapter(dir, { config, modules: new Map([["model.layers.0.self_attn.q_proj", w]]) });
 * const back = await readPeftAdapter(dir);
 * assert.deepEqual([...back.modules.get("model.layers.0.self_attn.q_proj")!.b], [3, 4, 5]);
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function writePeftAdapter(dir: string, adapter: PeftAdapter): Promise<void> {
  const { r } = adapter.config;
  const tensors: SafetensorsTensorData[] = [];
  for (const [module, w] of adapter.modules) {
    if (w.a.length !== r * w.inFeatures || w.b.length !== w.outFeatures * r) {
      throw new Error(
        `LoRA ${module}: A has ${w.a.length} values and B ${w.b.length}, expected [${r}, ${w.inFeatures}] and ` +
          `[${w.outFeatures}, ${r}]`,
      );
    }
    const bytes = (x: Float32Array) => new Uint8Array(x.buffer, x.byteOffset, x.byteLength);
    tensors.push({ name: peftTensorName(module, "A"), dtype: "F32", shape: [r, w.inFeatures], data: bytes(w.a) });
    tensors.push({ name: peftTensorName(module, "B"), dtype: "F32", shape: [w.outFeatures, r], data: bytes(w.b) });
  }
  await storage().mkdir(dir, { recursive: true });
  await writeSafetensors(join(dir, PEFT_WEIGHTS_FILE), tensors);
  await writeJsonFile(join(dir, PEFT_CONFIG_FILE), peftConfigJson(adapter.config));
}

/**
 * Reads and checks an adapter folder written by PEFT or by {@linkcode writePeftAdapter}. A and B load unchanged
 * (as f32, from F32, F16 or BF16 files).
 *
 * @param dir The adapter folder.
 * @param linears The model's linear layers by module path; when given, every adapter module must be one of them
 *   with matching features, and every one of them whose name is in `target_modules` must be in the adapter.
 * @returns The settings and weights.
 * @throws {Error} Naming the file and tensor for names that are not LoRA A/B weights, a missing half, shapes
 *   that disagree with `r` or with the model, or a module the model does not have.
 *
 * @example A shape mismatch is named
 * ```ts
 * import { readPeftAdapter, writePeftAdapter } from "@qlora/webgpu";
 * import assert from "node:assert/strict";
 * const dir = await Deno.makeTempDir();
 * const config = { r: 1, loraAlpha: 2, loraDropout: 0, targetModules: ["q_proj"], useRslora: false, baseModelNameOrPath: null };
 * const w = { a: new Float32Array(2), b: new Float32Array(3), inFeatures: 2, outFeatures: 3 };
 * await writePeftAdapter(dir, { config, modules: new Map([["m.q_proj", w]]) });
 * const linears = new Map([["m.q_proj", { inFeatures: 4, outFeatures: 3 }]]);
 * await assert.rejects(readPeftAdapter(dir, linears), /m\.q_proj.*in_features 2.*model has 4/);
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function readPeftAdapter(dir: string, linears?: ReadonlyMap<string, LinearShape>): Promise<PeftAdapter> {
  const configPath = join(dir, PEFT_CONFIG_FILE);
  const config = parsePeftConfig(await readJsonFile(configPath), configPath);
  const path = join(dir, PEFT_WEIGHTS_FILE);
  using file = await SafetensorsFile.open(path);
  const halves = new Map<string, { A?: string; B?: string }>();
  for (const name of file.names()) {
    const m = /^base_model\.model\.(.+)\.lora_([AB])\.weight$/.exec(name);
    if (!m) {
      throw new Error(`${path}: tensor "${name}" is not a LoRA A/B weight (base_model.model.<module>.lora_A.weight)`);
    }
    const entry = halves.get(m[1]) ?? {};
    entry[m[2] as "A" | "B"] = name;
    halves.set(m[1], entry);
  }
  const { r } = config;
  const modules = new Map<string, LoraWeights>();
  for (const [module, { A, B }] of halves) {
    if (!A || !B) throw new Error(`${path}: module ${module} has lora_${A ? "A" : "B"} but no lora_${A ? "B" : "A"}`);
    const [sa, sb] = [file.info(A).shape, file.info(B).shape];
    if (sa.length !== 2 || sb.length !== 2 || sa[0] !== r || sb[1] !== r) {
      throw new Error(
        `${path}: ${module} has A [${sa}] and B [${sb}], expected [${r}, in] and [out, ${r}] (r = ${r} in ${PEFT_CONFIG_FILE})`,
      );
    }
    const want = linears?.get(module);
    if (linears && !want) throw new Error(`${path}: ${module} is not a linear layer of the model`);
    if (want && (want.inFeatures !== sa[1] || want.outFeatures !== sb[0])) {
      throw new Error(
        `${path}: ${module} has in_features ${sa[1]} and out_features ${sb[0]}; the model has ${want.inFeatures} and ` +
          `${want.outFeatures}`,
      );
    }
    modules.set(module, { a: await file.readF32(A), b: await file.readF32(B), inFeatures: sa[1], outFeatures: sb[0] });
  }
  const adapter = { config, modules };
  if (linears) checkAdapterCoverage(adapter, linears.keys(), path);
  return adapter;
}

/**
 * Checks that an adapter has weights for every module of the model that its `target_modules` names
 * (`all-linear`: every decoder projection), so an adapter covering only some layers is refused rather than
 * applied to part of the model.
 *
 * @param adapter The adapter.
 * @param modules The model's linear module paths, e.g. `model.layers.0.self_attn.q_proj`.
 * @param source The adapter's weights file, for the message.
 * @throws {Error} Naming the file and the first targeted module without weights.
 *
 * @example
 * ```ts
 * import { checkAdapterCoverage } from "@qlora/webgpu/io";
 * import assert from "node:assert/strict";
 * const config = { r: 1, loraAlpha: 2, loraDropout: 0, targetModules: ["q_proj"], useRslora: false, baseModelNameOrPath: null };
 * const w = { a: new Float32Array(2), b: new Float32Array(2), inFeatures: 2, outFeatures: 2 };
 * const adapter = { config, modules: new Map([["model.layers.0.self_attn.q_proj", w]]) };
 * const layers = ["model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.k_proj"];
 * checkAdapterCoverage(adapter, layers, "a.safetensors");
 * assert.throws(
 *   () => checkAdapterCoverage(adapter, [...layers, "model.layers.1.self_attn.q_proj"], "a.safetensors"),
 *   /a\.safetensors: no LoRA weights for model\.layers\.1\.self_attn\.q_proj/,
 * );
 * ```
 */
export function checkAdapterCoverage(adapter: PeftAdapter, modules: Iterable<string>, source: string): void {
  const targets = peftToLoraConfig(adapter.config).targetModules as readonly string[];
  for (const module of modules) {
    const name = module.slice(module.lastIndexOf(".") + 1);
    if (targets.includes(name) && !adapter.modules.has(module)) {
      throw new Error(`${source}: no LoRA weights for ${module}, which ${PEFT_CONFIG_FILE} targets (${name})`);
    }
  }
}
