/**
 * Quantizes a folder of safetensors files to the Hugging Face bitsandbytes 4-bit format, tensor by tensor:
 * the logic behind `deno task quantize`. The 2-D float weights of the chosen linear modules become NF4 (see
 * {@linkcode bnbTensorSpecs}); every other tensor is copied byte for byte; each shard keeps its file name, a
 * sharded input gets a new index; `config.json` (when present) gains `quantization_config`; every other file
 * (tokenizer, generation config, ...) is copied. The output is filled as `OUT.partial` and renamed to `OUT` at
 * the end, so a killed run leaves no `OUT` that looks complete.
 *
 * @module
 */

import { basename, join, resolve } from "../platform/path.ts";
import { assertFinite } from "../dtype.ts";
import type { Gpu } from "../gpu/device.ts";
import { Tensor } from "../gpu/tensor.ts";
import { downloadQuantized, freeQuantized, quantizeNF4 } from "../kernels/nf4_quantize.ts";
import { type HostQuantized, type SourceDType, toBitsandbytes } from "../quant/quant_state.ts";
import { checkBlocksize } from "../quant/reference.ts";
import { _copyOtherFiles, _exists, _fillNewFolder } from "./_file.ts";
import { bnbQuantizationConfig, bnbTensorSpecs, DEFAULT_QUANTIZED_MODULES, moduleNameOf } from "./bnb_format.ts";
import { readJsonFile, writeJsonFile } from "./json_file.ts";
import { SAFETENSORS_INDEX_FILE, SafetensorsCheckpoint } from "./safetensors_checkpoint.ts";
import type { SafetensorsTensorInfo, SafetensorsTensorSpec } from "./safetensors_header.ts";
import { SafetensorsWriter } from "./safetensors_writer.ts";
import { type FileInfo, storage } from "../platform/storage.ts";

/** Options of {@linkcode quantizeFolder}. */
export interface QuantizeFolderOptions {
  /** Input folder of safetensors files (with or without `config.json`). */
  input: string;
  /** Output folder (created; must not be the input folder, and if it exists it must be empty). */
  output: string;
  /** Values per block: a power of two ≥ 64 (default 64). */
  blocksize?: number;
  /** Double-quantize the absmax (default true). */
  doubleQuant?: boolean;
  /**
   * Module names to quantize, matched against the component before `.weight`. Given, each must match a weight;
   * by default the {@linkcode DEFAULT_QUANTIZED_MODULES} that the checkpoint has are quantized (as transformers
   * does), and at least one must be there.
   */
  modules?: readonly string[];
  /** Called after each tensor (for progress output). */
  onProgress?: (p: QuantizeProgress) => void;
}

/** Progress after one tensor. */
export interface QuantizeProgress {
  /** 1-based index of the tensor just done. */
  index: number;
  /** Tensors in the checkpoint. */
  total: number;
  /** Its name. */
  name: string;
  /** Whether it was quantized (else copied). */
  quantized: boolean;
  /** Input bytes read so far. */
  bytesRead: number;
  /** Seconds since the start. */
  seconds: number;
}

/** What {@linkcode quantizeFolder} did. */
export interface QuantizeFolderReport {
  /** Names of the quantized weights. */
  quantized: string[];
  /** Names of the tensors copied unchanged. */
  copied: string[];
  /** Other files copied (relative paths). */
  files: string[];
  /** Tensor bytes read. */
  inputBytes: number;
  /** Tensor bytes written. */
  outputBytes: number;
  /** Wall time. */
  seconds: number;
}

const _FLOAT_DTYPES: Record<string, SourceDType> = { F32: "f32", F16: "f16", BF16: "bf16" };
const _TORCH_NAMES: Record<string, "float32" | "float16" | "bfloat16"> = {
  float32: "float32",
  float16: "float16",
  bfloat16: "bfloat16",
};

/**
 * Quantizes a checkpoint folder to NF4 (bitsandbytes format), one tensor at a time on the GPU.
 *
 * @param gpu The device the quantization kernels run on.
 * @param opts Input, output, block size, double quantization, modules, progress callback.
 * @returns What was quantized, copied and written.
 * @throws {Error} If the input folder is missing or has no safetensors files, the output is the input or a
 * folder that is not empty, the checkpoint is already quantized, no module matches a tensor, a module given in
 * `modules` matches none, or a tensor holds NaN/Inf (naming it and the first bad index; the quantized ones are
 * checked on the GPU, the float ones copied through on the host).
 *
 * @example Quantize the tiny model
 * ```ts
 * import { quantizeFolder, requestGpu } from "@qlora/webgpu";
 * import { writeTinyLlama } from "@qlora/webgpu/testing";
 * import assert from "node:assert/strict";
 * const input = await Deno.makeTempDir();
 * await writeTinyLlama(input, { layers: 1 });
 * const report = await quantizeFolder(await requestGpu(), { input, output: `${input}-nf4` });
 * assert.equal(report.quantized.length, 7);
 * ```
 */
export async function quantizeFolder(gpu: Gpu, opts: QuantizeFolderOptions): Promise<QuantizeFolderReport> {
  const t0 = performance.now();
  const blocksize = opts.blocksize ?? 64;
  checkBlocksize(blocksize);
  const doubleQuant = opts.doubleQuant ?? true;
  const modules = new Set(opts.modules ?? DEFAULT_QUANTIZED_MODULES);
  await _checkFolders(opts.input, opts.output);
  using ckpt = await SafetensorsCheckpoint.open(opts.input);
  const configPath = join(opts.input, "config.json");
  const config = await _exists(configPath) ? await readJsonFile(configPath) : null;
  if (config?.quantization_config !== undefined) {
    throw new Error(`${configPath}: the model is already quantized (config.json has "quantization_config")`);
  }
  const names = ckpt.names();
  const already = names.find((n) => n.includes(".quant_state.bitsandbytes__"));
  if (already) throw new Error(`${opts.input}: the checkpoint is already quantized (tensor "${already}")`);
  const isTarget = (t: SafetensorsTensorInfo) =>
    t.shape.length === 2 && t.dtype in _FLOAT_DTYPES && modules.has(moduleNameOf(t.name) ?? "");
  const targets = new Set(names.filter((n) => isTarget(ckpt.info(n))));
  const matched = new Set([...targets].map((n) => moduleNameOf(n)!));
  const unmatched = [...modules].filter((m) => !matched.has(m));
  if (matched.size === 0 || (opts.modules !== undefined && unmatched.length > 0)) {
    throw new Error(`${opts.input}: no 2-D float "<module>.weight" tensor for module(s) ${unmatched.join(", ")}`);
  }

  const checked = { ...opts, blocksize, doubleQuant, targets, config, t0 };
  return await _fillNewFolder(opts.output, (output) => _write(gpu, ckpt, { ...checked, output }));
}

/** Writes the quantized checkpoint into `opts.output`, a new folder, from the checked options. */
async function _write(
  gpu: Gpu,
  ckpt: SafetensorsCheckpoint,
  opts: QuantizeFolderOptions & {
    blocksize: number;
    doubleQuant: boolean;
    targets: Set<string>;
    config: Record<string, unknown> | null;
    t0: number;
  },
): Promise<QuantizeFolderReport> {
  const { blocksize, doubleQuant, targets, config, t0 } = opts;
  const names = ckpt.names();
  const configPath = join(opts.input, "config.json");
  const report: QuantizeFolderReport = {
    quantized: [],
    copied: [],
    files: [],
    inputBytes: 0,
    outputBytes: 0,
    seconds: 0,
  };
  const weightMap: Record<string, string> = {};
  let index = 0;
  for (const file of ckpt.files) {
    const fileName = basename(file.path);
    const own = file.names().filter((n) => ckpt.fileOf(n) === file);
    const specs: SafetensorsTensorSpec[] = own.flatMap((n) => {
      const t = file.info(n);
      return targets.has(n) ? bnbTensorSpecs(n, t.shape, blocksize, doubleQuant) : [t];
    });
    const reserve = own.filter((n) => targets.has(n)).reduce((a, n) => a + JSON.stringify(n).length + 128, 0);
    const w = await SafetensorsWriter.create(join(opts.output, fileName), specs, {
      metadata: { format: "pt", ...file.metadata },
      reserveHeaderBytes: reserve,
    });
    const states: [SafetensorsTensorSpec, Uint8Array][] = [];
    try {
      for (const name of own) {
        const info = file.info(name);
        const bytes = await file.read(name);
        report.inputBytes += bytes.byteLength;
        if (targets.has(name)) {
          const dtype = _FLOAT_DTYPES[info.dtype];
          const q = await _quantize(gpu, bytes, info.shape, dtype, { blocksize, doubleQuant, label: name });
          for (const [suffix, t] of Object.entries(toBitsandbytes(q))) {
            const data = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
            if (suffix.startsWith(".quant_state.")) {
              states.push([{ name: name + suffix, dtype: t.dtype, shape: t.shape }, data]);
            } else {
              await w.write(name + suffix, data);
            }
          }
          report.quantized.push(name);
        } else {
          const dtype = _FLOAT_DTYPES[info.dtype];
          if (dtype) assertFinite(bytes, `${file.path}: tensor "${name}"`, dtype);
          await w.write(name, bytes);
          report.copied.push(name);
        }
        opts.onProgress?.({
          index: ++index,
          total: names.length,
          name,
          quantized: targets.has(name),
          bytesRead: report.inputBytes,
          seconds: (performance.now() - t0) / 1000,
        });
      }
      for (const [spec, data] of states) await w.append(spec, data);
      await w.close();
    } catch (e) {
      await w.abort();
      throw e;
    }
    for (const t of w.tensors) weightMap[t.name] = fileName;
    report.outputBytes += w.tensors.reduce((a, t) => a + t.end - t.begin, 0);
  }

  if (ckpt.indexPath) {
    const index = await readJsonFile(ckpt.indexPath);
    const metadata = { ...(index.metadata as Record<string, unknown> ?? {}), total_size: report.outputBytes };
    await writeJsonFile(join(opts.output, SAFETENSORS_INDEX_FILE), { metadata, weight_map: weightMap });
  }
  if (config) {
    const skipped = _skippedModules(ckpt, targets);
    const computeDType = _TORCH_NAMES[String(config.torch_dtype)] ?? "float32";
    config.quantization_config = bnbQuantizationConfig({ doubleQuant, computeDType, skipModules: skipped });
    await writeJsonFile(join(opts.output, "config.json"), config, ["llm_int8_threshold"]);
  }
  const skip = new Set([
    ...ckpt.files.map((f) => resolve(f.path)),
    resolve(configPath),
    ...(ckpt.indexPath ? [resolve(ckpt.indexPath)] : []),
  ]);
  report.files = await _copyOtherFiles(opts.input, opts.output, skip);
  report.seconds = (performance.now() - t0) / 1000;
  return report;
}

/**
 * Modules of 2-D float weights left unquantized, for `llm_int8_skip_modules`; `null` when only `lm_head` and
 * `embed_tokens` are (transformers leaves those alone by itself), as transformers writes it.
 */
function _skippedModules(ckpt: SafetensorsCheckpoint, targets: Set<string>): string[] | null {
  const skipped = new Set<string>();
  for (const n of ckpt.names()) {
    const t = ckpt.info(n);
    const m = moduleNameOf(n);
    if (m && !targets.has(n) && t.shape.length === 2 && t.dtype in _FLOAT_DTYPES) skipped.add(m);
  }
  const rest = [...skipped].filter((m) => m !== "lm_head" && m !== "embed_tokens");
  return rest.length === 0 ? null : [...skipped].sort();
}

async function _checkFolders(input: string, output: string): Promise<void> {
  let stat: FileInfo;
  try {
    stat = await storage().stat(input);
  } catch {
    throw new Error(`Input folder ${input} does not exist`);
  }
  if (!stat.isDirectory) throw new Error(`Input ${input} is not a folder`);
  if (resolve(input) === resolve(output)) throw new Error(`Output folder ${output} is the input folder`);
}

/** Quantizes one weight on the GPU from its stored bytes (f32, f16 or bf16) and brings the result back. */
async function _quantize(
  gpu: Gpu,
  bytes: Uint8Array,
  shape: readonly number[],
  dtype: SourceDType,
  opts: { blocksize: number; doubleQuant: boolean; label: string },
): Promise<HostQuantized> {
  const input = Tensor.fromArray(gpu, bytes, shape, { dtype, class: "scratch", label: opts.label });
  try {
    const q = await quantizeNF4(gpu, input, opts);
    try {
      return await downloadQuantized(q);
    } finally {
      freeQuantized(q);
    }
  } finally {
    input.destroy();
  }
}
