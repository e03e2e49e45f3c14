// SwiGLU backward: with s = sigmoid(gate), dGate = dh * up * s * (1 + gate * (1 - s)), dUp = dh * gate * s.
// Bindings: dh: [n] f32 (read); gate: [n] f32 (read); up: [n] f32 (read); dGate: [n] f32 (write);
//   dUp: [n] f32 (write); params: {n: u32}.
// One element per invocation; linear index over a grid2d of workgroups.

override WG: u32 = 256;

struct Params {
  n: u32,
}

@group(0) @binding(0) var<storage, read> dh: array<f32>;
@group(0) @binding(1) var<storage, read> gate: array<f32>;
@group(0) @binding(2) var<storage, read> up: array<f32>;
@group(0) @binding(3) var<storage, read_write> dGate: array<f32>;
@group(0) @binding(4) var<storage, read_write> dUp: array<f32>;
@group(0) @binding(5) var<uniform> p: Params;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * WG;
  if (i >= p.n) {
    return;
  }
  let g = gate[i];
  let s = 1.0 / (1.0 + exp(-g));
  let d = dh[i];
  dGate[i] = d * up[i] * s * (1.0 + g * (1.0 - s));
  dUp[i] = d * g * s;
}
