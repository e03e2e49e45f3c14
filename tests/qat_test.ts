// LLM-QAT: the dense fake-quantized layer against float64 (its STE gradients by finite differences, its frozen
// bias), the fake-quantized forward equal between evaluation, KV-cached decoding and the training forward, a resumed
// run bit-identical to an uninterrupted one, and a Qwen2-style f16 model (q/k/v biases) trained and exported.
import assert from "node:assert/strict";
import { join } from "node:path";
import { LlamaModel, requestGpu, Rng, Tensor } from "../mod.ts";
import { fakeQuantRowsRef, parseQatArgs, resolveQatRun, trainQat } from "../lib/qat/mod.ts";
import { parseQatBits, QatLinear } from "../lib/qlinear/mod.ts";
import { writeTinyLlama } from "../lib/testing/mod.ts";
import { generateQatData } from "../lib/qat/data.ts";
import { writeQatModel } from "../lib/qat/export.ts";
import { loadTokenizer } from "../lib/io/tokenizer.ts";
import { SafetensorsFile } from "../lib/io/safetensors_reader.ts";
import { type SafetensorsTensorData, writeSafetensors } from "../lib/io/safetensors_writer.ts";
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

Deno.test("QatLinear: a frozen bias is added in full precision and changes neither gradient; addTo adds into a tensor", async () => {
  const gpu = await requestGpu();
  const rng = new Rng(22);
  const [M, N, K] = [3, 5, 16];
  const [w, x, b, dy] = [rng.normalArray(N * K), rng.normalArray(M * K), rng.normalArray(N), rng.normalArray(M * N)];
  const plain = new QatLinear(Tensor.fromArray(gpu, w, [N, K]), { weightBits: 4, inputBits: 8 });
  const bias = Tensor.fromArray(gpu, b, [N], { label: "b" });
  const biased = new QatLinear(Tensor.fromArray(gpu, w, [N, K]), { weightBits: 4, inputBits: 8, bias });
  const xt = Tensor.fromArray(gpu, x, [M, K]);
  const [p, q] = [plain.forward(xt, { save: true }), biased.forward(xt, { save: true })];
  const y0 = await p.y.toFloat32();
  assert.deepEqual(await q.y.toFloat32(), y0.map((v, i) => Math.fround(v + b[i % N])));
  const dyt = Tensor.fromArray(gpu, dy, [M, N]);
  const [dx0, dx1] = [plain.backward(dyt, p.saved!)!, biased.backward(dyt, q.saved!)!];
  assert.deepEqual(await dx1.toFloat32(), await dx0.toFloat32());
  assert.deepEqual(await biased.grad!.toFloat32(), await plain.grad!.toFloat32());
  // addTo: y and dX added into existing tensors, as one f32 addition each (with and without the bias).
  const prior = rng.normalArray(M * N);
  for (const [layer, y] of [[plain, y0], [biased, await q.y.toFloat32()]] as const) {
    const into = Tensor.fromArray(gpu, prior, [M, N]);
    const r = layer.forward(xt, { save: true, addTo: into });
    assert.equal(r.y, into);
    assert.deepEqual(await into.toFloat32(), y.map((v, i) => v + prior[i]));
    const dxInto = Tensor.fromArray(gpu, x, [M, K]);
    layer.backward(dyt, r.saved!, true, dxInto);
    assert.deepEqual(await dxInto.toFloat32(), (await dx0.toFloat32()).map((v, i) => v + x[i]));
  }
  assert.throws(
    () => new QatLinear(Tensor.fromArray(gpu, w, [N, K]), { bias: Tensor.fromArray(gpu, b, [1, N], { label: "b2" }) }),
    /bias "b2" is \[1,5\] f32, expected \[5\] f32/,
  );
  plain.destroy();
  biased.destroy();
  gpu.destroy();
});

Deno.test("qat: a Qwen2-style f16 model trains with its q/k/v biases frozen and exports f16 weights", async () => {
  const dir = await Deno.makeTempDir();
  const gpu = await requestGpu();
  const m = join(dir, "m");
  await writeTinyLlama(m, { layers: 1, dtype: "f16" });
  const config = JSON.parse(await Deno.readTextFile(join(m, "config.json")));
  await Deno.writeTextFile(
    join(m, "config.json"),
    JSON.stringify({ ...config, architectures: ["Qwen2ForCausalLM"], model_type: "qwen2" }),
  );
  const file = join(m, "model.safetensors");
  const tensors: SafetensorsTensorData[] = [];
  {
    using f = await SafetensorsFile.open(file);
    for (const name of f.names()) tensors.push({ ...f.info(name), name, data: await f.read(name) });
  }
  const rng = new Rng(5);
  for (const t of tensors.filter((t) => /[qkv]_proj\.weight$/.test(t.name))) {
    const b = Float16Array.from(rng.normalArray(t.shape[0]));
    tensors.push({
      name: t.name.replace("weight", "bias"),
      dtype: "F16",
      shape: [t.shape[0]],
      data: new Uint8Array(b.buffer),
    });
  }
  await writeSafetensors(file, tensors);
  const fp = await LlamaModel.load(gpu, m, { lora: null, qat: { bits: parseQatBits("w16a16kv16") } });
  const data = join(dir, "gen.jsonl");
  await generateQatData(fp, await loadTokenizer(m), { out: data, samples: 4, maxLen: 8, batchSize: 2 });
  fp.destroy();
  const parsed = parseQatArgs([
    "--model",
    m,
    "--data",
    data,
    "--out",
    join(dir, "out"),
    "--steps",
    "2",
    "--lr",
    "1e-3",
  ]);
  assert.ok(parsed.kind === "run");
  await trainQat(gpu, await resolveQatRun(parsed), { sink: quiet });
  using src = await SafetensorsFile.open(file);
  using out = await SafetensorsFile.open(join(dir, "out", "model", "model.safetensors"));
  for (const name of ["q", "k", "v"].map((p) => `model.layers.0.self_attn.${p}_proj.bias`)) {
    assert.deepEqual(await out.read(name), await src.read(name), `${name} stays frozen`);
  }
  const q = "model.layers.0.self_attn.q_proj.weight";
  assert.equal(out.info(q).dtype, "F16");
  assert.notDeepEqual(await out.read(q), await src.read(q), "the weight trained");
  // Trained values are rounded to F16 on export; one out of its range is refused, naming the tensor.
  const big = new Map([[q, new Float32Array(out.info(q).shape[0] * out.info(q).shape[1]).fill(1e6)]]);
  await assert.rejects(
    writeQatModel(m, join(dir, "big"), big, parseQatBits("w4a8kv4")),
    /trained "model\.layers\.0\.self_attn\.q_proj\.weight": \[0\] = 1000000 is out of F16's range/,
  );
  gpu.destroy();
  await Deno.remove(dir, { recursive: true });
});
