// The optimizer of a run over every LoRA A and B, made in one place for the trainer and the memory plan.

import type { Gpu } from "../gpu/device.ts";
import type { LoraLayer } from "../qlinear/layer.ts";
import { AdamW, type AdamWOptions } from "../optim/adamw.ts";
import { PagedAdamW, PagedAdamW8bit } from "../optim/adamw_variants.ts";
import type { FinetuneOptions } from "./options.ts";

/** The run's optimizer over `layers`' A and B (it clips by the global gradient norm inside its step). */
export function createOptimizer(
  gpu: Gpu,
  layers: readonly LoraLayer[],
  options: Pick<FinetuneOptions, "lr" | "weightDecay" | "pageSize" | "optimizer">,
): AdamW {
  const params = layers.flatMap((l) => [
    { name: `${l.path}.lora_A`, param: l.a, grad: l.gradA },
    { name: `${l.path}.lora_B`, param: l.b, grad: l.gradB },
  ]);
  const optOptions: AdamWOptions = { lr: options.lr, weightDecay: options.weightDecay };
  if (options.pageSize !== null) optOptions.pageSize = options.pageSize;
  const Optimizer = { adamw: AdamW, paged_adamw_32bit: PagedAdamW, paged_adamw_8bit: PagedAdamW8bit }[
    options.optimizer
  ];
  return new Optimizer(gpu, params, optOptions);
}
