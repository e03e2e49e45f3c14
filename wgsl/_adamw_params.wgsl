// Fragment of adamw_f32.wgsl and adamw_8bit.wgsl (see scripts/embed_wgsl.ts): their uniform Params (the step's
// scalars, computed on the host), the gradient clipping folded into the update, and the parameter update. Needs the
// kernel's bindings param, grad, clip and u.
//   clip: [2] f32 (storage, read): (sum of squares of all gradients, clip scale) as clip_grad_norm.total writes it.
//   Each gradient is multiplied by the scale (the value clip_grad_norm.scale would have stored: bit-identical); a
//   sum that is not finite skips the step (nothing is written).

struct Params {
  n: u32,
  cap: u32,
  _pad0: u32,
  _pad1: u32,
  decay: f32,
  beta1: f32,
  beta2: f32,
  step_size: f32,
  inv_sqrt_bc2: f32,
  eps: f32,
  one_minus_beta1: f32,
  one_minus_beta2: f32,
}

// Decoupled weight decay then the bias-corrected Adam step of element i, from its updated moments m and v.
fn adamw_param_step(i: u32, m: f32, v: f32) {
  let denom = sqrt(v) * u.inv_sqrt_bc2 + u.eps;
  param[i] = param[i] * u.decay - u.step_size * (m / denom);
}

// Whether the step runs: the gradients' sum of squares is finite (by bits: fast-math may fold comparisons).
fn adamw_enabled() -> bool {
  return (bitcast<u32>(clip[0]) & 0x7f800000u) != 0x7f800000u;
}

// The clipped gradient of element i.
fn clipped_grad(i: u32) -> f32 {
  return grad[i] * clip[1];
}
