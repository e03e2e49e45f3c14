// fill: out[i] = value for i < n.
// Bindings: out: [n] f32 (storage, read_write); params: {n: u32 (as f32 bits in .x), value: f32}.
// params is passed as f32x4 [n, value, _, _] so callers send one Float32Array; n is exact below 2^24.

override WG: u32 = 256;

@group(0) @binding(0) var<storage, read_write> out: array<f32>;
@group(0) @binding(1) var<uniform> params: vec4<f32>;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * WG;
  if (i < u32(params.x)) {
    out[i] = params.y;
  }
}
