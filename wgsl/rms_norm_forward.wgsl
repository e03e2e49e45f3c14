// RMSNorm forward (Llama): y[r, :] = x[r, :] * rstd[r] * w[:], rstd[r] = 1 / sqrt(mean(x[r, :]^2) + eps).
// Bindings: x: [M, H] f32 (read); w: [H] f32 (read); y: [M, H] f32 (write); rstd: [M] f32 (write, kept for backward);
//   params: {rows M: u32, cols H: u32, eps: f32}.
// One workgroup per row (row = wid.x + wid.y * nwg.x, see grid2d); f32 sums, tree reduction. WG: a power of two.

override WG: u32 = 256;

struct Params {
  rows: u32,
  cols: u32,
  eps: f32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> w: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<storage, read_write> rstd: array<f32>;
@group(0) @binding(4) var<uniform> p: Params;

#include "_workgroup_sum.wgsl"

@compute @workgroup_size(WG)
fn main(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,
) {
  let row = wid.x + wid.y * nwg.x;
  if (row >= p.rows) {
    return;
  }
  let base = row * p.cols;
  var ss = 0.0;
  for (var i = lid; i < p.cols; i += WG) {
    let v = x[base + i];
    ss += v * v;
  }
  let r = 1.0 / sqrt(workgroup_sum(lid, ss) / f32(p.cols) + p.eps);
  for (var i = lid; i < p.cols; i += WG) {
    y[base + i] = x[base + i] * r * w[i];
  }
  if (lid == 0u) {
    rstd[row] = r;
  }
}
