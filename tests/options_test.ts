import assert from "node:assert/strict";
import { resolve } from "node:path";
import { FINETUNE_DEFAULTS, FINETUNE_HELP, parseFinetuneArgs, runLength } from "../lib/train/options.ts";

const base = ["--model", "m", "--data", "d.jsonl", "--out", "o"];

Deno.test("options: QLoRA defaults", () => {
  const run = parseFinetuneArgs(base);
  assert.ok(run.kind === "run");
  const o = run.options;
  const { model, data, out, ...rest } = o;
  assert.deepEqual([model, data, out], ["m", "d.jsonl", "o"]);
  assert.deepEqual(rest, FINETUNE_DEFAULTS);
  assert.deepEqual(
    [o.loraR, o.loraAlpha, o.loraDropout, o.optimizer, o.lr, o.schedule, o.maxGradNorm, o.weightDecay],
    [64, 16, 0.05, "paged_adamw_32bit", 2e-4, "constant", 0.3, 0],
  );
  assert.deepEqual([o.batchSize, o.gradAccum, o.shuffle, o.checkpointing], [1, 16, true, true]);
  assert.equal(o.targetModules.length, 7);
});

Deno.test("options: every flag parses", () => {
  const run = parseFinetuneArgs([
    ...base,
    ...["--lora-r", "8", "--lora-alpha", "32", "--lora-dropout", "0", "--target-modules", "q_proj, v_proj"],
    ...[
      "--lr",
      "1e-3",
      "--schedule",
      "cosine",
      "--warmup-steps",
      "5",
      "--max-grad-norm",
      "1",
      "--weight-decay",
      "0.01",
    ],
    ...["--batch-size", "4", "--grad-accum", "2", "--steps", "100", "--epochs", "3", "--max-seq-len", "512"],
    ...["--seed", "7", "--no-shuffle", "--no-checkpointing", "--gpu-memory", "6GiB", "--page-size", "1MiB"],
    ...["--optimizer", "paged_adamw_8bit", "--save-every", "10", "--f16", "--overwrite"],
  ]);
  assert.ok(run.kind === "run");
  const o = run.options;
  assert.deepEqual(
    [o.loraR, o.loraAlpha, o.loraDropout, o.targetModules, o.lr, o.schedule, o.warmupSteps, o.maxGradNorm],
    [8, 32, 0, ["q_proj", "v_proj"], 1e-3, "cosine", 5, 1],
  );
  assert.deepEqual(
    [o.weightDecay, o.batchSize, o.gradAccum, o.steps, o.epochs, o.maxSeqLen, o.seed, o.shuffle, o.checkpointing],
    [0.01, 4, 2, 100, 3, 512, 7, false, false],
  );
  assert.deepEqual(
    [o.gpuMemory, o.pageSize, o.optimizer, o.saveEvery, o.f16, o.overwrite],
    [6 * 2 ** 30, 2 ** 20, "paged_adamw_8bit", 10, true, true],
  );
  // --init-adapter brings its own rank, alpha and targets: given as well, they are refused, not ignored.
  const init = parseFinetuneArgs([...base, "--init-adapter", "a", "--lora-dropout", "0"]);
  assert.ok(init.kind === "run" && init.options.initAdapter === "a");
  assert.deepEqual(parseFinetuneArgs(init.args).kind === "run" && parseFinetuneArgs(init.args), {
    ...init,
    options: {
      ...init.options,
      model: resolve("m"),
      data: resolve("d.jsonl"),
      out: resolve("o"),
      initAdapter: resolve("a"),
    },
  });
  assert.throws(
    () => parseFinetuneArgs([...base, "--init-adapter", "a", "--target-modules", "q_proj", "--lora-alpha", "8"]),
    /--init-adapter takes the adapter's rank, alpha and target modules .*; drop --lora-alpha and --target-modules/,
  );
  const bytes = parseFinetuneArgs([...base, "--gpu-memory", "991904B"]);
  assert.ok(bytes.kind === "run" && bytes.options.gpuMemory === 991904);
  // The saved flags re-parse to the same options (paths made absolute), with later flags winning.
  const again = parseFinetuneArgs([...run.args, "--gpu-memory", "1GiB"]);
  assert.ok(again.kind === "run");
  assert.deepEqual(again.options, {
    ...o,
    model: resolve("m"),
    data: resolve("d.jsonl"),
    out: resolve("o"),
    gpuMemory: 2 ** 30,
  });
});

Deno.test("options: help, resume, and clear errors", () => {
  assert.deepEqual(parseFinetuneArgs(["--help"]), { kind: "help" });
  assert.deepEqual(parseFinetuneArgs([...base, "-h"]), { kind: "help" });
  assert.match(FINETUNE_HELP, /--gpu-memory BYTES/);
  assert.deepEqual(parseFinetuneArgs(["--resume", "runs/a"]), { kind: "resume", out: "runs/a", overrides: [] });
  assert.deepEqual(parseFinetuneArgs(["--resume", "r", "--out", "r", "--gpu-memory", "1GiB"]), {
    kind: "resume",
    out: "r",
    overrides: ["--gpu-memory", "1GiB"],
  });
  const bad: [string[], RegExp][] = [
    [["--data", "d", "--out", "o"], /--model is required/],
    [[...base, "--lr", "fast"], /--lr "fast": expected a number ≥ 0/],
    [[...base, "--lora-r", "0"], /--lora-r "0": expected an integer ≥ 1/],
    [[...base, "--lora-r", "2.5"], /--lora-r "2.5"/],
    [[...base, "--lora-dropout", "1"], /--lora-dropout "1": expected a number in \[0, 1\)/],
    [[...base, "--schedule", "step"], /--schedule "step": expected one of constant, linear, cosine/],
    [[...base, "--optimizer", "sgd"], /--optimizer "sgd": expected one of adamw/],
    [[...base, "--gpu-memory", "6 potatoes"], /--gpu-memory: Invalid byte count "6 potatoes"/],
    [[...base, "--target-modules", "lm_head"], /--target-modules: "lm_head" is not a linear layer/],
    [[...base, "--batch"], /Unknown option '--batch'.*see --help/],
    [[...base, "extra"], /Unexpected argument 'extra'.*see --help/],
    [[...base, "--resume", "x"], /--resume "x" and --out "o" name different folders/],
    [["--resume", "o", "--lr", "1"], /only --gpu-memory and --page-size may be given \(not --lr\)/],
    [["--resume", "o", "--page-size", "big"], /--page-size: Invalid byte count "big"/],
    [[...base, "--steps", ""], /--steps "": expected an integer ≥ 1/],
  ];
  for (const [args, re] of bad) assert.throws(() => parseFinetuneArgs(args), re);
});

Deno.test("options: run length and 3% warmup rounded up", () => {
  assert.deepEqual(runLength({ steps: null, epochs: 3, warmupSteps: null }, 34), { totalSteps: 102, warmupSteps: 4 });
  assert.deepEqual(runLength({ steps: 10, epochs: 3, warmupSteps: null }, 34), { totalSteps: 10, warmupSteps: 1 });
  assert.deepEqual(runLength({ steps: 10, epochs: 1, warmupSteps: 0 }, 34), { totalSteps: 10, warmupSteps: 0 });
});
