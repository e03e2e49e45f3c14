// nf4_dequantize: out[i] = code[idx[i]] * scale[i / BLOCK] for one chunk of a 4-bit blockwise-quantized tensor
// (bitsandbytes layout; see lib/quant/quantized_tensor.ts). Every store is a vec4 and neighbouring threads store
// neighbouring vec4s: a unit is 4 values (f32 out, half a packed word) or 8 values (f16 out, one packed word,
// converted by bits with round-to-nearest-even: no f16 feature needed, and the same bits on every adapter).
// A workgroup covers 2 * WG units; thread t does units t and t + WG (written out, not looped: llvmpipe runs the
// loop form several times slower). The workgroup's block scales are computed once, into workgroup memory.
// With double quantization scale = fround(code2[q[b]] * absmax2[b / 256]) + offset: the product is passed
// through an opaque integer OR (u.w = 0) so that no compiler fuses it into an FMA (bitsandbytes rounds it first).
// Bindings:
//   packed:  [ceil(n/8)] u32 (storage, read)        the chunk's codes (value 2k in the high nibble of byte k)
//   absmax:  [nb] f32 bits, or ceil(nb/4) u32 of u8 codes with DQ (storage, read)   whole tensor
//   tables:  f32 (storage, read)                    the code table, code2 and absmax2 (_quant_tables.wgsl)
//   out:     [ceil(n/8) * (OUT_F16 ? 1 : 2)] vec4<u32> (storage, read_write)   the chunk's output, padded
//   u:       vec4<u32> (uniform)                    (n in chunk, first block of the chunk, offset bits, 0)

override DQ: bool = true;
override OUT_F16: bool = false;
override BLOCK: u32 = 64u;
override WG: u32 = 256u;
// CONST_CODE: the code table is baked in as C0..C15 and looked up by a 4-level select tree (no memory access;
// about twice as fast on CPU adapters, free on memory-bound GPUs). Otherwise it is read from `tables`.
override CONST_CODE: bool = false;
override C0: f32 = 0.0;
override C1: f32 = 0.0;
override C2: f32 = 0.0;
override C3: f32 = 0.0;
override C4: f32 = 0.0;
override C5: f32 = 0.0;
override C6: f32 = 0.0;
override C7: f32 = 0.0;
override C8: f32 = 0.0;
override C9: f32 = 0.0;
override C10: f32 = 0.0;
override C11: f32 = 0.0;
override C12: f32 = 0.0;
override C13: f32 = 0.0;
override C14: f32 = 0.0;
override C15: f32 = 0.0;

@group(0) @binding(0) var<storage, read> packed: array<u32>;
@group(0) @binding(1) var<storage, read> absmax: array<u32>;
@group(0) @binding(2) var<storage, read> tables: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<vec4<u32>>;
@group(0) @binding(4) var<uniform> u: vec4<u32>;

#include "_quant_tables.wgsl"

var<workgroup> lut: array<f32, 16>;
// Scales of the blocks this workgroup covers (2 * WG units; at most 2 * 256 * 8 / 64 = 64 blocks).
var<workgroup> scales: array<f32, 64>;

fn scale_of(b: u32) -> f32 {
  if (DQ) {
    let q = (absmax[b / 4u] >> (8u * (b % 4u))) & 0xffu;
    let p = tables[CODE2_AT + q] * tables[ABSMAX2_AT + b / 256u];
    return bitcast<f32>(bitcast<u32>(p) | u.w) + bitcast<f32>(u.z);
  }
  return bitcast<f32>(absmax[b]);
}

// The value of the code in bits [shift, shift + 4) of a packed word, scaled.
fn value(word: u32, shift: u32, scale: f32) -> f32 {
  let k = (word >> shift) & 15u;
  if (!CONST_CODE) {
    return lut[k] * scale;
  }
  let b0 = (k & 1u) != 0u;
  let b1 = (k & 2u) != 0u;
  let b2 = (k & 4u) != 0u;
  let lo = select(select(select(C0, C1, b0), select(C2, C3, b0), b1), select(select(C4, C5, b0), select(C6, C7, b0), b1), b2);
  let hi = select(select(select(C8, C9, b0), select(C10, C11, b0), b1), select(select(C12, C13, b0), select(C14, C15, b0), b1), b2);
  return select(lo, hi, (k & 8u) != 0u) * scale;
}

// f32 -> f16 bits, round to nearest even (pack2x16float may round toward zero or flush subnormals).
fn f16_bits(v: f32) -> u32 {
  let b = bitcast<u32>(v);
  let sign = (b >> 16u) & 0x8000u;
  let a = b & 0x7fffffffu;
  if (a >= 0x47800000u) {
    return sign | 0x7c00u; // |v| >= 2^16: infinity
  }
  if (a < 0x38800000u) {
    // Below 2^-14: a subnormal half, m * 2^-24 with m = |v| * 2^24 rounded half to even.
    return sign | u32(round(bitcast<f32>(a) * 16777216.0));
  }
  // Rebias the exponent (127 -> 15) and round 23 mantissa bits to 10; a carry moves into the exponent (or Inf).
  let r = a - 0x38000000u;
  return sign | ((r + 0xfffu + ((r >> 13u) & 1u)) >> 13u);
}

fn pack_f16(lo: f32, hi: f32) -> u32 {
  return f16_bits(lo) | (f16_bits(hi) << 16u);
}

fn unit_store(unit: u32, first_block: u32) {
  let per_unit = select(4u, 8u, OUT_F16);
  let i = unit * per_unit;
  if (i >= u.x) {
    return;
  }
  let s = scales[i / BLOCK - first_block];
  if (OUT_F16) {
    let w = packed[unit];
    out[unit] = vec4<u32>(
      pack_f16(value(w, 4u, s), value(w, 0u, s)),
      pack_f16(value(w, 12u, s), value(w, 8u, s)),
      pack_f16(value(w, 20u, s), value(w, 16u, s)),
      pack_f16(value(w, 28u, s), value(w, 24u, s)),
    );
  } else {
    let w = packed[unit / 2u] >> (16u * (unit % 2u));
    out[unit] = bitcast<vec4<u32>>(vec4<f32>(value(w, 4u, s), value(w, 0u, s), value(w, 12u, s), value(w, 8u, s)));
  }
}

@compute @workgroup_size(WG)
fn main(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) t: u32,
) {
  let w = wid.x + wid.y * nwg.x;
  let per_unit = select(4u, 8u, OUT_F16);
  let first_block = w * 2u * WG * per_unit / BLOCK;
  if (t < 16u && !CONST_CODE) {
    lut[t] = tables[t];
  }
  // One scale per block, computed once for the workgroup (a double-quantized scale is three loads).
  if (t < max(1u, 2u * WG * per_unit / BLOCK)) {
    scales[t] = scale_of(u.y + first_block + t);
  }
  workgroupBarrier();
  let base = w * WG * 2u + t;
  unit_store(base, first_block);
  unit_store(base + WG, first_block);
}
