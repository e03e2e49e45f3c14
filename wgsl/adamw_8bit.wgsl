// adamw_8bit: one AdamW step on a segment of n elements with 8-bit blockwise-quantized states
// (as bitsandbytes' blockwise 8-bit optimizers): m uses the signed dynamic code, v the unsigned one;
// one f32 absmax per block of 256. One invocation per block, in two passes (the new absmax, then the update and
// requantization, recomputing the same values): no workgroup memory or barriers, which llvmpipe runs slowly.
// Bindings:
//   param: [n] f32 (storage, read_write)
//   grad:  [n] f32 (storage, read)
//   state: u32 words (storage, read_write): m codes [cap] u8 | v codes [cap] u8 | m absmax [cap/256] f32 |
//          v absmax [cap/256] f32   (codes packed four to a word, little-endian; cap a multiple of 256)
//   clip:  [2] f32 (storage, read)  (sum of squares, clip scale): see _adamw_params.wgsl
//   u:     uniform Params, as adamw_f32
//   qmap:  [512] f32 (storage, read): signed dynamic code [256] then unsigned dynamic code [256], both sorted
// Per element, with g = grad * clip scale: dequantize m, v; update them in f32 (as adamw_f32); update the parameter with the f32 values;
// requantize each to the nearest code of value/absmax, with the block's new absmax.

const BLOCK: u32 = 256u;

override WG: u32 = 64;

#include "_adamw_params.wgsl"

@group(0) @binding(0) var<storage, read_write> param: array<f32>;
@group(0) @binding(1) var<storage, read> grad: array<f32>;
@group(0) @binding(2) var<storage, read_write> state: array<u32>;
@group(0) @binding(3) var<storage, read> clip: array<f32>;
@group(0) @binding(4) var<uniform> u: Params;
@group(0) @binding(5) var<storage, read> qmap: array<f32>;

// Index of the code nearest x in the sorted table qmap[base .. base+256) (ties: the lower one).
fn nearest(base: u32, x: f32) -> u32 {
  var lo = 0u;
  var hi = 255u;
  loop {
    if (lo >= hi) {
      break;
    }
    let mid = (lo + hi) / 2u;
    if (qmap[base + mid] < x) {
      lo = mid + 1u;
    } else {
      hi = mid;
    }
  }
  if (lo > 0u && abs(x - qmap[base + lo - 1u]) <= abs(qmap[base + lo] - x)) {
    return lo - 1u;
  }
  return lo;
}

// The updated (m, v) of element i, from byte k of its code words (g = 0 past the end).
fn moments(i: u32, wm: u32, wv: u32, k: u32, am_old: f32, av_old: f32) -> vec2<f32> {
  var g = 0.0;
  if (i < u.n) {
    g = clipped_grad(i);
  }
  let m = u.beta1 * (qmap[(wm >> (8u * k)) & 0xffu] * am_old) + u.one_minus_beta1 * g;
  let v = u.beta2 * (qmap[256u + ((wv >> (8u * k)) & 0xffu)] * av_old) + u.one_minus_beta2 * (g * g);
  return vec2<f32>(m, v);
}

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let b = gid.x + gid.y * nwg.x * WG;
  if (b * BLOCK >= u.n || !adamw_enabled()) {
    return;
  }
  let words = u.cap / 4u;
  let absmax_at = u.cap / 2u;
  let blocks = u.cap / BLOCK;
  let am_old = bitcast<f32>(state[absmax_at + b]);
  let av_old = bitcast<f32>(state[absmax_at + blocks + b]);
  var am = 0.0;
  var av = 0.0;
  for (var j = 0u; j < BLOCK / 4u; j++) {
    let wm = state[b * 64u + j];
    let wv = state[words + b * 64u + j];
    for (var k = 0u; k < 4u; k++) {
      let mv = moments(b * BLOCK + 4u * j + k, wm, wv, k, am_old, av_old);
      am = max(am, abs(mv.x));
      av = max(av, abs(mv.y));
    }
  }
  for (var j = 0u; j < BLOCK / 4u; j++) {
    let wm = state[b * 64u + j];
    let wv = state[words + b * 64u + j];
    var cm = 0u;
    var cv = 0u;
    for (var k = 0u; k < 4u; k++) {
      let i = b * BLOCK + 4u * j + k;
      let mv = moments(i, wm, wv, k, am_old, av_old);
      if (i < u.n) {
        adamw_param_step(i, mv.x, mv.y);
      }
      cm |= nearest(0u, select(0.0, mv.x / am, am > 0.0)) << (8u * k);
      cv |= nearest(256u, select(0.0, mv.y / av, av > 0.0)) << (8u * k);
    }
    state[b * 64u + j] = cm;
    state[words + b * 64u + j] = cv;
  }
  state[absmax_at + b] = bitcast<u32>(am);
  state[absmax_at + blocks + b] = bitcast<u32>(av);
}
