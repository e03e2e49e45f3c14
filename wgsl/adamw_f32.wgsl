// adamw_f32: one AdamW step (decoupled weight decay, bias correction) on a segment of n elements, f32 states.
// Bindings:
//   param: [n] f32 (storage, read_write)  the segment of the parameter
//   grad:  [n] f32 (storage, read)
//   state: [2*cap] f32 (storage, read_write)  m[0..cap) then v[0..cap)
//   clip:  [2] f32 (storage, read)  (sum of squares, clip scale): see _adamw_params.wgsl
//   u:     uniform Params (below)
// Per element, with g = grad * clip scale, decay = 1 - lr*wd, step_size = lr / (1 - beta1^t), inv_sqrt_bc2 = 1 / sqrt(1 - beta2^t):
//   p = p*decay; m = beta1*m + (1-beta1)*g; v = beta2*v + (1-beta2)*g*g;
//   p = p - step_size * m / (sqrt(v)*inv_sqrt_bc2 + eps)
// Elementwise, so page and segment boundaries never change the result.

override WG: u32 = 256;

#include "_adamw_params.wgsl"

@group(0) @binding(0) var<storage, read_write> param: array<f32>;
@group(0) @binding(1) var<storage, read> grad: array<f32>;
@group(0) @binding(2) var<storage, read_write> state: array<f32>;
@group(0) @binding(3) var<storage, read> clip: array<f32>;
@group(0) @binding(4) var<uniform> u: Params;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * WG;
  if (i >= u.n || !adamw_enabled()) {
    return;
  }
  let g = clipped_grad(i);
  let m = u.beta1 * state[i] + u.one_minus_beta1 * g;
  let v = u.beta2 * state[u.cap + i] + u.one_minus_beta2 * (g * g);
  state[i] = m;
  state[u.cap + i] = v;
  adamw_param_step(i, m, v);
}
