// LLM-QAT: the dense fake-quantized layer against float64 (its STE gradients by finite differences), the
// fake-quantized forward equal between evaluation, KV-cached decoding and the training forward, and a resumed run
// bit-identical to an uninterrupted one.
import assert from "node:assert/strict";
import { join } from "node:path";
import { LlamaModel, requestGpu, Rng, Tensor } from "../mod.ts";
import { fakeQuantRowsRef, parseQatArgs, resolveQatRun, trainQat } from "../lib/qat/mod.ts";
import { parseQatBits, QatLinear } from "../lib/qlinear/mod.ts";
import { writeTinyLlama } from "../lib/testing/mod.ts";
import { generateQatData } from "../lib/qat/data.ts";
import { loadTokenizer } from "../lib/io/tokenizer.ts";
import { assertClose, finiteDifference } from "./_assert.ts";

const quiet = { writeSync: (b: Uint8Array) => b.length, isTerminal: () => false };

Deno.test("QatLinear: forward and STE gradients match float64 and finite differences through the quantizers", async () => {
  const gpu = await requestGpu();
  const rng = new Rng(21);
  const [M, N, K] = [5, 6, 40];
  const w = rng.normalArray(N * K);
  const x = rng.normalArray(M * K);
  const dy = rng.normalArray(M * N);
  const layer = new QatLinear(Tensor.fromArray(gpu, w, [N, K]), { weightBits: 4, inputBits: 8 });
  const { y, saved } = layer.forward(Tensor.fromArray(gpu, x, [M, K]), { save: true });
  const [wq, xq] = [fakeQuantRowsRef(w, K, 4), fakeQuantRowsRef(x, K, 8)];
  const mm = (a: ArrayLike<number>, b: ArrayLike<number>) =>
    Float64Array.from({ length: M * N }, (_, i) => {
      let s = 0;
      for (let k = 0; k < K; k++) s += a[Math.floor(i / N) * K + k] * b[(i % N) * K + k];
      return s;
    });
  assertClose(await y.toFloat32(), mm(xq, wq), { rtol: 1e-5, atol: 1e-5 }, "y");
  const dx = layer.backward(Tensor.fromArray(gpu, dy, [M, N]), saved!)!;
  // STE: the gradients are those of L = Σ dy · (xq · wqᵀ) with respect to the quantized operands.
  const loss = (a: ArrayLike<number>, b: ArrayLike<number>) => mm(a, b).reduce((s, v, i) => s + v * dy[i], 0);
  const fdW = finiteDifference((v) => loss(xq, v), Float64Array.from(wq));
  const fdX = finiteDifference((v) => loss(v, wq), Float64Array.from(xq));
  assertClose(await layer.grad!.toFloat32(), fdW, { atol: 1e-4 }, "dW");
  assertClose(await dx.toFloat32(), fdX, { atol: 1e-4 }, "dX");
  layer.destroy();
  gpu.destroy();
});

Deno.test("QAT: fake-quantized logits equal between evaluation, KV-cached decoding and the training forward", async () => {
  const dir = await Deno.makeTempDir();
  await writeTinyLlama(dir, { layers: 2 });
  const gpu = await requestGpu();
  const bits = parseQatBits("w4a8kv4");
  const model = await LlamaModel.load(gpu, dir, { lora: null, qat: { bits, train: true } });
  const ids = new Int32Array([1, 7, 42, 99, 5, 3]);
  const V = model.config.vocabSize;
  const fwd = await model.forward({ batchSize: 1, seqLen: ids.length, inputIds: ids, labels: ids }, { logits: true });
  const full = await fwd.logits!.toFloat32();
  fwd.logits!.destroy();
  const cache = model.createKvCache(1, ids.length);
  const steps = [await model.prefill(cache, { batchSize: 1, seqLen: 1, inputIds: ids.subarray(0, 1) })];
  for (let t = 1; t < ids.length; t++) steps.push(await model.decodeStep(cache, ids.subarray(t, t + 1)));
  cache.destroy();
  for (const [t, row] of steps.entries()) {
    assertClose(row, full.subarray(t * V, (t + 1) * V), { rtol: 1e-4, atol: 1e-5 }, `position ${t}`);
  }
  const trained = await model.forwardBackward({ batchSize: 1, seqLen: ids.length, inputIds: ids, labels: ids });
  assert.equal(trained.lossSum, fwd.lossSum, "training forward = evaluation forward");
  model.destroy();
  gpu.destroy();
  await Deno.remove(dir, { recursive: true });
});

Deno.test("qat: a run resumed from its checkpoint writes the same weights and metrics as one run through", async () => {
  const dir = await Deno.makeTempDir();
  const gpu = await requestGpu();
  await writeTinyLlama(join(dir, "m"), { layers: 1 });
  const m = await LlamaModel.load(gpu, join(dir, "m"), { lora: null, qat: { bits: parseQatBits("w16a16kv16") } });
  const data = join(dir, "gen.jsonl");
  await generateQatData(m, await loadTokenizer(join(dir, "m")), { out: data, samples: 6, maxLen: 12, batchSize: 3 });
  m.destroy();
  const args = (out: string) => ["--model", join(dir, "m"), "--data", data, "--out", out, "--steps", "4"];
  const run = async (a: string[]) => {
    const parsed = parseQatArgs(a);
    assert.ok(parsed.kind !== "help");
    await trainQat(gpu, await resolveQatRun(parsed), { sink: quiet });
  };
  await run([...args(join(dir, "a")), "--save-every", "2", "--lr", "1e-3", "--batch-size", "2"]);
  // b: the same run, its folder cut back to checkpoint-2 (as a kill after that checkpoint leaves it), resumed.
  const b = join(dir, "b");
  await Deno.mkdir(b);
  await Deno.rename(join(dir, "a", "checkpoint-2"), join(b, "checkpoint-2"));
  const lines = (await Deno.readTextFile(join(dir, "a", "metrics.jsonl"))).split("\n");
  await Deno.writeTextFile(join(b, "metrics.jsonl"), lines.slice(0, 2).join("\n") + "\n");
  await run(["--resume", b]);
  for (const f of ["model/model.safetensors", "metrics.jsonl"]) {
    const [x, y] = [await Deno.readFile(join(dir, "a", f)), await Deno.readFile(join(b, f))];
    if (f.endsWith(".jsonl")) {
      const strip = (t: Uint8Array) =>
        new TextDecoder().decode(t).split("\n").filter(Boolean).map((l) => {
          const { tokens_per_s: _, gpu_bytes: _b, ...rest } = JSON.parse(l); // timings and peak memory vary
          return rest;
        });
      assert.deepEqual(strip(y), strip(x));
    } else assert.deepEqual(y, x, f);
  }
  gpu.destroy();
  await Deno.remove(dir, { recursive: true });
});
