// nf4_quantize: 4-bit blockwise quantization (NF4, FP4 or INT4) of one chunk of a flat tensor, bitsandbytes layout.
// Each thread quantizes 8 consecutive values into one u32 of packed codes (value 2k in the high nibble of byte k);
// a workgroup covers SPAN = max(2048, BLOCK) values: 2048/BLOCK whole blocks, or one block in BLOCK/2048 rounds.
// Bindings:
//   x:       [ceil(n*elem/4)] u32 (storage, read)   the chunk's values: f32 bits, or two f16/bf16 per word
//   packed:  [ceil(n/8)] u32 (storage, read_write)  the chunk's packed codes
//   absmax:  [nb_total] f32 (storage, read_write)   per-block max |x|, written at u.block_base + local block
//   partial: [wg_total] f32 (storage, read_write)   per-workgroup pairwise sum of its blocks' absmax (for the mean)
//   stats:   [4] atomic<u32> (storage, read_write)  stats[0]: smallest flat index of a NaN/Inf value (init 0xffffffff)
//   thr:     [4] vec4<f32> (uniform)                thresholds: NF4 15, INT4 14, FP4 7 (on |x|); unused ones 2.0
//   u:       Params (uniform)                        n (values in chunk), elem_base, block_base, wg_base (global)
// Arithmetic as lib/quant/reference.ts: r = 1/absmax correctly rounded (integer long division: WGSL's `/` may be
// 2.5 ulp off), xn = x * r; a block with absmax < 2^-126 gets the zero index everywhere, as do values past n.

override DTYPE: u32 = 0u; // 0 f32, 1 f16, 2 bf16
override QTYPE: u32 = 0u; // 0 nf4, 1 fp4, 2 int4
override BLOCK: u32 = 64u;
const WG: u32 = 256u;
const SPAN_MIN: u32 = 2048u; // WG * 8

struct Params {
  n: u32,
  elem_base: u32,
  block_base: u32,
  wg_base: u32,
}

@group(0) @binding(0) var<storage, read> x: array<u32>;
@group(0) @binding(1) var<storage, read_write> packed: array<u32>;
@group(0) @binding(2) var<storage, read_write> absmax: array<f32>;
@group(0) @binding(3) var<storage, read_write> partial: array<f32>;
@group(0) @binding(4) var<storage, read_write> stats: array<atomic<u32>, 4>;
@group(0) @binding(5) var<uniform> thr: array<vec4<f32>, 4>;
@group(0) @binding(6) var<uniform> u: Params;

var<workgroup> red: array<u32, WG>;
var<workgroup> sums: array<f32, WG>;

// Value j (0..7) of 8-value group g of the chunk, as f32 (0 past n); flags NaN/Inf via stats[0].
fn load(g: u32, j: u32) -> f32 {
  let i = g * 8u + j;
  if (i >= u.n) {
    return 0.0;
  }
  var bits: u32;
  var bad: bool;
  if (DTYPE == 0u) {
    bits = x[i];
    bad = (bits & 0x7f800000u) == 0x7f800000u;
  } else {
    let h = (x[i / 2u] >> (16u * (i % 2u))) & 0xffffu;
    if (DTYPE == 1u) {
      bad = (h & 0x7c00u) == 0x7c00u;
      bits = bitcast<u32>(unpack2x16float(h).x);
    } else {
      bad = (h & 0x7f80u) == 0x7f80u;
      bits = h << 16u;
    }
  }
  if (bad) {
    atomicMin(&stats[0], u.elem_base + i);
  }
  return bitcast<f32>(bits);
}

fn threshold(k: u32) -> f32 {
  return thr[k / 4u][k % 4u];
}

fn index4(xn: f32) -> u32 {
  if (QTYPE == 1u) {
    let a = abs(xn);
    var rank = 0u;
    for (var k = 0u; k < 7u; k++) {
      rank += select(0u, 1u, a > threshold(k));
    }
    // Low 3 bits of the FP4 code for magnitude ranks 0..7, four bits each.
    let bits = (0x32547610u >> (4u * rank)) & 7u;
    return bits | select(0u, 8u, xn < 0.0);
  }
  var idx = 0u;
  for (var k = 0u; k < 15u; k++) {
    idx += select(0u, 1u, xn > threshold(k));
  }
  return idx;
}

// Correctly rounded 1/a for a normal a in [2^-126, 2^125] given as bits (the reciprocal stays normal).
fn recip_rn(abits: u32) -> f32 {
  let e = abits >> 23u;
  let m = (abits & 0x7fffffu) | 0x800000u;
  if (m == 0x800000u) {
    return bitcast<f32>((254u - e) << 23u);
  }
  // q = floor(2^47 / m): 24 quotient bits, the first always 1 since 2^23 < m < 2^24.
  var r = 0x1000000u - m;
  var q = 1u;
  for (var k = 0u; k < 23u; k++) {
    r = r << 1u;
    let ge = r >= m;
    q = (q << 1u) | select(0u, 1u, ge);
    r = select(r, r - m, ge);
  }
  // 2r == m cannot happen (m is not a power of two), so no ties.
  q += select(0u, 1u, 2u * r > m);
  // 1/a = q * 2^(103 - e') with q in [2^23, 2^24]; q == 2^24 carries into the exponent.
  return bitcast<f32>(((253u - e) << 23u) + (q - 0x800000u));
}

@compute @workgroup_size(WG)
fn main(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) t: u32,
) {
  let span = max(SPAN_MIN, BLOCK);
  let rounds = span / SPAN_MIN;
  let w = wid.x + wid.y * nwg.x;
  if (w * span >= u.n) {
    return;
  }
  // Groups of 8 values handled by this thread: w*span/8 + t + WG*k, all in one block.
  let g0 = w * (span / 8u) + t;
  // Max |x| compared as bits (exact for finite floats); the first round's values stay in registers.
  var vals: array<f32, 8>;
  var amax = 0u;
  for (var k = 0u; k < rounds; k++) {
    for (var j = 0u; j < 8u; j++) {
      let v = load(g0 + WG * k, j);
      if (k == 0u) {
        vals[j] = v;
      }
      amax = max(amax, bitcast<u32>(v) & 0x7fffffffu);
    }
  }
  // Segmented max over the threads of each block (threads [b*tpb, (b+1)*tpb) hold block b).
  let tpb = min(WG, BLOCK / 8u);
  red[t] = amax;
  workgroupBarrier();
  for (var s = tpb / 2u; s > 0u; s = s / 2u) {
    if (t % tpb < s) {
      red[t] = max(red[t], red[t + s]);
    }
    workgroupBarrier();
  }
  let bmax = red[t - t % tpb];
  let zero_block = bmax < 0x00800000u;
  let r = select(recip_rn(bmax), 0.0, zero_block);
  let zero_code = select(7u, 0u, QTYPE == 1u);
  for (var k = 0u; k < rounds; k++) {
    let g = g0 + WG * k;
    if (g * 8u < u.n) {
      var word = 0u;
      for (var j = 0u; j < 8u; j++) {
        var idx = zero_code;
        if (!zero_block && g * 8u + j < u.n) {
          var v = vals[j];
          if (k > 0u) {
            v = load(g, j);
          }
          idx = index4(v * r);
        }
        word |= idx << (8u * (j / 2u) + 4u * (1u - j % 2u));
      }
      packed[g] = word;
    }
  }
  // One thread per block stores its absmax; then a pairwise sum of the workgroup's blocks (zeros past n).
  let bpw = span / BLOCK;
  let local_block = t / tpb;
  let block_start = w * span + local_block * BLOCK;
  if (t % tpb == 0u) {
    var v = 0.0;
    if (block_start < u.n) {
      v = bitcast<f32>(bmax);
      absmax[u.block_base + w * bpw + local_block] = v;
    }
    sums[local_block] = v;
  }
  workgroupBarrier();
  for (var width = bpw / 2u; width > 0u; width = width / 2u) {
    var s = 0.0;
    if (t < width) {
      s = sums[2u * t] + sums[2u * t + 1u];
    }
    workgroupBarrier();
    if (t < width) {
      sums[t] = s;
    }
    workgroupBarrier();
  }
  if (t == 0u) {
    partial[u.wg_base + w] = sums[0];
  }
}
