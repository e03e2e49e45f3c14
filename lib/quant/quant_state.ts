/**
 * `QuantState`: the host form of a 4-bit blockwise-quantized tensor's statistics, shaped like bitsandbytes'
 * `QuantState`, with conversion to and from the tensors bitsandbytes stores in a checkpoint
 * (`QuantState.as_dict(packed=True)`).
 *
 * @module
 */

import type { QuantType } from "./code_tables.ts";

/** Element types a quantized tensor can come from (and dequantize back to by default). */
export type SourceDType = "f32" | "f16" | "bf16";

/** Second-level (double) quantization of the first-level absmax (bitsandbytes' `state2` and `offset`). */
export interface NestedQuantState {
  /** `f32[ceil(nb/256)]`: absmax of each group of 256 centred scales (bitsandbytes' `nested_absmax`). */
  readonly absmax: Float32Array;
  /** `f32[256]`: the signed dynamic map (`nested_quant_map`). */
  readonly quantMap: Float32Array;
  /** Group size: 256 (`nested_blocksize`). */
  readonly blocksize: number;
  /** Mean of the first-level absmax, subtracted before quantizing them (`nested_offset`). */
  readonly offset: number;
}

/** The statistics of a 4-bit blockwise-quantized tensor (everything but the packed 4-bit codes). */
export interface QuantState {
  /** Code table: `nf4`, `fp4` (bitsandbytes) or `int4` (this toolkit only). */
  readonly quantType: QuantType;
  /** Shape of the original tensor. */
  readonly shape: readonly number[];
  /** Element type of the original tensor. */
  readonly dtype: SourceDType;
  /** Values per block (a power of two ≥ 64). */
  readonly blocksize: number;
  /** `f32[16]`: the code table (`quant_map`). */
  readonly quantMap: Float32Array;
  /** `f32[nb]` scales, or `u8[nb]` codes of the dynamic map when {@linkcode QuantState.nested} is set. */
  readonly absmax: Float32Array | Uint8Array;
  /** Double quantization of `absmax`, if used. */
  readonly nested?: NestedQuantState;
}

/** A quantized tensor on the host: packed codes plus their state. */
export interface HostQuantized {
  /** `ceil(n/2)` bytes; byte `k` holds value `2k` in its high nibble and `2k+1` in its low nibble. */
  readonly packed: Uint8Array;
  /** The statistics. */
  readonly state: QuantState;
}

/** One tensor of a bitsandbytes checkpoint, with its safetensors dtype. */
export interface BnbTensor {
  /** safetensors dtype. */
  readonly dtype: "U8" | "F32";
  /** Dimensions. */
  readonly shape: readonly number[];
  /** The values. */
  readonly data: Uint8Array | Float32Array;
}

const DTYPE_NAMES: Record<SourceDType, string> = { f32: "float32", f16: "float16", bf16: "bfloat16" };

/**
 * The tensors bitsandbytes stores for a 4-bit weight named `W`, keyed by the suffix to append to `W`: `""` (the
 * packed codes, `u8[ceil(n/2), 1]`), `.absmax`, `.quant_map`, with double quantization `.nested_absmax` and
 * `.nested_quant_map`, and `.quant_state.bitsandbytes__<type>` (the other fields as JSON bytes, formatted as
 * Python's `json.dumps` writes them).
 *
 * @param q The quantized tensor (`nf4` or `fp4`).
 * @returns Tensors by name suffix.
 * @throws {Error} For `int4`, which bitsandbytes does not have.
 *
 * @example
 * ```ts
 * import { quantize4bitRef, toBitsandbytes } from "@qlora/webgpu/quant";
 * import assert from "node:assert/strict";
 * const t = toBitsandbytes(quantize4bitRef(new Float32Array(64).fill(1), { shape: [8, 8] }));
 * assert.deepEqual(t[""].shape, [32, 1]);
 * assert.ok(".quant_state.bitsandbytes__nf4" in t);
 * ```
 */
export function toBitsandbytes(q: HostQuantized): Record<string, BnbTensor> {
  const s = q.state;
  if (s.quantType === "int4") throw new Error("Cannot store an int4 quant state as bitsandbytes (nf4 or fp4 only)");
  const out: Record<string, BnbTensor> = {
    "": { dtype: "U8", shape: [q.packed.length, 1], data: q.packed },
    ".absmax": { dtype: s.nested ? "U8" : "F32", shape: [s.absmax.length], data: s.absmax },
    ".quant_map": { dtype: "F32", shape: [16], data: s.quantMap },
  };
  let json = `{"quant_type": "${s.quantType}", "blocksize": ${s.blocksize}, "dtype": "${DTYPE_NAMES[s.dtype]}", ` +
    `"shape": [${s.shape.join(", ")}]`;
  if (s.nested) {
    out[".nested_absmax"] = { dtype: "F32", shape: [s.nested.absmax.length], data: s.nested.absmax };
    out[".nested_quant_map"] = { dtype: "F32", shape: [s.nested.quantMap.length], data: s.nested.quantMap };
    json += `, "nested_blocksize": ${s.nested.blocksize}, "nested_dtype": "float32", ` +
      `"nested_offset": ${_pyFloat(s.nested.offset)}`;
  }
  const bytes = new TextEncoder().encode(json + "}");
  out[`.quant_state.bitsandbytes__${s.quantType}`] = { dtype: "U8", shape: [bytes.length], data: bytes };
  return out;
}

/**
 * Reads the tensors of a bitsandbytes 4-bit weight (as {@linkcode toBitsandbytes} names them) back into a
 * {@linkcode HostQuantized}.
 *
 * @param tensors Tensors by name suffix (`""`, `.absmax`, `.quant_map`, …, `.quant_state.bitsandbytes__nf4`).
 * @param name The weight's name, for errors.
 * @returns The packed codes and state.
 * @throws {Error} If a tensor is missing or its dtype, shape or JSON does not fit.
 *
 * @example
 * ```ts
 * import { fromBitsandbytes, quantize4bitRef, toBitsandbytes } from "@qlora/webgpu/quant";
 * import assert from "node:assert/strict";
 * const q = quantize4bitRef(new Float32Array([1, -2, 3]), { shape: [3] });
 * assert.deepEqual(fromBitsandbytes(toBitsandbytes(q), "w"), q);
 * ```
 */
export function fromBitsandbytes(tensors: Record<string, BnbTensor>, name = "weight"): HostQuantized {
  const key = Object.keys(tensors).find((k) => k.startsWith(".quant_state.bitsandbytes__"));
  if (!key) throw new Error(`Weight "${name}": no ".quant_state.bitsandbytes__nf4|fp4" tensor`);
  const meta = JSON.parse(new TextDecoder().decode(_get(tensors, key, "U8", name).data as Uint8Array));
  const quantType = meta.quant_type;
  if (quantType !== "nf4" && quantType !== "fp4") throw new Error(`Weight "${name}": quant_type "${quantType}"`);
  const dtype = (Object.keys(DTYPE_NAMES) as SourceDType[]).find((k) => DTYPE_NAMES[k] === meta.dtype);
  if (!dtype) throw new Error(`Weight "${name}": unsupported dtype "${meta.dtype}" (float32, float16, bfloat16)`);
  const nestedMeta = meta.nested_blocksize !== undefined;
  const shape: number[] = meta.shape;
  const n = shape.reduce((a, b) => a * b, 1);
  const nb = Math.ceil(n / meta.blocksize);
  const packed = _get(tensors, "", "U8", name).data as Uint8Array;
  if (packed.length !== Math.ceil(n / 2)) {
    throw new Error(`Weight "${name}": ${packed.length} packed bytes for shape [${shape}] (want ${Math.ceil(n / 2)})`);
  }
  const absmax = _get(tensors, ".absmax", nestedMeta ? "U8" : "F32", name).data;
  if (absmax.length !== nb) throw new Error(`Weight "${name}": ${absmax.length} absmax values, want ${nb}`);
  const state: QuantState = {
    quantType,
    shape,
    dtype,
    blocksize: meta.blocksize,
    quantMap: _get(tensors, ".quant_map", "F32", name).data as Float32Array,
    absmax,
    ...(nestedMeta && {
      nested: {
        absmax: _get(tensors, ".nested_absmax", "F32", name).data as Float32Array,
        quantMap: _get(tensors, ".nested_quant_map", "F32", name).data as Float32Array,
        blocksize: meta.nested_blocksize,
        offset: Math.fround(meta.nested_offset),
      },
    }),
  };
  return { packed, state };
}

function _get(tensors: Record<string, BnbTensor>, suffix: string, dtype: string, name: string): BnbTensor {
  const t = tensors[suffix];
  if (!t) throw new Error(`Weight "${name}": missing tensor "${name}${suffix}"`);
  if (t.dtype !== dtype) throw new Error(`Weight "${name}": tensor "${name}${suffix}" is ${t.dtype}, want ${dtype}`);
  return t;
}

/** A float as Python's `repr` writes it (shortest round trip; exponent form below 1e-4 or from 1e16). */
function _pyFloat(v: number): string {
  if (!Number.isFinite(v)) return Number.isNaN(v) ? "NaN" : v > 0 ? "Infinity" : "-Infinity";
  const a = Math.abs(v);
  if (a !== 0 && (a < 1e-4 || a >= 1e16)) {
    const [m, e] = v.toExponential().split("e");
    const exp = Number(e);
    return `${m}e${exp < 0 ? "-" : "+"}${String(Math.abs(exp)).padStart(2, "0")}`;
  }
  const s = String(v);
  return Number.isInteger(v) ? `${s}.0` : s;
}
