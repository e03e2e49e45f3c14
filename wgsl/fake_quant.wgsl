// fake_quant: symmetric MinMax fake quantization of each row, in place (per output channel of a weight, per token
// of an activation):
//   scale = max|x_row| / qmax,  x <- clamp(round(x / scale), -qmax, qmax) · scale   (qmax = 2^(bits-1) - 1)
// round() is WGSL's round-half-to-even, as torch.round. A row of zeros (scale 0) stays zero.
// Bindings: x: [rows, cols] f32 (read_write; a range of rows of the tensor); params: {rows, cols: u32; qmax: f32}.
// One workgroup per row (row = wid.x + wid.y * nwg.x); tree reduction of the max. WG: a power of two.

override WG: u32 = 64;

struct Params {
  rows: u32,
  cols: u32,
  qmax: f32,
}

@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@group(0) @binding(1) var<uniform> p: Params;

var<workgroup> red: array<f32, WG>;

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
  var m = 0.0;
  for (var i = lid; i < p.cols; i += WG) {
    m = max(m, abs(x[base + i]));
  }
  red[lid] = m;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (lid < s) {
      red[lid] = max(red[lid], red[lid + s]);
    }
    workgroupBarrier();
  }
  let scale = red[0] / p.qmax;
  if (scale == 0.0) {
    return;
  }
  for (var i = lid; i < p.cols; i += WG) {
    let q = clamp(round(x[base + i] / scale), -p.qmax, p.qmax);
    x[base + i] = q * scale;
  }
}
