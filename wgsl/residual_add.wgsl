// Residual add / gradient accumulation in place: acc[i] += alpha * x[i].
// Bindings: acc: [n] f32 (read_write); x: [n] f32 (read); params: {n: u32, alpha: f32}.
// One element per invocation; linear index over a grid2d of workgroups.

override WG: u32 = 256;

struct Params {
  n: u32,
  alpha: f32,
}

@group(0) @binding(0) var<storage, read_write> acc: array<f32>;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<uniform> p: Params;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * WG;
  if (i >= p.n) {
    return;
  }
  acc[i] += p.alpha * x[i];
}
