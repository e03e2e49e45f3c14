/**
 * Which projections get LoRA adapters and how: rank, alpha, dropout, rsLoRA, init seed (PEFT's `LoraConfig`).
 *
 * @module
 */

/** The seven projections of a Llama decoder layer, by their Hugging Face module names. */
export type LoraTarget = "q_proj" | "k_proj" | "v_proj" | "o_proj" | "gate_proj" | "up_proj" | "down_proj";

/** Every projection, in layer order (the default target set). */
export const LORA_TARGETS: readonly LoraTarget[] = [
  "q_proj",
  "k_proj",
  "v_proj",
  "o_proj",
  "gate_proj",
  "up_proj",
  "down_proj",
];

/** LoRA settings (PEFT names in brackets). */
export interface LoraConfig {
  /** Rank (`r`, default 8). */
  r?: number;
  /** Scale numerator (`lora_alpha`, default 16). */
  alpha?: number;
  /** Dropout on the adapter input during training (`lora_dropout`, default 0). */
  dropout?: number;
  /** Projections to adapt (`target_modules`, default all seven). */
  targetModules?: readonly LoraTarget[];
  /** rsLoRA scaling `alpha / sqrt(r)` instead of `alpha / r` (`use_rslora`, default false). */
  useRslora?: boolean;
  /** Seed of the A initialisation and of the dropout masks (default 0). */
  seed?: number;
}

/** A {@linkcode LoraConfig} with every default filled in and checked. */
export type ResolvedLoraConfig = Required<LoraConfig> & { scale: number };

/**
 * Fills in defaults, validates, and computes the adapter scale.
 *
 * @param cfg User settings.
 * @returns The full settings with `scale = alpha / r` (or `alpha / sqrt(r)` with rsLoRA).
 * @throws {Error} For a non-positive rank, dropout outside [0, 1) or an unknown target module.
 *
 * @example
 * ```ts
 * import { resolveLoraConfig } from "@qlora/webgpu";
 * import assert from "node:assert/strict";
 * assert.equal(resolveLoraConfig({ r: 4, alpha: 8 }).scale, 2);
 * assert.equal(resolveLoraConfig({ r: 4, alpha: 8, useRslora: true }).scale, 4);
 * ```
 */
export function resolveLoraConfig(cfg: LoraConfig = {}): ResolvedLoraConfig {
  const r = cfg.r ?? 8;
  const alpha = cfg.alpha ?? 16;
  const dropout = cfg.dropout ?? 0;
  const targetModules = [...(cfg.targetModules ?? LORA_TARGETS)];
  if (!Number.isInteger(r) || r <= 0) throw new Error(`LoRA r = ${r}: expected a positive integer`);
  if (!Number.isFinite(alpha)) throw new Error(`LoRA alpha = ${alpha}: expected a number`);
  if (!(dropout >= 0 && dropout < 1)) throw new Error(`LoRA dropout = ${dropout}: expected a value in [0, 1)`);
  for (const t of targetModules) {
    if (!LORA_TARGETS.includes(t)) {
      throw new Error(`LoRA target module "${t}" is unknown; expected some of ${LORA_TARGETS.join(", ")}`);
    }
  }
  const useRslora = cfg.useRslora ?? false;
  const scale = useRslora ? alpha / Math.sqrt(r) : alpha / r;
  return { r, alpha, dropout, targetModules, useRslora, seed: cfg.seed ?? 0, scale };
}

/**
 * The Hugging Face module path of a projection, as PEFT names adapter weights.
 *
 * @param layer Decoder layer index.
 * @param target The projection.
 * @returns E.g. `model.layers.0.self_attn.q_proj` or `model.layers.3.mlp.down_proj`.
 *
 * @example
 * ```ts
 * import { loraModulePath } from "@qlora/webgpu/qlinear";
 * import assert from "node:assert/strict";
 * assert.equal(loraModulePath(2, "up_proj"), "model.layers.2.mlp.up_proj");
 * ```
 */
export function loraModulePath(layer: number, target: LoraTarget): string {
  const mlp = target === "gate_proj" || target === "up_proj" || target === "down_proj";
  return `model.layers.${layer}.${mlp ? "mlp" : "self_attn"}.${target}`;
}
