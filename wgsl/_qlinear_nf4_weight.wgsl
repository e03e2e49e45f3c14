// Fragment of qlinear_nf4.wgsl and qlinear_nf4_f16.wgsl (see scripts/embed_wgsl.ts): their uniform Params and
// flags, bindings 0-8, the code lookup table, the dequantization helpers and the output epilogues, all f32.

struct Params {
  M: u32,
  N: u32,
  K: u32,
  block_shift: u32, // log2(blocksize): blocksizes are powers of two, and shifts beat integer division
  offset: f32,
  flags: u32,
  r: u32, // LoRA rank (FLAG_LORA)
  seed: u32, // dropout mask (FLAG_DROP)
  threshold: u32,
  index_offset: u32, // rows of dX bound before this range, times K: the mask is keyed by the index in all of dX
  scale: f32, // LoRA scale s
  inv_keep: f32,
}

const FLAG_BIAS: u32 = 1u;
const FLAG_DOUBLE_QUANT: u32 = 2u;
const FLAG_ALIGNED: u32 = 4u;
const FLAG_LORA: u32 = 8u;
const FLAG_ACCUMULATE: u32 = 16u;
const FLAG_DROP: u32 = 32u;

#include "_quant_tables.wgsl"

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> packed: array<u32>;
@group(0) @binding(2) var<storage, read> absmax: array<u32>;
@group(0) @binding(3) var<storage, read> tables: array<f32>;
@group(0) @binding(4) var<storage, read> bias: array<f32>;
@group(0) @binding(5) var<storage, read> lora_a: array<f32>;
@group(0) @binding(6) var<storage, read> lora_b: array<f32>;
@group(0) @binding(7) var<storage, read_write> out: array<f32>;
@group(0) @binding(8) var<uniform> params: Params;

#include "_dropout_hash.wgsl"

// Byte -> (value of its high nibble, value of its low nibble): one lookup per two weights.
var<workgroup> lut2: array<vec2<f32>, 256>;

fn load_lut(li: u32, threads: u32) {
  for (var i = li; i < 256u; i += threads) {
    lut2[i] = vec2<f32>(tables[i >> 4u], tables[i & 15u]);
  }
  workgroupBarrier();
}

fn block_scale(blk: u32) -> f32 {
  if ((params.flags & FLAG_DOUBLE_QUANT) != 0u) {
    let q = (absmax[blk >> 2u] >> ((blk & 3u) * 8u)) & 0xffu;
    return tables[CODE2_AT + q] * tables[ABSMAX2_AT + (blk >> 8u)] + params.offset;
  }
  return bitcast<f32>(absmax[blk]);
}

// Bytes hold the even value in the high nibble; swapping puts value j of a word at bits 4j and back.
fn swap_nibbles(w: u32) -> u32 {
  return ((w >> 4u) & 0x0f0f0f0fu) | ((w & 0x0f0f0f0fu) << 4u);
}

// The code-table values of the 8 nibbles of a packed word (byte j holds values 2j, 2j+1), as two vec4.
fn codes8(word: u32) -> mat2x4<f32> {
  let b = (vec4<u32>(word) >> vec4<u32>(0u, 8u, 16u, 24u)) & vec4<u32>(0xffu);
  return mat2x4<f32>(vec4<f32>(lut2[b.x], lut2[b.y]), vec4<f32>(lut2[b.z], lut2[b.w]));
}

// Values k .. k+7 of row n of deq(W), zero past the row end (k < K).
fn dequant8(n: u32, k: u32) -> mat2x4<f32> {
  let e0 = n * params.K + k;
  let wi = e0 >> 3u;
  let b0 = e0 >> params.block_shift;
  let s0 = block_scale(b0);
  if ((params.flags & FLAG_ALIGNED) != 0u) {
    return codes8(packed[wi]) * s0;
  }
  var word = packed[wi];
  let o = (e0 & 7u) * 4u;
  if (o != 0u) {
    // Shift in value order (nibbles swapped so value j sits at bits 4j), then back to the packed order.
    let next = min(wi + 1u, arrayLength(&packed) - 1u);
    word = swap_nibbles((swap_nibbles(word) >> o) | (swap_nibbles(packed[next]) << (32u - o)));
  }
  let c = codes8(word);
  let b1 = min((e0 + 7u) >> params.block_shift, (params.N * params.K - 1u) >> params.block_shift);
  var s1 = s0;
  var split = 8u;
  if (b1 != b0) {
    s1 = block_scale(b1);
    split = (b1 << params.block_shift) - e0;
  }
  let j0 = vec4<u32>(0u, 1u, 2u, 3u);
  let j1 = j0 + vec4<u32>(4u);
  let v0 = c[0] * select(vec4<f32>(s1), vec4<f32>(s0), j0 < vec4<u32>(split));
  let v1 = c[1] * select(vec4<f32>(s1), vec4<f32>(s0), j1 < vec4<u32>(split));
  let end = vec4<u32>(params.K - k);
  return mat2x4<f32>(select(vec4<f32>(0.0), v0, j0 < end), select(vec4<f32>(0.0), v1, j1 < end));
}

fn bias_of(n: u32) -> f32 {
  if ((params.flags & FLAG_BIAS) != 0u) {
    return bias[n];
  }
  return 0.0;
}

// out[i] = v, or out[i] += v with FLAG_ACCUMULATE (a residual, or a gradient summed over projections).
fn store(i: u32, v: f32) {
  var y = v;
  if ((params.flags & FLAG_ACCUMULATE) != 0u) {
    y += out[i];
  }
  out[i] = y;
}

// Forward epilogue of output [m, n] with product v: + bias, + s·(XA·Bᵀ)[m, n] (lora_a = XA [M, r], lora_b = B [N, r];
// summed in the order of matmul_f32, so the fused product equals the separate one).
fn store_y(m: u32, n: u32, v: f32) {
  var y = v + bias_of(n);
  if ((params.flags & FLAG_LORA) != 0u) {
    let r = params.r;
    var s = 0.0;
    for (var j = 0u; j < r; j++) {
      s += lora_a[m * r + j] * lora_b[n * r + j];
    }
    y += params.scale * s;
  }
  store(m * params.N + n, y);
}

// dx epilogue of dX [m, k] with product v: + s·mask⊙(dYB·A)[m, k] (lora_a = dYB [M, r], lora_b = A [r, K]); the
// mask is matmul_f32's on the product (DROP = 3), keyed by the element's index in the whole dX.
fn store_dx(m: u32, k: u32, v: f32) {
  var y = v;
  let K = params.K;
  if ((params.flags & FLAG_LORA) != 0u) {
    let r = params.r;
    var s = 0.0;
    for (var j = 0u; j < r; j++) {
      s += lora_a[m * r + j] * lora_b[j * K + k];
    }
    var d = params.scale * s;
    if ((params.flags & FLAG_DROP) != 0u) {
      let kept = keep_hash(params.seed, m * K + k + params.index_offset) >= params.threshold;
      d = select(0.0, d * params.inv_keep, kept);
    }
    y += d;
  }
  store(m * K + k, y);
}
