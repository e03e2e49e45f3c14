/**
 * The LLM-QAT table of `bench/RESULTS.md`, on a model that has learned something: the reversal demo's tiny Llama
 * fine-tuned (QLoRA) to reverse three-letter words, its adapter merged into an f32 folder, is the full-precision
 * teacher. For full precision, round-to-nearest PTQ and LLM-QAT at each bit setting: perplexity and mean
 * KL(teacher ‖ model) per token on held-out generated data (another seed than the training data), and exact-match
 * accuracy on held-out reversal prompts (`data/reverse_test.jsonl`).
 * `deno run -A bench/qat_table.ts [OUT_DIR] [QAT_LR]` prints the markdown table.
 *
 * @module
 */

import { join } from "node:path";
import { LlamaModel, loadTokenizer, requestGpu } from "../mod.ts";
import { FULL_PRECISION, parseQatBits } from "../lib/qlinear/mod.ts";
import {
  evaluate,
  generateQatData,
  parseQatArgs,
  readGeneratedExamples,
  resolveQatRun,
  trainQat,
} from "../lib/qat/mod.ts";
import { exactMatchAccuracy } from "../lib/data/eval.ts";
import { readJsonl } from "../lib/data/records.ts";
import { TextGenerator } from "../lib/generate/text_generator.ts";
import { mergeAdapterFolder } from "../lib/merge/merge_folder.ts";
import { runReversalDemo } from "../scripts/_reversal_demo.ts";

const DEMO_STEPS = 200;
const [TRAIN, HELDOUT, LEN] = [128, 32, 24];
const QAT_STEPS = 48;
const BITS = ["w4a8kv4", "w4a8kv8", "w4a16kv16", "w8a8kv8"];

const dir = Deno.args[0] ?? await Deno.makeTempDir();
const lr = Deno.args[1] ?? "1e-4";
const quiet = { writeSync: (b: Uint8Array) => b.length, isTerminal: () => false };
const data = (f: string) => new URL(`../data/${f}`, import.meta.url).pathname;
const t0 = performance.now();
const gpu = await requestGpu();

const model = join(dir, "teacher");
// A teacher left by an earlier run in OUT_DIR is reused (tuning QAT needs no new one).
if (!(await Deno.stat(join(model, "config.json")).catch(() => null))) {
  const demo = await runReversalDemo(gpu, {
    out: join(dir, "demo"),
    trainData: data("reverse_train.jsonl"),
    testData: data("reverse_test.jsonl"),
    steps: DEMO_STEPS,
    evalCount: 1,
    sink: quiet,
  });
  console.log(`QLoRA reversal training: ${DEMO_STEPS} steps, ${demo.trainSeconds.toFixed(0)} s`);
  await mergeAdapterFolder(gpu, { model: demo.modelDir, adapter: demo.adapterDir, out: model, dtype: "f32" });
}
const fp = await LlamaModel.load(gpu, model, { lora: null, qat: { bits: FULL_PRECISION } });
const tok = await loadTokenizer(model);
for (const f of ["train.jsonl", "heldout.jsonl"]) await Deno.remove(join(dir, f)).catch(() => {});
await generateQatData(fp, tok, { out: join(dir, "train.jsonl"), samples: TRAIN, maxLen: LEN, batchSize: 32 });
const gen = { out: join(dir, "heldout.jsonl"), samples: HELDOUT, maxLen: LEN, batchSize: 32, seed: 1 };
await generateQatData(fp, tok, gen);
const heldout = await readGeneratedExamples(gen.out, LEN);
const pairs = (await readJsonl(data("reverse_test.jsonl"))).flatMap((r) => r.kind === "prompt" ? [r] : []).slice(
  0,
  100,
);

const row = async (label: string, dirOf: string, bits: string) => {
  const qat = { bits: parseQatBits(bits) };
  const m = await LlamaModel.load(gpu, dirOf, { lora: null, qat });
  const r = await evaluate(m, heldout, fp);
  m.destroy();
  const g = await TextGenerator.load(gpu, dirOf, null, qat.bits);
  const acc = await exactMatchAccuracy(pairs, async (p) => (await g.complete(p, { maxNewTokens: 5 })).text);
  g.destroy();
  const cells = [
    label,
    bits.toUpperCase(),
    r.perplexity.toFixed(3),
    r.kl!.toExponential(3),
    `${acc.correct}/${pairs.length}`,
  ];
  return `| ${cells.join(" | ")} |`;
};
const lines = ["| Method | #Bits | Perplexity | KL to teacher | Reversal exact match |", "|---|---|---|---|---|"];
lines.push(await row("Full precision", model, "w16a16kv16"));
for (const bits of BITS) {
  lines.push(await row("RTN (PTQ)", model, bits));
  const out = join(dir, `qat-${bits}`);
  await Deno.remove(out, { recursive: true }).catch(() => {});
  const parsed = parseQatArgs([
    ...["--model", model, "--data", join(dir, "train.jsonl"), "--out", out, "--bits", bits],
    ...["--steps", String(QAT_STEPS), "--batch-size", "8", "--lr", lr, "--save-every", "0"],
  ]);
  if (parsed.kind !== "run") throw new Error("bad flags");
  await trainQat(gpu, await resolveQatRun(parsed), { sink: quiet });
  lines.push(await row("LLM-QAT", join(out, "model"), bits));
}
console.log(lines.join("\n"));
console.log(`\nAll in ${((performance.now() - t0) / 1000).toFixed(0)} s`);
fp.destroy();
