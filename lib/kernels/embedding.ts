/**
 * Token embedding lookup from a frozen f32, bf16 or f16 table on the GPU (`wgsl/embedding.wgsl`; no backward: the table is
 * not trained).
 *
 * @module
 */

import type { Gpu } from "../gpu/device.ts";
import { Tensor } from "../gpu/tensor.ts";
import { elementGrid, fitsBinding, output, params, rowBinding, rowRanges, storedFormat } from "./_kernel.ts";
import { DTYPE_BYTES } from "../dtype.ts";

/**
 * Gathers rows of the embedding table: `out[t, :] = table[ids[t], :]`. A table larger than one storage binding
 * (e.g. 128k × 2048 f32 on llvmpipe) is read range by range; one larger than one buffer is held as row chunks
 * (vocabulary order), gathered chunk by chunk.
 *
 * @param gpu The device.
 * @param table Frozen `[V, H]`, f32 or as the checkpoint stores it (bf16, f16: read as f32, exactly), or its row
 *   chunks `[V_i, H]`.
 * @param ids Token ids: a host array (checked against `V` here) or a `u32`/`i32` tensor `[n]`, which is not
 *   checked (the row of an out-of-range id is left unwritten).
 * @param out Optional output `[n, H]` to reuse.
 * @returns `[n, H]` f32 embeddings.
 * @throws {Error} For a host id outside `[0, V)`, naming the id and its position.
 *
 * @example
 * ```ts
 * import { requestGpu, Tensor } from "@qlora/webgpu";
 * import { embeddingForward } from "@qlora/webgpu/kernels";
 * import assert from "node:assert/strict";
 * const gpu = await requestGpu();
 * const table = Tensor.fromArray(gpu, new Float32Array([0, 1, 10, 11, 20, 21]), [3, 2]);
 * const e = embeddingForward(gpu, table, new Int32Array([2, 0]));
 * assert.deepEqual([...await e.toFloat32()], [20, 21, 0, 1]);
 * assert.throws(() => embeddingForward(gpu, table, new Int32Array([3])), /token id 3 at position 0/);
 * ```
 */
export function embeddingForward(
  gpu: Gpu,
  table: Tensor | readonly Tensor[],
  ids: Tensor | Int32Array | Uint32Array,
  out?: Tensor,
): Tensor {
  const chunks = table instanceof Tensor ? [table] : table;
  for (const t of chunks) {
    storedFormat(t, "Embedding table");
    if (t.shape.length !== 2 || t.shape[1] !== chunks[0].shape[1]) {
      throw new Error(`Embedding table "${t.label}" is [${t.shape}] ${t.dtype}, expected [V, H]`);
    }
  }
  const cols = chunks[0].shape[1];
  const vocab = chunks.reduce((s, t) => s + t.shape[0], 0);
  let idTensor: Tensor;
  if (ids instanceof Tensor) {
    if (ids.dtype !== "u32" && ids.dtype !== "i32") {
      throw new Error(`Embedding ids "${ids.label}" is [${ids.shape}] ${ids.dtype}, expected u32 or i32`);
    }
    idTensor = ids;
  } else {
    ids.forEach((id, t) => {
      if (!(id >= 0 && id < vocab)) {
        throw new Error(`Embedding: token id ${id} at position ${t} is out of range for a vocabulary of ${vocab}`);
      }
    });
    idTensor = Tensor.fromArray(gpu, new Uint32Array(ids), [ids.length], { class: "scratch", label: "token ids" });
  }
  const n = idTensor.size;
  const y = output(gpu, out, [n, cols], "embeddings");
  fitsBinding(gpu, y, "Embedding output");
  const host = ids instanceof Tensor ? null : ids;
  let v0 = 0;
  for (const t of chunks) {
    const rowBytes = cols * DTYPE_BYTES[t.dtype];
    const ranges = rowRanges(gpu, t.shape[0], [rowBytes], `Embedding table "${t.label}"`);
    for (const [start, end] of ranges) {
      // Rows this dispatch gathers: known for host ids, or when it is the only dispatch; else no byte count.
      const only = chunks.length === 1 && ranges.length === 1;
      const rows = host ? _idsIn(host, v0 + start, v0 + end) : only ? n : undefined;
      gpu.dispatch({
        kernel: "embedding",
        constants: { TABLE_FMT: storedFormat(t, "Embedding table") },
        bindings: [
          rowBinding(t, rowBytes, [start, end]),
          idTensor.binding,
          y.binding,
          params([n, cols, v0 + start, end - start]),
        ],
        workgroups: elementGrid(gpu, n * cols),
        bytes: rows === undefined ? undefined : 4 * n + rows * (rowBytes + 4 * cols), // ids, table rows, out rows
      });
    }
    v0 += t.shape[0];
  }
  if (idTensor !== ids) idTensor.destroy();
  return y;
}

/** How many of `ids` lie in `[lo, hi)`. */
function _idsIn(ids: Int32Array | Uint32Array, lo: number, hi: number): number {
  let c = 0;
  for (const id of ids) if (id >= lo && id < hi) c++;
  return c;
}
