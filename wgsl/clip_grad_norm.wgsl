// clip_grad_norm: global gradient-norm clipping in three passes sharing one binding layout.
// Bindings:
//   data: [*] f32 (storage, read_write)  partial: a gradient segment [n]; total: the partial sums [count];
//                                        scale: a gradient segment [n] (scaled in place)
//   acc:  [*] f32 (storage, read_write)  partial: partial sums (one per workgroup, from u.y);
//                                        total/scale: result [2] = (sum of squares, clip scale)
//   u:    vec4<u32> uniform              partial: (n, first partial index, _, _); total: (count, _, max_norm bits, _);
//                                        scale: (n, _, _, _)
// Entry points: `partial` (each workgroup sums the squares of WG*ITEMS elements), `total` (one workgroup adds the
// partial sums; scale = min(1, max_norm / (norm + 1e-6)), or 1 when the norm is not finite), `scale`.

override WG: u32 = 256;
override ITEMS: u32 = 8;

@group(0) @binding(0) var<storage, read_write> data: array<f32>;
@group(0) @binding(1) var<storage, read_write> acc: array<f32>;
@group(0) @binding(2) var<uniform> u: vec4<u32>;

#include "_workgroup_sum.wgsl"

@compute @workgroup_size(WG)
fn partial(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) t: u32,
) {
  let w = wid.x + wid.y * nwg.x;
  let start = w * WG * ITEMS;
  if (start >= u.x) {
    return;
  }
  var s = 0.0;
  for (var k = 0u; k < ITEMS; k++) {
    let i = start + k * WG + t;
    if (i < u.x) {
      s += data[i] * data[i];
    }
  }
  let total = workgroup_sum(t, s);
  if (t == 0u) {
    acc[u.y + w] = total;
  }
}

@compute @workgroup_size(WG)
fn total(@builtin(local_invocation_index) t: u32) {
  var s = 0.0;
  for (var i = t; i < u.x; i += WG) {
    s += data[i];
  }
  let sum = workgroup_sum(t, s);
  if (t == 0u) {
    let norm = sqrt(sum);
    let finite = (bitcast<u32>(norm) & 0x7f800000u) != 0x7f800000u;
    acc[0] = sum;
    acc[1] = select(1.0, min(1.0, bitcast<f32>(u.z) / (norm + 1e-6)), finite);
  }
}

@compute @workgroup_size(WG)
fn scale(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * WG;
  if (i < u.x) {
    data[i] = data[i] * acc[1];
  }
}
