import assert from "node:assert/strict";
import { requestGpu } from "../lib/gpu/device.ts";
import { f32ToBf16 } from "../lib/dtype.ts";
import { QuantizedCheckpoint } from "../lib/io/bnb_loader.ts";
import { readPeftAdapter, writePeftAdapter } from "../lib/io/peft.ts";
import { quantizeFolder } from "../lib/io/quantize_folder.ts";
import { readJsonFile } from "../lib/io/json_file.ts";
import { SafetensorsCheckpoint } from "../lib/io/safetensors_checkpoint.ts";
import { mergeAdapterFolder } from "../lib/merge/merge_folder.ts";
import { mergeLoraWeight, mergeLoraWeightRef } from "../lib/merge/merge_lora.ts";
import { parseMergeArgs } from "../lib/merge/options.ts";
import { LlamaModel } from "../lib/model/llama.ts";
import { uploadQuantized } from "../lib/kernels/nf4_quantize.ts";
import { quantize4bitRef } from "../lib/quant/reference.ts";
import { Rng } from "../lib/random.ts";
import { assertClose, relError } from "./_assert.ts";
import { loraFixture, QWEN3_TINY, TINY } from "./_lora_fixture.ts";
import { writeTinyWith } from "./_tiny_poisoned.ts";
import { writeTinyLlama } from "../lib/testing/tiny_llama.ts";

const gpu = await requestGpu();
// Forces row chunks of 5 rows of K = 128 floats in mergeLoraWeight.
const small = await requestGpu({ maxBindingBytes: 5 * 128 * 4 });
const dir = await loraFixture();
const SCALE = 2; // alpha 4 / r 2

Deno.test("merge: deq(W) + s·B·A on the GPU equals the TypeScript reference, in one piece and in row chunks", async () => {
  const rng = new Rng(5);
  const [N, K, r] = [37, 128, 3];
  const host = quantize4bitRef(rng.normalArray(N * K, 0, 0.05), { shape: [N, K] });
  const q = uploadQuantized(gpu, host, "w");
  const delta = { a: rng.normalArray(r * K), b: rng.normalArray(N * r), scale: 0.75 };
  const want = mergeLoraWeightRef(host, delta);
  // f32 sums of r products, then one add: within a few f32 ulps of the float64 reference.
  assertClose(await mergeLoraWeight(q, delta), want, { atol: 1e-6, rtol: 1e-6 }, "one piece");
  assertClose(
    await mergeLoraWeight(uploadQuantized(small, host, "w"), delta),
    want,
    { atol: 1e-6, rtol: 1e-6 },
    "chunks",
  );
  assert.deepEqual(await mergeLoraWeight(q, null), mergeLoraWeightRef(host, null));
  await assert.rejects(mergeLoraWeight(q, { ...delta, b: new Float32Array(5) }), /Merge w: weight \[37,128\]/);
});

Deno.test("merge folder: f32 weights equal deq(NF4(W)) + s·B·A; bf16 is its rounding; a 4-bit base gives the same", async () => {
  await mergeAdapterFolder(gpu, { model: `${dir}/model`, adapter: `${dir}/adapter`, out: `${dir}/m32`, dtype: "f32" });
  await mergeAdapterFolder(gpu, { model: `${dir}/model`, adapter: `${dir}/adapter`, out: `${dir}/m16` });
  await quantizeFolder(gpu, { input: `${dir}/model`, output: `${dir}/model-nf4` });
  await mergeAdapterFolder(gpu, {
    model: `${dir}/model-nf4`,
    adapter: `${dir}/adapter`,
    out: `${dir}/mq`,
    dtype: "f32",
  });
  const adapter = await readPeftAdapter(`${dir}/adapter`);
  using base = await SafetensorsCheckpoint.open(`${dir}/model`);
  using m32 = await SafetensorsCheckpoint.open(`${dir}/m32`);
  using m16 = await SafetensorsCheckpoint.open(`${dir}/m16`);
  using mq = await SafetensorsCheckpoint.open(`${dir}/mq`);
  assert.deepEqual(m32.names(), base.names());
  for (const name of base.names()) {
    const got = await m32.readF32(name);
    const lora = adapter.modules.get(name.replace(/\.weight$/, ""));
    if (lora) {
      const host = quantize4bitRef(await base.readF32(name), { shape: base.info(name).shape });
      const want = mergeLoraWeightRef(host, { a: lora.a, b: lora.b, scale: SCALE });
      assertClose(got, want, { atol: 1e-6, rtol: 1e-6 }, name);
    } else {
      assert.deepEqual(got, await base.readF32(name), name);
    }
    assert.deepEqual(await mq.readF32(name), got, `${name} from the 4-bit base`);
    assert.equal(m16.info(name).dtype, "BF16");
    assert.deepEqual(new Uint16Array((await m16.read(name)).slice().buffer), f32ToBf16(got), `${name} bf16`);
  }
  const config = await readJsonFile(`${dir}/m16/config.json`);
  assert.equal(config.torch_dtype, "bfloat16");
  assert.equal((await readJsonFile(`${dir}/mq/config.json`)).quantization_config, undefined);
  await Deno.stat(`${dir}/m16/tokenizer.json`);
  const model = await LlamaModel.load(gpu, `${dir}/m16`, { lora: null });
  assert.equal(model.linearLayers().length, 7);
  model.destroy();
});

Deno.test("merge folder: Qwen3's q_norm/k_norm pass through unchanged, to a plain and to a 4-bit folder, both loading", async () => {
  const q3 = await loraFixture(QWEN3_TINY);
  const args = { model: `${q3}/model`, adapter: `${q3}/adapter`, dtype: "f32" as const };
  const merged = await mergeAdapterFolder(gpu, { ...args, out: `${q3}/m32` });
  await mergeAdapterFolder(gpu, { ...args, out: `${q3}/m4`, quantize: true });
  assert.equal(merged.merged.length, 7);
  const adapter = await readPeftAdapter(`${q3}/adapter`);
  using base = await SafetensorsCheckpoint.open(`${q3}/model`);
  using m32 = await SafetensorsCheckpoint.open(`${q3}/m32`);
  using m4 = await SafetensorsCheckpoint.open(`${q3}/m4`);
  assert.deepEqual(m32.names(), base.names());
  for (const name of base.names()) {
    const lora = adapter.modules.get(name.replace(/\.weight$/, ""));
    if (!lora) {
      assert.deepEqual(await m32.readF32(name), await base.readF32(name), name);
      continue;
    }
    const host = quantize4bitRef(await base.readF32(name), { shape: base.info(name).shape });
    const want = mergeLoraWeightRef(host, { a: lora.a, b: lora.b, scale: SCALE });
    assertClose(await m32.readF32(name), want, { atol: 1e-6, rtol: 1e-6 }, name);
  }
  for (const norm of ["q_norm", "k_norm"]) {
    const name = `model.layers.0.self_attn.${norm}.weight`;
    assert.deepEqual([m4.info(name).dtype, m4.info(name).shape], ["F32", [32]], name);
    assert.deepEqual(await m4.read(name), await base.read(name), name);
  }
  assert.deepEqual((await readJsonFile(`${q3}/m4/config.json`)).architectures, ["Qwen3ForCausalLM"]);
  // The merged model computes what the adapted one did, up to quantizing the merged weights again (the same
  // quantization on load and in the 4-bit folder: equal logits); the base model alone is much further off.
  const ids = Int32Array.from([1, 70, 80, 90, 61, 40]);
  const logits = async (folder: string, withAdapter = false) => {
    const lora = withAdapter ? { r: 2, alpha: 4 } : null;
    const model = await LlamaModel.load(gpu, `${q3}/${folder}`, { lora });
    assert.ok(model.config.qkNorm);
    for (const l of model.loraLayers()) {
      model.setLoraWeights(l.path, adapter.modules.get(l.path)!.a, adapter.modules.get(l.path)!.b);
    }
    const f = await model.forward({ batchSize: 1, seqLen: ids.length, inputIds: ids }, { logits: true });
    const out = await f.logits!.toFloat32();
    f.logits!.destroy();
    model.destroy();
    return out;
  };
  const adapted = await logits("model", true);
  const fromMerged = await logits("m32");
  assert.deepEqual(await logits("m4"), fromMerged);
  const err = relError(fromMerged, adapted);
  const baseErr = relError(await logits("model"), adapted);
  assert.ok(err < baseErr / 4, `merged vs adapted rel-L2 ${err}, base vs adapted ${baseErr}`);
  await Deno.remove(q3, { recursive: true });
});

Deno.test("merge folder: errors name the adapter module and the folders", async () => {
  const args = { model: `${dir}/model`, adapter: `${dir}/adapter`, out: `${dir}/x` };
  await assert.rejects(
    mergeAdapterFolder(gpu, { ...args, model: `${dir}/none` }),
    /Model folder .*none does not exist/,
  );
  await assert.rejects(mergeAdapterFolder(gpu, { ...args, out: `${dir}/model` }), /is the model folder/);
  await Deno.mkdir(`${dir}/small`);
  await writeTinyLlama(`${dir}/small`, { layers: 1, hidden: 16, intermediate: 64, heads: 2, kvHeads: 1 });
  await assert.rejects(
    mergeAdapterFolder(gpu, { ...args, model: `${dir}/small` }),
    /q_proj is \[32, 32\]; the model's weight is \[16,16\]/,
  );
  assert.throws(() => parseMergeArgs(["--model", "m", "--out", "o"]), /--adapter is required/);
});

Deno.test("merge CLI: --quantize writes a bitsandbytes 4-bit folder that loads", async () => {
  const script = new URL("../scripts/merge.ts", import.meta.url).pathname;
  const run = (args: string[]) =>
    new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", script, ...args],
      stdout: "piped",
      stderr: "piped",
      env: { XDG_RUNTIME_DIR: "/tmp/xdg" },
    }).output();
  const out = await run(["--model", `${dir}/model`, "--adapter", `${dir}/adapter`, "--out", `${dir}/m4`, "--quantize"]);
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
  using ckpt = await QuantizedCheckpoint.open(`${dir}/m4`);
  assert.equal(ckpt.quantizedNames().length, 7);
  assert.equal((ckpt.config?.quantization_config as Record<string, unknown>).bnb_4bit_quant_type, "nf4");
  const model = await LlamaModel.load(gpu, `${dir}/m4`, { lora: null });
  model.destroy();
  const bad = await run(["--model", `${dir}/model`, "--adapter", `${dir}/nope`, "--out", `${dir}/m5`]);
  assert.equal(bad.code, 1);
  assert.match(new TextDecoder().decode(bad.stderr), /Error: Adapter folder .*nope does not exist/);
});

Deno.test("merge folder: an adapter covering only some layers and a missing or unsupported config are refused", async () => {
  const args = { model: `${dir}/model`, adapter: `${dir}/adapter`, out: `${dir}/x` };
  await writeTinyLlama(`${dir}/two`, { ...TINY, layers: 2 }); // the adapter has layer 0 only
  await assert.rejects(
    mergeAdapterFolder(gpu, { ...args, model: `${dir}/two` }),
    /adapter_model\.safetensors: no LoRA weights for model\.layers\.1\.mlp\.down_proj, which adapter_config\.json targets/,
  );
  const config = await readJsonFile(`${dir}/two/config.json`);
  await Deno.writeTextFile(`${dir}/two/config.json`, JSON.stringify({ ...config, hidden_act: "gelu" }));
  await assert.rejects(
    mergeAdapterFolder(gpu, { ...args, model: `${dir}/two` }),
    /two\/config\.json: hidden_act = "gelu"/,
  );
  await Deno.remove(`${dir}/two/config.json`);
  await assert.rejects(
    mergeAdapterFolder(gpu, { ...args, model: `${dir}/two` }),
    /two\/config\.json: cannot read the model config/,
  );
  assert.equal(await Deno.stat(args.out).catch(() => null), null);
});

Deno.test("merge folder: NaN/Inf in the base or the adapter, or in a merged or converted output, is named", async () => {
  const args = { model: `${dir}/model`, adapter: `${dir}/adapter`, out: `${dir}/x` };
  const rejects = async (opts: Partial<typeof args> & { dtype?: "f32" }, re: RegExp) => {
    await assert.rejects(mergeAdapterFolder(gpu, { ...args, ...opts }), re);
    assert.equal(await Deno.stat(args.out).catch(() => null), null);
  };
  await writeTinyWith(`${dir}/nan`, TINY, "model.norm.weight", 2, NaN);
  await rejects({ model: `${dir}/nan` }, /nan: tensor "model\.norm\.weight" \(converted\): NaN at index 2/);
  await writeTinyWith(`${dir}/nan`, TINY, "model.layers.0.self_attn.v_proj.weight", 40, Infinity);
  await rejects({ model: `${dir}/nan` }, /v_proj\.weight.*Infinity at index 40/);
  // f32's largest value is finite, but rounds to Inf in bf16: the written values are checked.
  await writeTinyWith(`${dir}/nan`, TINY, "model.layers.0.input_layernorm.weight", 7, 3.4028234663852886e38);
  await rejects({ model: `${dir}/nan` }, /input_layernorm\.weight" \(converted\): Infinity at index 7/);
  await mergeAdapterFolder(gpu, { ...args, model: `${dir}/nan`, out: `${dir}/nan32`, dtype: "f32" });

  const adapter = await readPeftAdapter(`${dir}/adapter`);
  const q = "model.layers.0.self_attn.q_proj";
  const modules = new Map(adapter.modules);
  modules.set(q, { ...modules.get(q)!, a: modules.get(q)!.a.map((x, i) => (i === 5 ? NaN : x)) });
  await writePeftAdapter(`${dir}/nan-adapter`, { config: adapter.config, modules });
  await rejects(
    { adapter: `${dir}/nan-adapter` },
    /adapter_model\.safetensors: tensor "base_model\.model\.model\.layers\.0\.self_attn\.q_proj\.lora_A\.weight": NaN at index 5/,
  );
  // Finite A and B whose product overflows f32.
  modules.set(q, { ...modules.get(q)!, a: modules.get(q)!.a.fill(1e20), b: modules.get(q)!.b.fill(1e20) });
  await writePeftAdapter(`${dir}/nan-adapter`, { config: adapter.config, modules });
  await rejects(
    { adapter: `${dir}/nan-adapter` },
    /tensor "model\.layers\.0\.self_attn\.q_proj\.weight" \(merged\): Infinity at index 0/,
  );
});
