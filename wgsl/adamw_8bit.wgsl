// adamw_8bit: one AdamW step on a segment of n elements with 8-bit blockwise-quantized states
// (as bitsandbytes' blockwise 8-bit optimizers): m uses the signed dynamic code, v the unsigned one;
// one f32 absmax per block of 256. One workgroup per block.
// Bindings:
//   param: [n] f32 (storage, read_write)
//   grad:  [n] f32 (storage, read)
//   state: u32 words (storage, read_write): m codes [cap] u8 | v codes [cap] u8 | m absmax [cap/256] f32 |
//          v absmax [cap/256] f32   (codes packed four to a word, little-endian; cap a multiple of 256)
//   qmap:  [512] f32 (storage, read): signed dynamic code [256] then unsigned dynamic code [256], both sorted
//   u:     uniform Params, as adamw_f32
// Per element: dequantize m, v; update them in f32 (as adamw_f32); update the parameter with the f32 values;
// requantize each to the nearest code of value/absmax, with the block's new absmax.

const BLOCK: u32 = 256u;

struct Params {
  n: u32,
  cap: u32,
  _pad0: u32,
  _pad1: u32,
  decay: f32,
  beta1: f32,
  beta2: f32,
  step_size: f32,
  inv_sqrt_bc2: f32,
  eps: f32,
  one_minus_beta1: f32,
  one_minus_beta2: f32,
}

@group(0) @binding(0) var<storage, read_write> param: array<f32>;
@group(0) @binding(1) var<storage, read> grad: array<f32>;
@group(0) @binding(2) var<storage, read_write> state: array<u32>;
@group(0) @binding(3) var<storage, read> qmap: array<f32>;
@group(0) @binding(4) var<uniform> u: Params;

var<workgroup> red_m: array<f32, BLOCK>;
var<workgroup> red_v: array<f32, BLOCK>;
var<workgroup> codes_m: array<u32, BLOCK>;
var<workgroup> codes_v: array<u32, BLOCK>;

fn code_byte(word_index: u32, t: u32) -> u32 {
  return (state[word_index] >> (8u * (t % 4u))) & 0xffu;
}

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

@compute @workgroup_size(BLOCK)
fn main(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) t: u32,
) {
  let b = wid.x + wid.y * nwg.x;
  if (b * BLOCK >= u.n) {
    return;
  }
  let i = b * BLOCK + t;
  let valid = i < u.n;
  let words = u.cap / 4u;
  let absmax_at = u.cap / 2u;
  let blocks = u.cap / BLOCK;
  var g = 0.0;
  if (valid) {
    g = grad[i];
  }
  let m_old = qmap[code_byte(b * 64u + t / 4u, t)] * bitcast<f32>(state[absmax_at + b]);
  let v_old = qmap[256u + code_byte(words + b * 64u + t / 4u, t)] * bitcast<f32>(state[absmax_at + blocks + b]);
  let m = u.beta1 * m_old + u.one_minus_beta1 * g;
  let v = u.beta2 * v_old + u.one_minus_beta2 * (g * g);
  if (valid) {
    let denom = sqrt(v) * u.inv_sqrt_bc2 + u.eps;
    param[i] = param[i] * u.decay - u.step_size * (m / denom);
  }
  red_m[t] = abs(m);
  red_v[t] = abs(v);
  workgroupBarrier();
  for (var s = BLOCK / 2u; s > 0u; s = s / 2u) {
    if (t < s) {
      red_m[t] = max(red_m[t], red_m[t + s]);
      red_v[t] = max(red_v[t], red_v[t + s]);
    }
    workgroupBarrier();
  }
  let am = red_m[0];
  let av = red_v[0];
  codes_m[t] = nearest(0u, select(0.0, m / am, am > 0.0));
  codes_v[t] = nearest(256u, select(0.0, v / av, av > 0.0));
  workgroupBarrier();
  if (t < 64u) {
    let c = 4u * t;
    state[b * 64u + t] = codes_m[c] | (codes_m[c + 1u] << 8u) | (codes_m[c + 2u] << 16u) | (codes_m[c + 3u] << 24u);
  } else if (t < 128u) {
    let c = 4u * (t - 64u);
    state[words + b * 64u + t - 64u] = codes_v[c] | (codes_v[c + 1u] << 8u) | (codes_v[c + 2u] << 16u) |
      (codes_v[c + 3u] << 24u);
  } else if (t == 128u) {
    state[absmax_at + b] = bitcast<u32>(am);
    state[absmax_at + blocks + b] = bitcast<u32>(av);
  }
}
