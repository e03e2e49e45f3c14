// nf4_dequantize: out[i] = code[idx[i]] * scale[i / BLOCK] for one chunk of a 4-bit blockwise-quantized tensor
// (bitsandbytes layout; see lib/quant/quantized_tensor.ts). Each thread expands one u32 of packed codes (8 values)
// and stores them with vec4 stores: two vec4<f32>, or one vec4<u32> of f16 pairs (pack2x16float, no f16 feature).
// With double quantization scale = fround(code2[q[b]] * absmax2[b / 256]) + offset: the product is passed
// through an opaque integer OR so that no compiler fuses it into an FMA (bitsandbytes rounds it first).
// Bindings:
//   packed:  [ceil(n/8)] u32 (storage, read)        the chunk's codes
//   absmax:  [nb] f32 bits, or ceil(nb/4) u32 of u8 codes with DQ (storage, read)   whole tensor
//   absmax2: [ceil(nb/256)] f32 (storage, read)     whole tensor (DQ only; else a placeholder)
//   code:    [16] f32 (storage, read)               the 4-bit code table
//   code2:   [256] f32 (storage, read)              the signed dynamic map (DQ only; else a placeholder)
//   out:     [ceil(n/8) * (OUT_F16 ? 1 : 2)] vec4<u32> (storage, read_write)   the chunk's output
//   u:       vec4<u32> (uniform)                    (n in chunk, first block of the chunk, offset bits, 0)

override DQ: bool = true;
override OUT_F16: bool = false;
override BLOCK: u32 = 64u;
override WG: u32 = 256u;

@group(0) @binding(0) var<storage, read> packed: array<u32>;
@group(0) @binding(1) var<storage, read> absmax: array<u32>;
@group(0) @binding(2) var<storage, read> absmax2: array<f32>;
@group(0) @binding(3) var<storage, read> code: array<f32, 16>;
@group(0) @binding(4) var<storage, read> code2: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<vec4<u32>>;
@group(0) @binding(6) var<uniform> u: vec4<u32>;

var<workgroup> lut: array<f32, 16>;

@compute @workgroup_size(WG)
fn main(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) t: u32,
) {
  if (t < 16u) {
    lut[t] = code[t];
  }
  workgroupBarrier();
  let g = (wid.x + wid.y * nwg.x) * WG + t;
  if (g * 8u >= u.x) {
    return;
  }
  let b = u.y + g * 8u / BLOCK;
  var scale: f32;
  if (DQ) {
    let q = (absmax[b / 4u] >> (8u * (b % 4u))) & 0xffu;
    let p = code2[q] * absmax2[b / 256u];
    scale = bitcast<f32>(bitcast<u32>(p) | u.w) + bitcast<f32>(u.z);
  } else {
    scale = bitcast<f32>(absmax[b]);
  }
  let word = packed[g];
  // Value 2k is the high nibble of byte k.
  var v: array<f32, 8>;
  for (var j = 0u; j < 8u; j++) {
    v[j] = lut[(word >> (8u * (j / 2u) + 4u * (1u - j % 2u))) & 15u] * scale;
  }
  if (OUT_F16) {
    out[g] = vec4<u32>(
      pack2x16float(vec2<f32>(v[0], v[1])),
      pack2x16float(vec2<f32>(v[2], v[3])),
      pack2x16float(vec2<f32>(v[4], v[5])),
      pack2x16float(vec2<f32>(v[6], v[7])),
    );
  } else {
    out[2u * g] = bitcast<vec4<u32>>(vec4<f32>(v[0], v[1], v[2], v[3]));
    out[2u * g + 1u] = bitcast<vec4<u32>>(vec4<f32>(v[4], v[5], v[6], v[7]));
  }
}
