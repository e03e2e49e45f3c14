// 4-bit blockwise quantization (NF4, FP4 or INT4) with double quantization of the absmax, bitsandbytes layout.
// Three entry points, run in this order; absmax_mean and double_quant prefix their bindings (m_, dq_).
//
// quantize: one chunk of a flat tensor. Each thread quantizes 8 consecutive values into one u32 of packed codes
//   (value 2k in the high nibble of byte k); a workgroup covers SPAN = max(2048, BLOCK) values: 2048/BLOCK whole
//   blocks, or one block in BLOCK/2048 rounds.
//   Bindings:
//     x4:      [floor(n*elem/16)] vec4<u32> (storage, read)  the chunk's values (f32 bits, or f16/bf16 pairs);
//              whole 8-value groups are read through it (a dummy 16-byte buffer when the chunk is shorter)
//     x:       [ceil(n*elem/4)] u32 (storage, read)   the same values, for the last partial group
//     packed:  [ceil(n/8)] u32 (storage, read_write)  the chunk's packed codes
//     absmax:  [nb_total] f32 (storage, read_write)   per-block max |x|, written at u.block_base + local block
//     partial: [wg_total] f32 (storage, read_write)   per-workgroup pairwise sum of its blocks' absmax (if SUMS)
//     stats:   [4] atomic<u32> (storage, read_write)  stats[0]: smallest flat index of a NaN/Inf value
//              (init 0xffffffff)
//     u:       Params (uniform)                        n (values in chunk), elem_base, block_base, wg_base (global)
//   Arithmetic as lib/quant/reference.ts: r = 1/absmax correctly rounded (integer long division: WGSL's `/` may be
//   2.5 ulp off), xn = x * r; a block with absmax < 2^-126 gets the zero index everywhere, as do values past n.
// absmax_mean: offset = mean of the first-level absmax for double quantization, from the per-workgroup partial
//   sums of quantize. One workgroup: thread t sums partial[t*per .. (t+1)*per) pairwise, then the 256 thread sums
//   are added pairwise, so the whole sum is a binary tree over the blocks zero-padded to a power of two (the order
//   lib/quant/reference.ts `meanF32` uses); offset = sum * fround(1/nb).
//   Bindings:
//     m_partial: [count] f32 (storage, read)
//     m_stats:   [4] u32 (storage, read_write)  stats[1] = offset bits (written)
//     m_u:       vec4<u32> (uniform)            (count, per: values per thread (a power of two), bits of
//                fround(1/nb), _)
// double_quant: second-level quantization of the first-level absmax (bitsandbytes' nested quant state): per group
//   of 256 blocks, c = absmax - offset, absmax2 = max|c|, code = nearest entry of the signed dynamic map to
//   c * (1/absmax2) by float32 midpoints, a value on a midpoint taking the even index; absmax2 < 2^-126 gives
//   code 0. One workgroup per group.
//   Bindings:
//     dq_absmax:  [nb] f32 (storage, read)
//     dq_codes:   [ceil(nb/4)] u32 (storage, read_write)  nb u8 codes, four to a word (little-endian)
//     dq_absmax2: [ceil(nb/256)] f32 (storage, read_write)
//     dq_code2:   [256] f32 (storage, read)               the signed dynamic map, sorted
//     dq_stats:   [4] u32 (storage, read)                 stats[1]: offset bits (from absmax_mean)
//     dq_u:       vec4<u32> (uniform)                     (nb, _, _, _)

override DTYPE: u32 = 0u; // 0 f32, 1 f16, 2 bf16
override QTYPE: u32 = 0u; // 0 nf4, 1 fp4, 2 int4
override BLOCK: u32 = 64u;
// Whether to write the per-workgroup absmax sums (double quantization needs them).
override SUMS: bool = true;
// Sorted decision thresholds from lib/quant/code_tables.ts: NF4 15, INT4 14, FP4 7 (on |x|); unused ones 2.0.
override T0: f32;
override T1: f32;
override T2: f32;
override T3: f32;
override T4: f32;
override T5: f32;
override T6: f32;
override T7: f32;
override T8: f32;
override T9: f32;
override T10: f32;
override T11: f32;
override T12: f32;
override T13: f32;
override T14: f32;
const WG: u32 = 256u;
const SPAN_MIN: u32 = 2048u; // WG * 8

struct Params {
  n: u32,
  elem_base: u32,
  block_base: u32,
  wg_base: u32,
}

@group(0) @binding(0) var<storage, read> x4: array<vec4<u32>>;
@group(0) @binding(1) var<storage, read> x: array<u32>;
@group(0) @binding(2) var<storage, read_write> packed: array<u32>;
@group(0) @binding(3) var<storage, read_write> absmax: array<f32>;
@group(0) @binding(4) var<storage, read_write> partial: array<f32>;
@group(0) @binding(5) var<storage, read_write> stats: array<atomic<u32>, 4>;
@group(0) @binding(6) var<uniform> u: Params;

// red: quantize and double_quant; sums: quantize and absmax_mean.
var<workgroup> red: array<u32, WG>;
var<workgroup> sums: array<f32, WG>;

// Exact f16 -> f32 by bit manipulation (unpack2x16float may flush f16 subnormals to zero). Not for Inf/NaN.
fn f16_to_f32_bits(h: u32) -> u32 {
  let sign = (h & 0x8000u) << 16u;
  let e = (h >> 10u) & 0x1fu;
  let m = h & 0x3ffu;
  if (e == 0u) {
    // Zero or subnormal: m * 2^-24, a normal f32 (or zero).
    return bitcast<u32>(ldexp(f32(m), -24)) | sign;
  }
  return sign | ((e + 112u) << 23u) | (m << 13u);
}

// Values 8g..8g+7 of the chunk as f32 (0 past n): whole groups with vec4 loads, the last partial one word by
// word. A NaN/Inf lowers stats[0] to its flat index.
fn group_values(g: u32) -> array<f32, 8> {
  var h: array<u32, 8>; // raw bits: f32, or the f16/bf16 half in the low 16 bits
  if ((g + 1u) * 8u <= u.n) {
    if (DTYPE == 0u) {
      let a = x4[2u * g];
      let b = x4[2u * g + 1u];
      h = array<u32, 8>(a.x, a.y, a.z, a.w, b.x, b.y, b.z, b.w);
    } else {
      let a = x4[g];
      h = array<u32, 8>(a.x, a.x >> 16u, a.y, a.y >> 16u, a.z, a.z >> 16u, a.w, a.w >> 16u);
    }
  } else {
    for (var j = 0u; j < 8u; j++) {
      let i = g * 8u + j;
      if (i < u.n) {
        h[j] = select(x[i / 2u] >> (16u * (i % 2u)), x[i], DTYPE == 0u);
      }
    }
  }
  var v: array<f32, 8>;
  var bad = 0xffffffffu;
  for (var j = 0u; j < 8u; j++) {
    var bits = h[j];
    var inf = false;
    if (DTYPE == 0u) {
      inf = (bits & 0x7f800000u) == 0x7f800000u;
    } else if (DTYPE == 1u) {
      bits = bits & 0xffffu;
      inf = (bits & 0x7c00u) == 0x7c00u;
      bits = f16_to_f32_bits(bits);
    } else {
      bits = bits << 16u;
      inf = (bits & 0x7f800000u) == 0x7f800000u;
    }
    if (inf && bad == 0xffffffffu) {
      bad = g * 8u + j;
    }
    v[j] = bitcast<f32>(bits);
  }
  if (bad != 0xffffffffu) {
    atomicMin(&stats[0], u.elem_base + bad);
  }
  return v;
}

// Index of xn among sorted thresholds T0 < T1 < ... (the number of them below xn), by a 4-level binary
// search of selects: no table lookups, so each lane stays in registers.
fn count16(xn: f32) -> u32 {
  let b3 = xn > T7;
  let b2 = xn > select(T3, T11, b3);
  let b1 = xn > select(select(T1, T5, b2), select(T9, T13, b2), b3);
  let t0 = select(select(select(T0, T2, b1), select(T4, T6, b1), b2), select(select(T8, T10, b1), select(T12, T14, b1), b2), b3);
  return (u32(b3) << 3u) | (u32(b2) << 2u) | (u32(b1) << 1u) | u32(xn > t0);
}

fn index4(xn: f32) -> u32 {
  if (QTYPE == 1u) {
    // FP4: a magnitude rank 0..7 over T0..T6, mapped to the low 3 bits (four bits per rank), then the sign.
    let a = abs(xn);
    let b2 = a > T3;
    let b1 = a > select(T1, T5, b2);
    let b0 = a > select(select(T0, T2, b1), select(T4, T6, b1), b2);
    let rank = (u32(b2) << 2u) | (u32(b1) << 1u) | u32(b0);
    return ((0x32547610u >> (4u * rank)) & 7u) | select(0u, 8u, xn < 0.0);
  }
  return count16(xn);
}

// Correctly rounded 1/a for a normal a in [2^-126, 2^125] given as bits (the reciprocal stays normal), in integer
// arithmetic so that every backend rounds it the same way (quantize and double_quant).
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
fn quantize(
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
  let vals = group_values(g0);
  var amax = 0u;
  for (var k = 0u; k < rounds; k++) {
    var v = vals;
    if (k > 0u) {
      v = group_values(g0 + WG * k);
    }
    for (var j = 0u; j < 8u; j++) {
      amax = max(amax, bitcast<u32>(v[j]) & 0x7fffffffu);
    }
  }
  // Segmented max over the threads of each block (threads [b*tpb, (b+1)*tpb) hold block b).
  let tpb = min(WG, BLOCK / 8u);
  red[t] = amax;
  workgroupBarrier();
  var bmax = 0u;
  if (tpb <= 16u) {
    // Small blocks: each thread reads its block's few partial maxima (one barrier instead of a tree).
    for (var j = t - t % tpb; j < t - t % tpb + tpb; j++) {
      bmax = max(bmax, red[j]);
    }
  } else {
    for (var s = tpb / 2u; s > 0u; s = s / 2u) {
      if (t % tpb < s) {
        red[t] = max(red[t], red[t + s]);
      }
      workgroupBarrier();
    }
    bmax = red[t - t % tpb];
  }
  let zero_block = bmax < 0x00800000u;
  let r = select(recip_rn(bmax), 0.0, zero_block);
  let zero_code = select(7u, 0u, QTYPE == 1u);
  for (var k = 0u; k < rounds; k++) {
    let g = g0 + WG * k;
    if (g * 8u < u.n) {
      var v = vals;
      if (k > 0u) {
        v = group_values(g);
      }
      var word = 0u;
      for (var j = 0u; j < 8u; j++) {
        var idx = zero_code;
        if (!zero_block && g * 8u + j < u.n) {
          idx = index4(v[j] * r);
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
  if (!SUMS) {
    return;
  }
  workgroupBarrier();
  // One thread adds them pairwise (stack[l] holds a pending sum of 2^l blocks): fewer barriers than a tree.
  if (t == 0u) {
    var stack: array<f32, 6>;
    for (var j = 0u; j < bpw; j++) {
      var v = sums[j];
      var level = 0u;
      while (((j >> level) & 1u) == 1u) {
        v = stack[level] + v;
        level++;
      }
      stack[level] = v;
    }
    partial[u.wg_base + w] = stack[countTrailingZeros(bpw)];
  }
}

@group(0) @binding(0) var<storage, read> m_partial: array<f32>;
@group(0) @binding(1) var<storage, read_write> m_stats: array<u32, 4>;
@group(0) @binding(2) var<uniform> m_u: vec4<u32>;

@compute @workgroup_size(WG)
fn absmax_mean(@builtin(local_invocation_index) t: u32) {
  let per = m_u.y;
  // Pairwise sum of a power-of-two run with a stack: stack[l] holds the pending sum of 2^l values.
  var stack: array<f32, 32>;
  for (var j = 0u; j < per; j++) {
    let i = t * per + j;
    var v = 0.0;
    if (i < m_u.x) {
      v = m_partial[i];
    }
    var level = 0u;
    while (((j >> level) & 1u) == 1u) {
      v = stack[level] + v;
      level++;
    }
    stack[level] = v;
  }
  sums[t] = stack[countTrailingZeros(per)];
  workgroupBarrier();
  for (var width = WG / 2u; width > 0u; width = width / 2u) {
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
    m_stats[1] = bitcast<u32>(sums[0] * bitcast<f32>(m_u.z));
  }
}

@group(0) @binding(0) var<storage, read> dq_absmax: array<f32>;
@group(0) @binding(1) var<storage, read_write> dq_codes: array<u32>;
@group(0) @binding(2) var<storage, read_write> dq_absmax2: array<f32>;
@group(0) @binding(3) var<storage, read> dq_code2: array<f32, 256>;
@group(0) @binding(4) var<storage, read> dq_stats: array<u32, 4>;
@group(0) @binding(5) var<uniform> dq_u: vec4<u32>;

var<workgroup> mid: array<f32, WG>;

// Number of midpoints below v (0..255); a tie goes to the even index.
fn nearest(v: f32) -> u32 {
  var lo = 0u;
  var hi = 255u;
  while (lo < hi) {
    let m = (lo + hi) / 2u;
    if (mid[m] < v) {
      lo = m + 1u;
    } else {
      hi = m;
    }
  }
  if (lo < 255u && mid[lo] == v && (lo & 1u) == 1u) {
    return lo + 1u;
  }
  return lo;
}

@compute @workgroup_size(WG)
fn double_quant(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) t: u32,
) {
  let g = wid.x + wid.y * nwg.x;
  if (g * WG >= dq_u.x) {
    return;
  }
  if (t < 255u) {
    mid[t] = (dq_code2[t] + dq_code2[t + 1u]) * 0.5;
  }
  let i = g * WG + t;
  var c = 0.0;
  if (i < dq_u.x) {
    c = dq_absmax[i] - bitcast<f32>(dq_stats[1]);
  }
  red[t] = bitcast<u32>(c) & 0x7fffffffu;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s = s / 2u) {
    if (t < s) {
      red[t] = max(red[t], red[t + s]);
    }
    workgroupBarrier();
  }
  let amax2 = red[0];
  var code = 0u;
  if (amax2 >= 0x00800000u && i < dq_u.x) {
    code = nearest(c * recip_rn(amax2));
  }
  // Reuse red for the codes: every thread has read red[0] before the barrier.
  workgroupBarrier();
  red[t] = code;
  workgroupBarrier();
  if (t < WG / 4u && g * (WG / 4u) + t < (dq_u.x + 3u) / 4u) {
    dq_codes[g * (WG / 4u) + t] = red[4u * t] | (red[4u * t + 1u] << 8u) | (red[4u * t + 2u] << 16u) |
      (red[4u * t + 3u] << 24u);
  }
  if (t == 0u) {
    dq_absmax2[g] = bitcast<f32>(amax2);
  }
}
