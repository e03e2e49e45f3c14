// A tiny model folder and a ten-line mixed-format data file for fine-tuning tests, and the flags of a short run.

import { writeTinyLlama } from "../lib/testing/tiny_llama.ts";

/** Writes `DIR/model` (1 layer, hidden 32) and `DIR/d.jsonl`; returns DIR. */
export async function finetuneFixture(): Promise<string> {
  const dir = await Deno.makeTempDir();
  await writeTinyLlama(`${dir}/model`, { layers: 1, hidden: 32, intermediate: 64, heads: 2, kvHeads: 1 });
  const words = ["abc", "xyz", "hello", "qr", "mnop", "stu", "de", "fghij", "kl", "vw"];
  const lines = words.map((w, i) =>
    i % 3 === 0 ? { text: `${w} ${w}` } : { prompt: `${w}=`, completion: [...w].reverse().join("") }
  );
  await Deno.writeTextFile(`${dir}/d.jsonl`, lines.map((l) => JSON.stringify(l)).join("\n") + "\n");
  return dir;
}

/** Flags of a short run into `DIR/OUT` (LoRA r 4 with dropout, batch 2 × 2, checkpoints every 2 steps). */
export function finetuneFlags(dir: string, out: string, steps: number): string[] {
  return [
    ...["--model", `${dir}/model`, "--data", `${dir}/d.jsonl`, "--out", `${dir}/${out}`],
    ...["--lora-r", "4", "--lora-dropout", "0.1", "--batch-size", "2", "--grad-accum", "2", "--steps", `${steps}`],
    ...["--save-every", "2", "--lr", "1e-2", "--max-grad-norm", "0.3", "--optimizer", "adamw", "--seed", "3"],
  ];
}
