// RMSNorm (Llama), two entry points, each with its own bindings (same numbers, different variables).
//
// forward: RMSNorm forward (Llama): y[r, :] = x[r, :] * rstd[r] * w[:], rstd[r] = 1 / sqrt(mean(x[r, :]^2) + eps).
//   Bindings: x: [M, H] f32 (read); w: [H] f32, bf16 or f16 as W_FMT says (read as u32 words); y: [M, H] f32 (write); rstd: [M] f32 (write, kept for backward);
//     params: {rows M: u32, cols H: u32, eps: f32}.
//   One workgroup per row (row = wid.x + wid.y * nwg.x, see grid2d); f32 sums, tree reduction. WG: a power of two.
// backward: RMSNorm backward, input gradient only (the weight is frozen):
//     g = w * dy;  dx[r, :] = rstd[r] * g - x[r, :] * rstd[r]^3 * sum(g * x[r, :]) / H  (+ dx[r, :] when
//     accumulating: a residual branch's gradient added in the same pass).
//   Bindings: dy: [M, H] f32 (read); x: [M, H] f32 (read); w: [H] as in forward; rstd: [M] f32 (read, from forward);
//     dx: [M, H] f32 (read_write); params: {rows M: u32, cols H: u32, accumulate: u32}.
//   One workgroup per row (row = wid.x + wid.y * nwg.x); f32 sums, tree reduction. WG: a power of two.

override WG: u32 = 256;
override W_FMT: u32 = 0u;

#include "_workgroup_sum.wgsl"
#include "_stored_float.wgsl"

fn f_weight(i: u32) -> f32 {
  return stored_value(f_w[stored_word(i, W_FMT)], i, W_FMT);
}

struct ForwardParams {
  rows: u32,
  cols: u32,
  eps: f32,
}

@group(0) @binding(0) var<storage, read> f_x: array<f32>;
@group(0) @binding(1) var<storage, read> f_w: array<u32>;
@group(0) @binding(2) var<storage, read_write> f_y: array<f32>;
@group(0) @binding(3) var<storage, read_write> f_rstd: array<f32>;
@group(0) @binding(4) var<uniform> f_p: ForwardParams;


@compute @workgroup_size(WG)
fn forward(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,
) {
  let row = wid.x + wid.y * nwg.x;
  if (row >= f_p.rows) {
    return;
  }
  let base = row * f_p.cols;
  var ss = 0.0;
  for (var i = lid; i < f_p.cols; i += WG) {
    let v = f_x[base + i];
    ss += v * v;
  }
  let r = 1.0 / sqrt(workgroup_sum(lid, ss) / f32(f_p.cols) + f_p.eps);
  for (var i = lid; i < f_p.cols; i += WG) {
    f_y[base + i] = f_x[base + i] * r * f_weight(i);
  }
  if (lid == 0u) {
    f_rstd[row] = r;
  }
}

struct BackwardParams {
  rows: u32,
  cols: u32,
  accumulate: u32,
}

@group(0) @binding(0) var<storage, read> b_dy: array<f32>;
@group(0) @binding(1) var<storage, read> b_x: array<f32>;
@group(0) @binding(2) var<storage, read> b_w: array<u32>;

fn b_weight(i: u32) -> f32 {
  return stored_value(b_w[stored_word(i, W_FMT)], i, W_FMT);
}
@group(0) @binding(3) var<storage, read> b_rstd: array<f32>;
@group(0) @binding(4) var<storage, read_write> b_dx: array<f32>;
@group(0) @binding(5) var<uniform> b_p: BackwardParams;


@compute @workgroup_size(WG)
fn backward(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,
) {
  let row = wid.x + wid.y * nwg.x;
  if (row >= b_p.rows) {
    return;
  }
  let base = row * b_p.cols;
  var acc = 0.0;
  for (var i = lid; i < b_p.cols; i += WG) {
    acc += b_weight(i) * b_dy[base + i] * b_x[base + i];
  }
  // The sum read back from red[0], not the returned value: Mesa's GL path then compiles b_dx bit-identically to
  // the inline reduction this replaced.
  _ = workgroup_sum(lid, acc);
  let r = b_rstd[row];
  let c = r * r * r * red[0] / f32(b_p.cols);
  for (var i = lid; i < b_p.cols; i += WG) {
    var v = r * b_weight(i) * b_dy[base + i] - b_x[base + i] * c;
    if (b_p.accumulate != 0u) {
      v += b_dx[base + i];
    }
    b_dx[base + i] = v;
  }
}
