/**
 * The trained LLM-QAT model as a Hugging Face folder: the source folder's safetensors files with every trained
 * projection weight replaced (stored in the file's own dtype), its config, tokenizer and other files, and
 * `qat_config.json` with the bits the weights were trained for (not `quantization_config`, which transformers
 * would take for a quantizer to load with). Filled as `OUT.partial`, renamed to `OUT` at the end.
 *
 * @module
 */

import { basename, join, resolve } from "../platform/path.ts";
import { f32ToBf16 } from "../dtype.ts";
import { _copyOtherFiles, _fillNewFolder } from "../io/_file.ts";
import { writeJsonFile } from "../io/json_file.ts";
import { listSafetensorsFiles } from "../io/safetensors_checkpoint.ts";
import { SafetensorsFile } from "../io/safetensors_reader.ts";
import { writeSafetensors } from "../io/safetensors_writer.ts";
import { formatQatBits, type QatBits } from "../qlinear/qat_bits.ts";

/** The trained values in the stored dtype; `what` names them in errors (another dtype, F16 overflow). */
function _encode(values: Float32Array, dtype: string, what: string): Uint8Array {
  let v: Float32Array | Uint16Array | Float16Array;
  if (dtype === "F32") v = values;
  else if (dtype === "BF16") v = f32ToBf16(values);
  else if (dtype === "F16") {
    v = Float16Array.from(values); // round to nearest even; the trained values are finite, so Inf is an overflow
    const i = v.findIndex((x) => !Number.isFinite(x));
    if (i >= 0) throw new Error(`${what}: [${i}] = ${values[i]} is out of F16's range`);
  } else throw new Error(`${what} is stored as ${dtype}; trained weights are written as F32, F16 or BF16 only`);
  return new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
}

/** The file naming the bits a QAT model was trained for. */
export const QAT_CONFIG_FILE = "qat_config.json";

/**
 * Writes `out` as a copy of the model folder `model` with the `trained` weights.
 *
 * @param model Source Hugging Face folder.
 * @param out New output folder.
 * @param trained f32 values by tensor name (each must be in the folder).
 * @param bits The bits they were trained for.
 * @throws {Error} If a trained tensor is missing from the folder, stored in a dtype other than F32/F16/BF16, or
 *   out of F16's range.
 *
 * @example
 * ```ts
 * import { writeQatModel } from "@qlora/webgpu/qat";
 * import { writeTinyLlama } from "@qlora/webgpu/testing";
 * import assert from "node:assert/strict";
 * const dir = await Deno.makeTempDir();
 * await writeTinyLlama(`${dir}/m`, { layers: 1 });
 * await writeQatModel(`${dir}/m`, `${dir}/out`, new Map(), { w: 4, a: 8, kv: 4 });
 * const cfg = JSON.parse(await Deno.readTextFile(`${dir}/out/qat_config.json`));
 * assert.equal(cfg.bits, "w4a8kv4");
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function writeQatModel(
  model: string,
  out: string,
  trained: ReadonlyMap<string, Float32Array>,
  bits: QatBits,
): Promise<void> {
  const files = (await listSafetensorsFiles(model)).map((n) => join(model, n));
  await _fillNewFolder(out, async (dir) => {
    const left = new Set(trained.keys());
    for (const path of files) {
      using f = await SafetensorsFile.open(path);
      const tensors = [];
      for (const name of f.names()) {
        const info = f.info(name);
        const values = trained.get(name);
        left.delete(name);
        const data = values ? _encode(values, info.dtype, `${path}: trained "${name}"`) : await f.read(name);
        tensors.push({ name, dtype: info.dtype, shape: info.shape, data });
      }
      await writeSafetensors(join(dir, basename(path)), tensors, { format: "pt" });
    }
    if (left.size > 0) throw new Error(`${model}: no tensor ${[...left][0]} to replace with its trained weights`);
    await _copyOtherFiles(model, dir, new Set(files.map((p) => resolve(p))));
    await writeJsonFile(join(dir, QAT_CONFIG_FILE), {
      method: "llm-qat",
      bits: formatQatBits(bits),
      weight_bits: bits.w,
      activation_bits: bits.a,
      kv_cache_bits: bits.kv,
      quantizer: "symmetric MinMax: weights per output channel, activations and KV cache per token",
    });
  });
}
