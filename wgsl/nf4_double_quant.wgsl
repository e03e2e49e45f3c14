// nf4_double_quant: second-level quantization of the first-level absmax (bitsandbytes' nested quant state): per
// group of 256 blocks, c = absmax - offset, absmax2 = max|c|, code = nearest entry of the signed dynamic map to
// c * (1/absmax2) by float32 midpoints, a value on a midpoint taking the even index; absmax2 < 2^-126 gives code 0.
// One workgroup per group.
// Bindings:
//   absmax:  [nb] f32 (storage, read)
//   codes:   [ceil(nb/4)] u32 (storage, read_write)  nb u8 codes, four to a word (little-endian)
//   absmax2: [ceil(nb/256)] f32 (storage, read_write)
//   code2:   [256] f32 (storage, read)               the signed dynamic map, sorted
//   stats:   [4] u32 (storage, read)                 stats[1]: offset bits (from nf4_absmax_mean)
//   u:       vec4<u32> (uniform)                     (nb, _, _, _)

const WG: u32 = 256u;

@group(0) @binding(0) var<storage, read> absmax: array<f32>;
@group(0) @binding(1) var<storage, read_write> codes: array<u32>;
@group(0) @binding(2) var<storage, read_write> absmax2: array<f32>;
@group(0) @binding(3) var<storage, read> code2: array<f32, 256>;
@group(0) @binding(4) var<storage, read> stats: array<u32, 4>;
@group(0) @binding(5) var<uniform> u: vec4<u32>;

var<workgroup> red: array<u32, WG>;
var<workgroup> mid: array<f32, WG>;

#include "_recip_rn.wgsl"

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
fn main(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) t: u32,
) {
  let g = wid.x + wid.y * nwg.x;
  if (g * WG >= u.x) {
    return;
  }
  if (t < 255u) {
    mid[t] = (code2[t] + code2[t + 1u]) * 0.5;
  }
  let i = g * WG + t;
  var c = 0.0;
  if (i < u.x) {
    c = absmax[i] - bitcast<f32>(stats[1]);
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
  if (amax2 >= 0x00800000u && i < u.x) {
    code = nearest(c * recip_rn(amax2));
  }
  // Reuse red for the codes: every thread has read red[0] before the barrier.
  workgroupBarrier();
  red[t] = code;
  workgroupBarrier();
  if (t < WG / 4u && g * (WG / 4u) + t < (u.x + 3u) / 4u) {
    codes[g * (WG / 4u) + t] = red[4u * t] | (red[4u * t + 1u] << 8u) | (red[4u * t + 2u] << 16u) |
      (red[4u * t + 3u] << 24u);
  }
  if (t == 0u) {
    absmax2[g] = bitcast<f32>(amax2);
  }
}
