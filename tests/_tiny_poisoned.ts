// The tiny model folder with one value of one tensor replaced (a NaN or an Inf), for the non-finite checks.

import { join } from "node:path";
import { bytesToF32, f32ToBf16 } from "../lib/dtype.ts";
import { writeSafetensors } from "../lib/io/safetensors_writer.ts";
import { type TinyLlamaOptions, tinyLlamaTensors, writeTinyLlama } from "../lib/testing/tiny_llama.ts";

/** Writes the tiny model (one file) to `dir` with `values[index] = value` in tensor `name`, in the model's dtype. */
export async function writeTinyWith(
  dir: string,
  opts: TinyLlamaOptions,
  name: string,
  index: number,
  value: number,
): Promise<void> {
  await writeTinyLlama(dir, opts);
  const dtype = opts.dtype ?? "f32";
  const tensors = tinyLlamaTensors(opts).map((t) => {
    if (t.name !== name) return t;
    const values = bytesToF32(t.data, dtype);
    values[index] = value;
    const data = dtype === "f32" ? values : dtype === "f16" ? Float16Array.from(values) : f32ToBf16(values);
    return { ...t, data: new Uint8Array(data.buffer) };
  });
  await writeSafetensors(join(dir, "model.safetensors"), tensors);
}
