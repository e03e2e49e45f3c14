import assert from "node:assert/strict";
import { requestGpu } from "../lib/gpu/device.ts";
import { readPeftAdapter } from "../lib/io/peft.ts";
import { reversalDemoFlags, runReversalDemo } from "../scripts/_reversal_demo.ts";

Deno.test("demo: a few steps on a small model report accuracy before and after, and the files written", async () => {
  const out = await Deno.makeTempDir();
  const data = new URL("../data/reverse_test.jsonl", import.meta.url).pathname;
  const written: Uint8Array[] = [];
  const sink = { writeSync: (b: Uint8Array) => (written.push(b), b.length), isTerminal: () => false };
  let flags: string[] = [];
  const r = await runReversalDemo(await requestGpu(), {
    out,
    trainData: data,
    testData: data,
    steps: 3,
    evalCount: 4,
    hidden: 32,
    sink,
    onTrainStart: (args) => flags = args,
  });
  assert.deepEqual(flags, reversalDemoFlags(r.modelDir, data, r.adapterDir, 3));
  for (const e of [r.before, r.after]) {
    assert.equal(e.total, 4);
    assert.equal(e.accuracy, e.correct / 4);
    assert.equal(e.outputs[0].prompt, "hfj=");
  }
  assert.ok(Number.isFinite(r.lastLoss));
  await Deno.stat(r.lossSvgPath);
  await Deno.stat(r.metricsPath);
  assert.equal((await readPeftAdapter(r.adapterDir)).config.r, 16);
  assert.match(new TextDecoder().decode(written.at(-1)), /step 3\/3/);
  await Deno.remove(out, { recursive: true });
});
