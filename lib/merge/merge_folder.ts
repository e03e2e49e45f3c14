/**
 * Merging a PEFT LoRA adapter into its base model folder, tensor by tensor: the logic behind `deno task merge`.
 *
 * Every decoder projection (the weights the fine-tuned model held in NF4) becomes `deq(NF4(W)) + s·B·A` where the
 * adapter has that module, `deq(NF4(W))` where it has not; the base folder may be plain (quantized here exactly as
 * `LlamaModel.load` does: blocks of 64, double quantization) or bitsandbytes 4-bit. Every other float tensor is
 * converted to the output dtype, other tensors are copied. The output has one safetensors file per input file
 * (written to a temporary name, then renamed), `config.json` with `torch_dtype` set and no `quantization_config`,
 * and the folder's other files (tokenizer, generation config). With `quantize`, that merged folder is then
 * quantized to NF4 by {@linkcode quantizeFolder} (bitsandbytes 4-bit format). The output folder is filled as
 * `OUT.partial` and renamed to `OUT` at the end, so a killed run leaves no `OUT` that looks complete.
 *
 * @module
 */

import { basename, join, resolve } from "../platform/path.ts";
import { assertFinite, bytesToF32, f32ToBf16 } from "../dtype.ts";
import type { Gpu } from "../gpu/device.ts";
import { Tensor } from "../gpu/tensor.ts";
import { _checkNewFolder, _copyOtherFiles, _fillNewFolder } from "../io/_file.ts";
import { QuantizedCheckpoint } from "../io/bnb_loader.ts";
import { DEFAULT_QUANTIZED_MODULES, moduleNameOf } from "../io/bnb_format.ts";
import { readJsonFile, writeJsonFile } from "../io/json_file.ts";
import {
  checkAdapterCoverage,
  PEFT_WEIGHTS_FILE,
  peftTensorName,
  peftToLoraConfig,
  readPeftAdapter,
} from "../io/peft.ts";
import { quantizeFolder } from "../io/quantize_folder.ts";
import { SAFETENSORS_INDEX_FILE } from "../io/safetensors_checkpoint.ts";
import { type SafetensorsTensorSpec, safetensorsToDType } from "../io/safetensors_header.ts";
import { SafetensorsWriter } from "../io/safetensors_writer.ts";
import { loadLlamaConfig } from "../model/config.ts";
import { resolveLoraConfig } from "../qlinear/lora_config.ts";
import { freeQuantized, quantizeNF4 } from "../kernels/nf4_quantize.ts";
import type { QuantizedTensor } from "../quant/quantized_tensor.ts";
import { type LoraDelta, mergeLoraWeight } from "./merge_lora.ts";
import { storage } from "../platform/storage.ts";

/** Options of {@linkcode mergeAdapterFolder}. */
export interface MergeFolderOptions {
  /** The base model folder the adapter was trained on. */
  model: string;
  /** The PEFT adapter folder. */
  adapter: string;
  /** Output folder (created; not the model folder, and if it exists it must be empty). */
  out: string;
  /** Stored dtype of the merged float tensors (default `bf16`). */
  dtype?: "bf16" | "f32";
  /** Quantize the merged model to NF4 (bitsandbytes 4-bit folder) (default false). */
  quantize?: boolean;
  /** Called after each tensor. */
  onProgress?: (p: MergeProgress) => void;
}

/** Progress after one tensor. */
export interface MergeProgress {
  /** 1-based index of the tensor just written. */
  index: number;
  /** Tensors in the model. */
  total: number;
  /** Its name. */
  name: string;
  /** `merged` (adapter applied), `dequantized` (NF4 round trip), `converted` or `copied`. */
  action: "merged" | "dequantized" | "converted" | "copied";
}

/** What {@linkcode mergeAdapterFolder} did. */
export interface MergeFolderReport {
  /** Weights with the adapter merged in. */
  merged: string[];
  /** Projections without an adapter module (written as `deq(NF4(W))`). */
  dequantized: string[];
  /** Other tensors (converted or copied). */
  other: string[];
  /** Other files copied. */
  files: string[];
  /** Wall time. */
  seconds: number;
}

const _FLOAT = new Set(["F32", "F16", "BF16"]);
const _OUT_DTYPE = { bf16: { st: "BF16", torch: "bfloat16" }, f32: { st: "F32", torch: "float32" } } as const;

/**
 * Merges an adapter into its base model and writes the merged model folder.
 *
 * @param gpu The device (dequantization and the `s·B·A` products run there).
 * @param opts Model, adapter, output folder, dtype, re-quantization, progress callback.
 * @returns What was merged, dequantized and copied.
 * @throws {Error} Naming the folder, file or module: a missing folder, a missing or unsupported `config.json` (as
 *   `loadLlamaConfig` names it), the output being the model folder or a folder that is not empty, an adapter module
 *   the model lacks or whose shape differs, a targeted module the adapter has no weights for (as `finetune` and
 *   `generate` refuse it), or NaN/Inf in an input or merged tensor (naming it and the first bad index).
 *
 * @example Merge a zero adapter into the tiny model
 * ```ts
 * import { mergeAdapterFolder, requestGpu, writePeftAdapter } from "@qlora/webgpu";
 * import { writeTinyLlama } from "@qlora/webgpu/testing";
 * import assert from "node:assert/strict";
 * const dir = await Deno.makeTempDir();
 * await writeTinyLlama(`${dir}/model`, { layers: 1 });
 * const config = { r: 1, loraAlpha: 2, loraDropout: 0, targetModules: ["q_proj"], useRslora: false, baseModelNameOrPath: null };
 * const w = { a: new Float32Array(64), b: new Float32Array(64), inFeatures: 64, outFeatures: 64 };
 * await writePeftAdapter(`${dir}/adapter`, { config, modules: new Map([["model.layers.0.self_attn.q_proj", w]]) });
 * const r = await mergeAdapterFolder(await requestGpu(), { model: `${dir}/model`, adapter: `${dir}/adapter`, out: `${dir}/merged` });
 * assert.deepEqual(r.merged, ["model.layers.0.self_attn.q_proj.weight"]);
 * assert.equal(r.dequantized.length, 6);
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function mergeAdapterFolder(gpu: Gpu, opts: MergeFolderOptions): Promise<MergeFolderReport> {
  const t0 = performance.now();
  for (const [flag, dir] of [["Model", opts.model], ["Adapter", opts.adapter]]) {
    if (!(await storage().stat(dir).catch(() => null))?.isDirectory) {
      throw new Error(`${flag} folder ${dir} does not exist`);
    }
  }
  if (resolve(opts.out) === resolve(opts.model)) throw new Error(`Output folder ${opts.out} is the model folder`);
  await loadLlamaConfig(opts.model); // only a model the toolkit can load and train is merged
  await _checkNewFolder(opts.out);
  if (!opts.quantize) return await _fillNewFolder(opts.out, (out) => _merge(gpu, opts, out, t0));
  const tmp = `${opts.out.replace(/\/+$/, "")}.merging`;
  await storage().remove(tmp, { recursive: true }).catch(() => {});
  try {
    const report = await _merge(gpu, opts, tmp, t0);
    await quantizeFolder(gpu, { input: tmp, output: opts.out });
    return { ...report, seconds: (performance.now() - t0) / 1000 };
  } finally {
    await storage().remove(tmp, { recursive: true }).catch(() => {});
  }
}

async function _merge(gpu: Gpu, opts: MergeFolderOptions, out: string, t0: number): Promise<MergeFolderReport> {
  const dtype = _OUT_DTYPE[opts.dtype ?? "bf16"];
  const adapter = await readPeftAdapter(opts.adapter);
  const adapterFile = join(opts.adapter, PEFT_WEIGHTS_FILE);
  const scale = resolveLoraConfig(peftToLoraConfig(adapter.config)).scale;
  using ckpt = await QuantizedCheckpoint.open(opts.model);
  const st = ckpt.checkpoint;
  const quantizedIn = new Set(ckpt.quantizedNames());
  const projections = new Set(DEFAULT_QUANTIZED_MODULES);
  const isProjection = (n: string) => quantizedIn.has(n) || projections.has(moduleNameOf(n) ?? "");
  const names = [...ckpt.quantizedNames(), ...ckpt.plainNames()];
  const shapeOf = async (n: string): Promise<number[]> => {
    if (!quantizedIn.has(n)) return [...st.info(n).shape];
    const stateName = st.names().find((k) => k.startsWith(`${n}.quant_state.bitsandbytes__`))!;
    return JSON.parse(new TextDecoder().decode(await st.read(stateName))).shape;
  };
  const shapes = new Map<string, number[]>();
  for (const n of names) shapes.set(n, await shapeOf(n));
  for (const [module, w] of adapter.modules) {
    const name = `${module}.weight`;
    const shape = shapes.get(name);
    if (!shape || !isProjection(name)) {
      throw new Error(`${opts.adapter}: module ${module} is not a decoder projection of ${opts.model}`);
    }
    if (shape.join() !== [w.outFeatures, w.inFeatures].join()) {
      throw new Error(
        `${opts.adapter}: ${module} is [${w.outFeatures}, ${w.inFeatures}]; the model's weight is [${shape}]`,
      );
    }
    assertFinite(w.a, `${adapterFile}: tensor "${peftTensorName(module, "A")}"`);
    assertFinite(w.b, `${adapterFile}: tensor "${peftTensorName(module, "B")}"`);
  }
  const modules = names.filter(isProjection).map((n) => n.slice(0, -".weight".length));
  checkAdapterCoverage(adapter, modules, adapterFile);

  await storage().mkdir(out, { recursive: true });
  const report: MergeFolderReport = { merged: [], dequantized: [], other: [], files: [], seconds: 0 };
  const weightMap: Record<string, string> = {};
  let totalSize = 0;
  let index = 0;
  for (const file of st.files) {
    const fileName = basename(file.path);
    const own = names.filter((n) => st.fileOf(n) === file);
    const isFloat = (n: string) => isProjection(n) || _FLOAT.has(st.info(n).dtype);
    const specs: SafetensorsTensorSpec[] = own.map((n) =>
      isFloat(n) ? { name: n, dtype: dtype.st, shape: shapes.get(n)! } : st.info(n)
    );
    const w = await SafetensorsWriter.create(join(out, fileName), specs, { metadata: { format: "pt" } });
    try {
      for (const n of own) {
        let action: MergeProgress["action"];
        let values: Float32Array | null = null;
        if (isProjection(n)) {
          const module = n.slice(0, -".weight".length);
          const lora = adapter.modules.get(module);
          const delta: LoraDelta | null = lora ? { a: lora.a, b: lora.b, scale } : null;
          const q = await _nf4(gpu, ckpt, n, quantizedIn.has(n));
          try {
            values = await mergeLoraWeight(q, delta);
          } finally {
            freeQuantized(q);
          }
          action = lora ? "merged" : "dequantized";
          (lora ? report.merged : report.dequantized).push(n);
        } else {
          action = isFloat(n) ? "converted" : "copied";
          if (isFloat(n)) values = bytesToF32(await st.read(n), safetensorsToDType(st.info(n).dtype)!);
          report.other.push(n);
        }
        if (values) {
          // The written values: NaN/Inf in the input, or an f32 that rounds past the bf16 range.
          const bytes = dtype.st === "F32" ? _bytes(values) : _bytes(f32ToBf16(values));
          assertFinite(bytes, `${opts.model}: tensor "${n}" (${action})`, opts.dtype ?? "bf16");
          await w.write(n, bytes);
        } else {
          await w.write(n, await st.read(n));
        }
        opts.onProgress?.({ index: ++index, total: names.length, name: n, action });
      }
      await w.close();
    } catch (e) {
      await w.abort();
      throw e;
    }
    for (const t of w.tensors) weightMap[t.name] = fileName;
    totalSize += w.tensors.reduce((a, t) => a + t.end - t.begin, 0);
  }

  if (st.indexPath) {
    const index = await readJsonFile(st.indexPath);
    const metadata = { ...(index.metadata as Record<string, unknown> ?? {}), total_size: totalSize };
    await writeJsonFile(join(out, SAFETENSORS_INDEX_FILE), { metadata, weight_map: weightMap });
  }
  const configPath = join(opts.model, "config.json");
  const config = await readJsonFile(configPath);
  delete config.quantization_config;
  config.torch_dtype = dtype.torch;
  await writeJsonFile(join(out, "config.json"), config);
  const skip = new Set([
    ...st.files.map((f) => resolve(f.path)),
    resolve(configPath),
    ...(st.indexPath ? [resolve(st.indexPath)] : []),
  ]);
  report.files = await _copyOtherFiles(opts.model, out, skip);
  report.seconds = (performance.now() - t0) / 1000;
  return report;
}

/** The weight in NF4 on the GPU: as stored, or quantized as `LlamaModel.load` does (blocks of 64, double quant). */
async function _nf4(gpu: Gpu, ckpt: QuantizedCheckpoint, name: string, stored: boolean): Promise<QuantizedTensor> {
  if (stored) return await ckpt.loadQuantized(gpu, name);
  const st = ckpt.checkpoint;
  const info = st.info(name);
  const t = Tensor.fromArray(gpu, await st.read(name), info.shape, {
    dtype: safetensorsToDType(info.dtype)!,
    class: "scratch",
    label: name,
  });
  try {
    return await quantizeNF4(gpu, t, { blocksize: 64, doubleQuant: true, label: name });
  } finally {
    t.destroy();
  }
}

function _bytes(x: Float32Array | Uint16Array): Uint8Array {
  return new Uint8Array(x.buffer, x.byteOffset, x.byteLength);
}
