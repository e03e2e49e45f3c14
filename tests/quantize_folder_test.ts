import assert from "node:assert/strict";
import { join } from "node:path";
import {
  dequantizeNF4,
  freeQuantized,
  QuantizedCheckpoint,
  quantizeFolder,
  quantizeNF4,
  requestGpu,
  Rng,
  SafetensorsCheckpoint,
  Tensor,
  writeSafetensors,
} from "../mod.ts";
import { bytesToF32 } from "../lib/gpu/mod.ts";
import { readJsonFile } from "../lib/io/mod.ts";
import { downloadQuantized } from "../lib/kernels/mod.ts";
import { dequantize4bitRef, DYNAMIC_CODE_SIGNED, NF4_CODE, quantize4bitRef } from "../lib/quant/mod.ts";
import { writeTinyLlama } from "../lib/testing/mod.ts";
import { writeTinyWith } from "./_tiny_poisoned.ts";

const gpu = await requestGpu();

async function tinyModel(opts: Parameters<typeof writeTinyLlama>[1] = {}): Promise<string> {
  const dir = await Deno.makeTempDir();
  await writeTinyLlama(join(dir, "in"), opts);
  return dir;
}

Deno.test("quantize folder: exact bitsandbytes names, dtypes, shapes and quant_state JSON", async () => {
  const dir = await tinyModel({ seed: 2, layers: 1 });
  const report = await quantizeFolder(gpu, { input: join(dir, "in"), output: join(dir, "out") });
  assert.equal(report.quantized.length, 7);
  using out = await SafetensorsCheckpoint.open(join(dir, "out"));
  const w = "model.layers.0.self_attn.k_proj.weight"; // [32, 64]: n = 2048, nb = 32
  const got = out.names().filter((n) => n.startsWith(w)).map((n) => [n, out.info(n).dtype, out.info(n).shape]);
  const qs = `${w}.quant_state.bitsandbytes__nf4`;
  const json = new TextDecoder().decode(await out.read(qs));
  assert.deepEqual(got, [
    [w, "U8", [1024, 1]],
    [`${w}.absmax`, "U8", [32]],
    [`${w}.quant_map`, "F32", [16]],
    [`${w}.nested_absmax`, "F32", [1]],
    [`${w}.nested_quant_map`, "F32", [256]],
    [qs, "U8", [json.length]],
  ]);
  assert.match(
    json,
    /^\{"quant_type": "nf4", "blocksize": 64, "dtype": "float32", "shape": \[32, 64\], "nested_blocksize": 256, "nested_dtype": "float32", "nested_offset": [-0-9.e]+\}$/,
  );
  assert.deepEqual(await out.readF32(`${w}.quant_map`), NF4_CODE);
  assert.deepEqual(await out.readF32(`${w}.nested_quant_map`), DYNAMIC_CODE_SIGNED);
  // Per quantized weight: 6 tensors; every other tensor once.
  assert.equal(out.names().length, 7 * 6 + 5);
  assert.equal(out.files[0].metadata.format, "pt");
});

Deno.test("quantize folder: save → load → dequantize equals the in-memory quantize+dequantize exactly", async () => {
  for (
    const [dtype, doubleQuant, blocksize] of [["f32", true, 64], ["bf16", false, 128], ["f16", true, 256]] as const
  ) {
    const dir = await tinyModel({ seed: 4, dtype, shards: 2, layers: 1 });
    await quantizeFolder(gpu, { input: join(dir, "in"), output: join(dir, "out"), doubleQuant, blocksize });
    using input = await SafetensorsCheckpoint.open(join(dir, "in"));
    using ckpt = await QuantizedCheckpoint.open(join(dir, "out"));
    assert.equal(ckpt.quantizedNames().length, 7);
    for (const name of ckpt.quantizedNames()) {
      const info = input.info(name);
      // In memory: the same GPU quantizer on the input tensor, then dequantize.
      const x = Tensor.fromArray(gpu, await input.read(name), info.shape, { dtype, label: name });
      const mem = await quantizeNF4(gpu, x, { blocksize, doubleQuant });
      const memDeq = dequantizeNF4(mem);
      const expected = await memDeq.toFloat32();
      // Saved, loaded, dequantized.
      const q = await ckpt.loadQuantized(gpu, name);
      assert.deepEqual([q.shape, q.blocksize, q.doubleQuant, q.quantType], [info.shape, blocksize, doubleQuant, "nf4"]);
      const loadedDeq = dequantizeNF4(q);
      assert.deepEqual(await loadedDeq.toFloat32(), expected, `${name} (${dtype}): dequantized after save/load`);
      const host = await ckpt.readHost(name);
      assert.deepEqual(host, await downloadQuantized(mem), `${name}: stored bytes`);
      // And the GPU quantizer agrees with the host reference.
      const ref = quantize4bitRef(await input.readF32(name), { shape: info.shape, dtype, blocksize, doubleQuant });
      assert.deepEqual(host, ref, `${name}: reference`);
      for (const t of [x, memDeq, loadedDeq]) t.destroy();
      freeQuantized(mem);
      freeQuantized(q);
    }
    // Everything else is a byte-identical copy, loadable as a plain tensor.
    for (const name of ckpt.plainNames()) {
      assert.ok(!ckpt.isQuantized(name));
      assert.deepEqual(await ckpt.checkpoint.read(name), await input.read(name), name);
      assert.equal(ckpt.checkpoint.info(name).dtype, input.info(name).dtype);
    }
    assert.deepEqual(ckpt.plainNames().sort(), input.names().filter((n) => !ckpt.isQuantized(n)).sort());
    const norm = await ckpt.loadTensor(gpu, "model.norm.weight");
    assert.deepEqual(await norm.toFloat32(), await input.readF32("model.norm.weight"));
    norm.destroy();
  }
});

Deno.test("quantize folder: config.json gains quantization_config; other files and the index follow", async () => {
  const dir = await tinyModel({ dtype: "bf16", shards: 3, layers: 1 });
  const report = await quantizeFolder(gpu, { input: join(dir, "in"), output: join(dir, "out") });
  assert.deepEqual(report.files, [
    "generation_config.json",
    "special_tokens_map.json",
    "tokenizer.json",
    "tokenizer_config.json",
  ]);
  for (const f of report.files) {
    assert.deepEqual(await Deno.readFile(join(dir, "out", f)), await Deno.readFile(join(dir, "in", f)), f);
  }
  const config = await readJsonFile(join(dir, "out", "config.json"));
  const before = await readJsonFile(join(dir, "in", "config.json"));
  assert.deepEqual({ ...config, quantization_config: undefined }, { ...before, quantization_config: undefined });
  assert.deepEqual(config.quantization_config, {
    _load_in_4bit: true,
    _load_in_8bit: false,
    bnb_4bit_compute_dtype: "bfloat16",
    bnb_4bit_quant_storage: "uint8",
    bnb_4bit_quant_type: "nf4",
    bnb_4bit_use_double_quant: true,
    llm_int8_enable_fp32_cpu_offload: false,
    llm_int8_has_fp16_weight: false,
    llm_int8_skip_modules: null,
    llm_int8_threshold: 6,
    load_in_4bit: true,
    load_in_8bit: false,
    quant_method: "bitsandbytes",
  });
  assert.match(await Deno.readTextFile(join(dir, "out", "config.json")), /"llm_int8_threshold": 6\.0,/);
  const index = await readJsonFile(join(dir, "out", "model.safetensors.index.json"));
  const map = index.weight_map as Record<string, string>;
  using out = await SafetensorsCheckpoint.open(join(dir, "out"));
  assert.equal(out.files.length, 3);
  assert.deepEqual(Object.keys(map).sort(), out.names().sort());
  for (const [name, file] of Object.entries(map)) assert.equal(out.fileOf(name).path, join(dir, "out", file));
  const total = out.names().reduce((a, n) => a + out.info(n).end - out.info(n).begin, 0);
  assert.equal((index.metadata as { total_size: number }).total_size, total);
});

Deno.test("quantize folder: --modules subset lists the other linear modules in llm_int8_skip_modules", async () => {
  const dir = await tinyModel({ layers: 1 });
  await Deno.remove(join(dir, "in", "tokenizer.json"));
  const report = await quantizeFolder(gpu, {
    input: join(dir, "in"),
    output: join(dir, "out"),
    modules: ["q_proj", "v_proj"],
  });
  assert.deepEqual(report.quantized, [
    "model.layers.0.self_attn.q_proj.weight",
    "model.layers.0.self_attn.v_proj.weight",
  ]);
  const config = await readJsonFile(join(dir, "out", "config.json"));
  assert.deepEqual((config.quantization_config as Record<string, unknown>).llm_int8_skip_modules, [
    "down_proj",
    "embed_tokens",
    "gate_proj",
    "k_proj",
    "lm_head",
    "o_proj",
    "up_proj",
  ]);
  assert.ok(!(await Array.fromAsync(Deno.readDir(join(dir, "out")))).some((e) => e.name === "tokenizer.json"));
});

Deno.test("quantize folder: works without config.json, on any safetensors file names", async () => {
  const dir = await tinyModel({ layers: 1 });
  for (const f of ["config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json"]) {
    await Deno.remove(join(dir, "in", f));
  }
  await Deno.rename(join(dir, "in", "model.safetensors"), join(dir, "in", "weights.safetensors"));
  const report = await quantizeFolder(gpu, { input: join(dir, "in"), output: join(dir, "out") });
  assert.equal(report.quantized.length, 7);
  const names = (await Array.fromAsync(Deno.readDir(join(dir, "out")))).map((e) => e.name).sort();
  assert.deepEqual(names, ["special_tokens_map.json", "weights.safetensors"]);
});

Deno.test("quantize folder: by default the listed modules present are quantized; none present is an error", async () => {
  const dir = await Deno.makeTempDir();
  const f32 = (n: number) => new Uint8Array(new Rng(4).normalArray(n).buffer);
  await Deno.mkdir(join(dir, "in"));
  await writeSafetensors(join(dir, "in", "model.safetensors"), [
    { name: "h.0.attn.q_proj.weight", dtype: "F32", shape: [8, 64], data: f32(512) },
    { name: "h.0.attn.v_proj.weight", dtype: "F32", shape: [8, 64], data: f32(512) },
    { name: "h.0.mlp.c_fc.weight", dtype: "F32", shape: [8, 64], data: f32(512) },
  ]);
  const report = await quantizeFolder(gpu, { input: join(dir, "in"), output: join(dir, "out") });
  assert.deepEqual(report.quantized, ["h.0.attn.q_proj.weight", "h.0.attn.v_proj.weight"]);
  assert.deepEqual(report.copied, ["h.0.mlp.c_fc.weight"]);
  await assert.rejects(
    quantizeFolder(gpu, { input: join(dir, "in"), output: join(dir, "o"), modules: ["q_proj", "k_proj"] }),
    /no 2-D float "<module>\.weight" tensor for module\(s\) k_proj/,
  );
  await Deno.mkdir(join(dir, "none"));
  await writeSafetensors(join(dir, "none", "model.safetensors"), [
    { name: "h.0.mlp.c_fc.weight", dtype: "F32", shape: [8, 64], data: f32(512) },
  ]);
  await assert.rejects(
    quantizeFolder(gpu, { input: join(dir, "none"), output: join(dir, "o") }),
    /none: no 2-D float "<module>\.weight" tensor for module\(s\) q_proj, k_proj, v_proj/,
  );
  await Deno.remove(dir, { recursive: true });
});

Deno.test("quantize folder: clear errors for bad input", async () => {
  const dir = await tinyModel({ layers: 1 });
  const input = join(dir, "in");
  await assert.rejects(
    quantizeFolder(gpu, { input: join(dir, "nope"), output: join(dir, "o") }),
    /Input folder .*nope does not exist/,
  );
  await assert.rejects(quantizeFolder(gpu, { input, output: input }), /is the input folder/);
  await assert.rejects(quantizeFolder(gpu, { input, output: join(dir, "o"), blocksize: 96 }), /Block size 96/);
  await assert.rejects(
    quantizeFolder(gpu, { input, output: join(dir, "o"), modules: ["q_proj", "qkv_proj"] }),
    /no 2-D float "<module>\.weight" tensor for module\(s\) qkv_proj/,
  );
  const empty = await Deno.makeTempDir();
  await assert.rejects(quantizeFolder(gpu, { input: empty, output: join(dir, "o") }), /no \.safetensors files/);
  await quantizeFolder(gpu, { input, output: join(dir, "q") });
  await assert.rejects(quantizeFolder(gpu, { input: join(dir, "q"), output: join(dir, "qq") }), /already quantized/);
});

Deno.test("quantize script: runs end to end, --help, and a missing --model exits non-zero with a clear error", async () => {
  const dir = await tinyModel({ layers: 1, dtype: "bf16" });
  const script = new URL("../scripts/quantize.ts", import.meta.url).pathname;
  const run = async (...args: string[]) => {
    const out = await new Deno.Command(Deno.execPath(), { args: ["run", "-A", script, ...args] }).output();
    return {
      code: out.code,
      stdout: new TextDecoder().decode(out.stdout),
      stderr: new TextDecoder().decode(out.stderr),
    };
  };
  const ok = await run("--model", join(dir, "in"), "--out", join(dir, "out"), "--block-size", "128");
  assert.equal(ok.code, 0, ok.stderr);
  assert.match(ok.stderr, /\[ 1\/12\] copy lm_head\.weight \([0-9.]+ MB\/s\)/);
  assert.match(ok.stderr, /Done: 7 weights quantized, 5 tensors and 4 files copied/);
  using ckpt = await QuantizedCheckpoint.open(join(dir, "out"));
  assert.equal((await ckpt.readHost("model.layers.0.mlp.down_proj.weight")).state.blocksize, 128);

  const help = await run("--help");
  assert.equal(help.code, 0);
  assert.match(help.stdout, /Usage: deno task quantize --model IN --out OUT/);
  const missing = await run("--out", join(dir, "x"));
  assert.notEqual(missing.code, 0);
  assert.match(missing.stderr, /error: --model IN is required/);
  const unknown = await run("--model", join(dir, "in"), "--out", join(dir, "y"), "--bogus");
  assert.notEqual(unknown.code, 0);
  assert.match(unknown.stderr, /error: .*bogus/);
  const badDir = await run("--model", join(dir, "missing"), "--out", join(dir, "z"));
  assert.equal(badDir.code, 1);
  assert.match(badDir.stderr, /error: Input folder .*missing does not exist/);
});

Deno.test("quantize folder: bf16 weights record their source dtype and dequantize close to the input", async () => {
  const dir = await tinyModel({ layers: 1, dtype: "bf16" });
  await quantizeFolder(gpu, { input: join(dir, "in"), output: join(dir, "out") });
  using ckpt = await QuantizedCheckpoint.open(join(dir, "out"));
  const host = await ckpt.readHost("model.layers.0.self_attn.q_proj.weight");
  assert.equal(host.state.dtype, "bf16");
  using input = await SafetensorsCheckpoint.open(join(dir, "in"));
  const x = bytesToF32(await input.read("model.layers.0.self_attn.q_proj.weight"), "bf16");
  const deq = dequantize4bitRef(host);
  let err = 0;
  for (let i = 0; i < x.length; i++) err = Math.max(err, Math.abs(deq[i] - x[i]));
  assert.ok(err < 0.03, `NF4 error ${err}`); // weights are N(0, 0.02²): |x| < ~0.1, half a code step < 0.03
});

Deno.test("loader: packed codes stored in another bnb_4bit_quant_storage dtype load from their bytes", async () => {
  const dir = await tinyModel({ layers: 1 });
  await quantizeFolder(gpu, { input: join(dir, "in"), output: join(dir, "out") });
  const w = "model.layers.0.self_attn.q_proj.weight"; // 4096 values: 2048 bytes = BF16 [1024, 1]
  {
    using out = await SafetensorsCheckpoint.open(join(dir, "out"));
    const tensors = [];
    for (const name of out.names()) {
      const info = out.info(name);
      const shape = name === w ? [info.shape[0] / 2, 1] : info.shape;
      tensors.push({ name, dtype: name === w ? "BF16" as const : info.dtype, shape, data: await out.read(name) });
    }
    await writeSafetensors(join(dir, "bf16-storage.safetensors"), tensors);
  }
  using ckpt = await QuantizedCheckpoint.open(join(dir, "bf16-storage.safetensors"));
  using ref = await QuantizedCheckpoint.open(join(dir, "out"));
  assert.equal(ckpt.checkpoint.info(w).dtype, "BF16");
  assert.deepEqual(await ckpt.readHost(w), await ref.readHost(w));
});

Deno.test("quantize folder: odd sizes, partial blocks, >256 blocks; 1-D and integer tensors are copied", async () => {
  const dir = await Deno.makeTempDir();
  const rng = new Rng(9);
  const f32 = (n: number) => new Uint8Array(rng.normalArray(n).buffer);
  await Deno.mkdir(join(dir, "in"));
  await writeSafetensors(join(dir, "in", "any.safetensors"), [
    { name: "enc.q_proj.weight", dtype: "F32", shape: [7, 9], data: f32(63) }, // odd n, one partial block
    { name: "enc.up_proj.weight", dtype: "F32", shape: [128, 160], data: f32(20480) }, // 320 blocks
    { name: "enc.k_proj.weight", dtype: "F32", shape: [12], data: f32(12) }, // 1-D: copied
    { name: "enc.v_proj.weight", dtype: "I32", shape: [2, 2], data: new Uint8Array(16) }, // not float: copied
  ]);
  const report = await quantizeFolder(gpu, {
    input: join(dir, "in"),
    output: join(dir, "out"),
    modules: ["q_proj", "up_proj"],
  });
  assert.deepEqual(report.quantized, ["enc.q_proj.weight", "enc.up_proj.weight"]);
  using input = await SafetensorsCheckpoint.open(join(dir, "in"));
  using ckpt = await QuantizedCheckpoint.open(join(dir, "out"));
  const c = ckpt.checkpoint;
  assert.deepEqual(c.info("enc.q_proj.weight").shape, [32, 1]);
  assert.deepEqual(c.info("enc.up_proj.weight.nested_absmax").shape, [2]);
  for (const name of report.quantized) {
    const info = input.info(name);
    const ref = quantize4bitRef(await input.readF32(name), { shape: info.shape });
    assert.deepEqual(await ckpt.readHost(name), ref, name);
  }
  for (const name of ["enc.k_proj.weight", "enc.v_proj.weight"]) {
    assert.deepEqual(await c.read(name), await input.read(name), name);
  }
});

Deno.test("quantize folder: NaN/Inf in a copied float tensor or a quantized weight is named; no output is left", async () => {
  const dir = await Deno.makeTempDir();
  const input = join(dir, "in");
  const cases: [Parameters<typeof writeTinyWith>[1], string, number, number, RegExp][] = [
    [{ layers: 1 }, "model.norm.weight", 3, NaN, /model\.safetensors: tensor "model\.norm\.weight": NaN at index 3/],
    [
      { layers: 1, dtype: "bf16" },
      "model.embed_tokens.weight",
      640,
      Infinity,
      /embed_tokens\.weight": Infinity at index 640/,
    ],
    [{ layers: 1, dtype: "f16" }, "lm_head.weight", 9, -Infinity, /lm_head\.weight": -Infinity at index 9/],
    [{ layers: 1 }, "model.layers.0.self_attn.o_proj.weight", 12, NaN, /o_proj\.weight.*NaN at index 12/],
  ];
  for (const [opts, name, index, value, re] of cases) {
    await writeTinyWith(input, opts, name, index, value);
    await assert.rejects(quantizeFolder(gpu, { input, output: join(dir, "q") }), re, name);
    assert.equal(await Deno.stat(join(dir, "q")).catch(() => null), null, name);
  }
  await Deno.remove(dir, { recursive: true });
});
