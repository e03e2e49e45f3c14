// SwiGLU (Llama MLP gate), two entry points; one element per invocation, linear index over a grid2d of
// workgroups. Each entry point has its own bindings (same numbers, different variables).
//
// forward: h[i] = silu(gate[i]) * up[i], silu(g) = g * sigmoid(g).
//   Bindings: gate: [n] f32 (read); up: [n] f32 (read); h: [n] f32 (write); params: {n: u32}.
// backward: with s = sigmoid(gate), dGate = dh * up * s * (1 + gate * (1 - s)), dUp = dh * gate * s.
//   Bindings: dh: [n] f32 (read); gate: [n] f32 (read); up: [n] f32 (read); dGate: [n] f32 (write);
//   dUp: [n] f32 (write); params: {n: u32}.

override WG: u32 = 256;

struct Params {
  n: u32,
}

@group(0) @binding(0) var<storage, read> f_gate: array<f32>;
@group(0) @binding(1) var<storage, read> f_up: array<f32>;
@group(0) @binding(2) var<storage, read_write> f_h: array<f32>;
@group(0) @binding(3) var<uniform> f_p: Params;

@compute @workgroup_size(WG)
fn forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * WG;
  if (i >= f_p.n) {
    return;
  }
  let g = f_gate[i];
  f_h[i] = g / (1.0 + exp(-g)) * f_up[i];
}

@group(0) @binding(0) var<storage, read> b_dh: array<f32>;
@group(0) @binding(1) var<storage, read> b_gate: array<f32>;
@group(0) @binding(2) var<storage, read> b_up: array<f32>;
@group(0) @binding(3) var<storage, read_write> b_dGate: array<f32>;
@group(0) @binding(4) var<storage, read_write> b_dUp: array<f32>;
@group(0) @binding(5) var<uniform> b_p: Params;

@compute @workgroup_size(WG)
fn backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * WG;
  if (i >= b_p.n) {
    return;
  }
  let g = b_gate[i];
  let s = 1.0 / (1.0 + exp(-g));
  let d = b_dh[i];
  b_dGate[i] = d * b_up[i] * s * (1.0 + g * (1.0 - s));
  b_dUp[i] = d * g * s;
}
