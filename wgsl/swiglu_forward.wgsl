// SwiGLU forward (Llama MLP): h[i] = silu(gate[i]) * up[i], silu(g) = g * sigmoid(g).
// Bindings: gate: [n] f32 (read); up: [n] f32 (read); h: [n] f32 (write); params: {n: u32}.
// One element per invocation; linear index over a grid2d of workgroups.

override WG: u32 = 256;

struct Params {
  n: u32,
}

@group(0) @binding(0) var<storage, read> gate: array<f32>;
@group(0) @binding(1) var<storage, read> up: array<f32>;
@group(0) @binding(2) var<storage, read_write> h: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * WG;
  if (i >= p.n) {
    return;
  }
  let g = gate[i];
  h[i] = g / (1.0 + exp(-g)) * up[i];
}
