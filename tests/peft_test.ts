import assert from "node:assert/strict";
import {
  checkAdapterCoverage,
  loraToPeftConfig,
  parsePeftConfig,
  peftConfigJson,
  type PeftLoraConfig,
  peftToLoraConfig,
  readPeftAdapter,
  writePeftAdapter,
} from "../lib/io/peft.ts";
import { SafetensorsFile } from "../lib/io/safetensors_reader.ts";
import { writeSafetensors } from "../lib/io/safetensors_writer.ts";
import { Rng } from "../lib/random.ts";
import { resolveLoraConfig } from "../lib/qlinear/lora_config.ts";

const config: PeftLoraConfig = {
  r: 2,
  loraAlpha: 16,
  loraDropout: 0.05,
  targetModules: ["q_proj", "down_proj"],
  useRslora: false,
  baseModelNameOrPath: "tiny",
};
const rng = new Rng(5);
const q = { a: rng.normalArray(2 * 4), b: rng.normalArray(6 * 2), inFeatures: 4, outFeatures: 6 };
const down = { a: rng.normalArray(2 * 8), b: rng.normalArray(4 * 2), inFeatures: 8, outFeatures: 4 };
const linears = new Map([
  ["model.layers.0.self_attn.q_proj", { inFeatures: 4, outFeatures: 6 }],
  ["model.layers.0.self_attn.k_proj", { inFeatures: 4, outFeatures: 2 }],
  ["model.layers.0.mlp.down_proj", { inFeatures: 8, outFeatures: 4 }],
]);

async function withDir(fn: (dir: string) => Promise<void>) {
  const dir = await Deno.makeTempDir();
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("peft: writes PEFT names, f32 shapes [r,in]/[out,r] and a LoraConfig; reads back unchanged", async () => {
  await withDir(async (dir) => {
    const modules = new Map([["model.layers.0.self_attn.q_proj", q], ["model.layers.0.mlp.down_proj", down]]);
    await writePeftAdapter(`${dir}/out`, { config, modules });
    assert.deepEqual([...Deno.readDirSync(`${dir}/out`)].map((e) => e.name).sort(), [
      "adapter_config.json",
      "adapter_model.safetensors",
    ]);
    {
      using f = await SafetensorsFile.open(`${dir}/out/adapter_model.safetensors`);
      const a = f.info("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight");
      const b = f.info("base_model.model.model.layers.0.mlp.down_proj.lora_B.weight");
      assert.deepEqual([a.dtype, a.shape, b.dtype, b.shape], ["F32", [2, 4], "F32", [4, 2]]);
      assert.equal(f.metadata.format, "pt");
    }
    const json = JSON.parse(await Deno.readTextFile(`${dir}/out/adapter_config.json`));
    assert.deepEqual(
      [json.peft_type, json.task_type, json.r, json.lora_alpha, json.lora_dropout, json.bias, json.use_rslora],
      ["LORA", "CAUSAL_LM", 2, 16, 0.05, "none", false],
    );
    assert.deepEqual(json.target_modules, ["q_proj", "down_proj"]);
    assert.equal(json.base_model_name_or_path, "tiny");
    assert.equal(json.fan_in_fan_out, false);
    const back = await readPeftAdapter(`${dir}/out`, linears); // k_proj is not targeted, so it may be absent
    assert.deepEqual(back.config, config);
    assert.deepEqual(back.modules.get("model.layers.0.self_attn.q_proj"), q);
    assert.deepEqual(back.modules.get("model.layers.0.mlp.down_proj"), down);
  });
});

Deno.test("peft: to and from the model's LoRA settings; scale alpha/r, alpha/sqrt(r) only with use_rslora", () => {
  const lora = resolveLoraConfig(peftToLoraConfig(config, 3));
  assert.deepEqual([lora.r, lora.alpha, lora.dropout, lora.targetModules, lora.seed], [
    2,
    16,
    0.05,
    config.targetModules,
    3,
  ]);
  assert.equal(lora.scale, 8);
  assert.deepEqual(loraToPeftConfig(lora, "tiny"), config);
  const parsed = parsePeftConfig({ ...peftConfigJson(config), use_rslora: true }, "c.json");
  assert.equal(resolveLoraConfig(peftToLoraConfig(parsed)).scale, 16 / Math.SQRT2);
  assert.equal(peftToLoraConfig({ ...config, targetModules: ["all-linear"] }).targetModules?.length, 7);
  assert.throws(
    () => peftToLoraConfig({ ...config, targetModules: ["lm_head"] }),
    /"lm_head" is not a decoder projection/,
  );
});

Deno.test("peft: config validation names the file and the field", () => {
  const base = peftConfigJson(config);
  const bad: [Record<string, unknown>, RegExp][] = [
    [{ ...base, peft_type: "IA3" }, /c\.json: peft_type "IA3" is not supported/],
    [{ ...base, r: 0 }, /c\.json: r = 0: expected a positive integer/],
    [{ ...base, lora_alpha: "x" }, /lora_alpha = "x"/],
    [{ ...base, bias: "all" }, /bias "all" is not supported/],
    [{ ...base, use_dora: true }, /use_dora = true is not supported/],
    [{ ...base, fan_in_fan_out: true }, /fan_in_fan_out = true/],
    [{ ...base, rank_pattern: { q_proj: 4 } }, /rank_pattern/],
    [{ ...base, modules_to_save: ["lm_head"] }, /modules_to_save/],
    [{ ...base, target_modules: [1] }, /target_modules = \[1\]/],
  ];
  for (const [json, re] of bad) assert.throws(() => parsePeftConfig(json, "c.json"), re);
  assert.deepEqual(parsePeftConfig({ ...base, target_modules: "all-linear" }, "c.json").targetModules, ["all-linear"]);
});

Deno.test("peft: loading checks names, halves, shapes and the model's layers; F16 loads as f32", async () => {
  await withDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/adapter_config.json`, JSON.stringify(peftConfigJson(config)));
    const t = (name: string, shape: number[], dtype: "F32" | "F16" = "F32") => {
      const n = shape.reduce((x, y) => x * y, 1);
      const data = dtype === "F32"
        ? new Uint8Array(new Float32Array(n).fill(0.5).buffer)
        : new Uint8Array(new Float16Array(n).fill(0.5).buffer);
      return { name, dtype, shape, data };
    };
    const A = "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight";
    const B = "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight";
    const file = `${dir}/adapter_model.safetensors`;
    const cases: [ReturnType<typeof t>[], RegExp][] = [
      [[t(A, [2, 4]), t("lm_head.weight", [2, 2])], /"lm_head\.weight" is not a LoRA A\/B weight/],
      [[t(A, [2, 4])], /q_proj has lora_A but no lora_B/],
      [[t(A, [3, 4]), t(B, [6, 3])], /q_proj has A \[3,4\] and B \[6,3\], expected \[2, in\]/],
      [[t(A, [2, 5]), t(B, [6, 2])], /q_proj has in_features 5 and out_features 6; the model has 4 and 6/],
      [
        [t(A.replace("layers.0", "layers.9"), [2, 4]), t(B.replace("layers.0", "layers.9"), [6, 2])],
        /layers\.9\.self_attn\.q_proj is not a linear layer of the model/,
      ],
      [[t(A, [2, 4]), t(B, [6, 2])], /no LoRA weights for model\.layers\.0\.mlp\.down_proj, which .* targets/],
    ];
    for (const [tensors, re] of cases) {
      await writeSafetensors(file, tensors);
      await assert.rejects(readPeftAdapter(dir, linears), re);
    }
    await writeSafetensors(file, [t(A, [2, 4], "F16"), t(B, [6, 2], "F16")]);
    const ok = await readPeftAdapter(dir);
    assert.deepEqual([...ok.modules.get("model.layers.0.self_attn.q_proj")!.a], new Array(8).fill(0.5));
    await assert.rejects(
      writePeftAdapter(dir, { config, modules: new Map([["m", { ...q, inFeatures: 5 }]]) }),
      /LoRA m: A has 8 values and B 12, expected \[2, 5\] and \[6, 2\]/,
    );
  });
});

Deno.test("peft: an all-linear adapter must cover every projection of the model (checkAdapterCoverage)", () => {
  const w = { a: new Float32Array(8), b: new Float32Array(12), inFeatures: 4, outFeatures: 6 };
  const all = { ...config, targetModules: ["all-linear"] };
  const adapter = { config: all, modules: new Map([["model.layers.0.self_attn.q_proj", w]]) };
  const layer0 = ["model.layers.0.self_attn.q_proj"];
  checkAdapterCoverage(adapter, layer0, "a.safetensors");
  assert.throws(
    () => checkAdapterCoverage(adapter, [...layer0, "model.layers.1.mlp.up_proj"], "a.safetensors"),
    /a\.safetensors: no LoRA weights for model\.layers\.1\.mlp\.up_proj, which adapter_config\.json targets \(up_proj\)/,
  );
});
