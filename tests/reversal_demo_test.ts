import assert from "node:assert/strict";
import { requestGpu } from "../lib/gpu/device.ts";
import { readPeftAdapter } from "../lib/io/peft.ts";
import { readMetrics } from "../lib/train/metrics.ts";
import { reversalDemoFlags, runReversalDemo } from "../scripts/_reversal_demo.ts";

Deno.test("demo: the tiny model learns to reverse (loss falls 4×, held-out exact match rises), and the files are written", async () => {
  const out = await Deno.makeTempDir();
  const data = (name: string) => new URL(`../data/${name}`, import.meta.url).pathname;
  const written: Uint8Array[] = [];
  const sink = { writeSync: (b: Uint8Array) => (written.push(b), b.length), isTerminal: () => false };
  let flags: string[] = [];
  // 200 of the demo's 300 steps: past the point where the loss drops, about two minutes on lavapipe.
  const steps = 200;
  const r = await runReversalDemo(await requestGpu(), {
    out,
    trainData: data("reverse_train.jsonl"),
    testData: data("reverse_test.jsonl"),
    steps,
    evalCount: 20,
    sink,
    onTrainStart: (args) => flags = args,
  });
  assert.deepEqual(flags, reversalDemoFlags(r.modelDir, data("reverse_train.jsonl"), r.adapterDir, steps));
  for (const e of [r.before, r.after]) {
    assert.equal(e.total, 20);
    assert.equal(e.accuracy, e.correct / 20);
    assert.equal(e.outputs[0].prompt, "hfj=");
  }
  const metrics = await readMetrics(r.metricsPath);
  assert.equal(metrics.length, steps);
  assert.ok(r.lastLoss < metrics[0].loss / 4, `loss ${metrics[0].loss} → ${r.lastLoss}`);
  assert.ok(r.after.correct >= r.before.correct + 5, `exact match ${r.before.correct}/20 → ${r.after.correct}/20`);
  await Deno.stat(r.lossSvgPath);
  assert.equal((await readPeftAdapter(r.adapterDir)).config.r, 16);
  assert.match(new TextDecoder().decode(written.at(-1)), new RegExp(`step ${steps}/${steps}`));
  await Deno.remove(out, { recursive: true });
});
