// RMSNorm backward, input gradient only (the weight is frozen):
//   g = w * dy;  dx[r, :] = rstd[r] * g - x[r, :] * rstd[r]^3 * sum(g * x[r, :]) / H.
// Bindings: dy: [M, H] f32 (read); x: [M, H] f32 (read); w: [H] f32 (read); rstd: [M] f32 (read, from forward);
//   dx: [M, H] f32 (write); params: {rows M: u32, cols H: u32}.
// One workgroup per row (row = wid.x + wid.y * nwg.x); f32 sums, tree reduction. WG: a power of two.

override WG: u32 = 256;

struct Params {
  rows: u32,
  cols: u32,
}

@group(0) @binding(0) var<storage, read> dy: array<f32>;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(3) var<storage, read> rstd: array<f32>;
@group(0) @binding(4) var<storage, read_write> dx: array<f32>;
@group(0) @binding(5) var<uniform> p: Params;

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
  var acc = 0.0;
  for (var i = lid; i < p.cols; i += WG) {
    acc += w[i] * dy[base + i] * x[base + i];
  }
  // The sum read back from red[0], not the returned value: Mesa's GL path then compiles dx bit-identically to
  // the inline reduction this replaced.
  _ = workgroup_sum(lid, acc);
  let r = rstd[row];
  let c = r * r * r * red[0] / f32(p.cols);
  for (var i = lid; i < p.cols; i += WG) {
    dx[base + i] = r * w[i] * dy[base + i] - x[base + i] * c;
  }
}
