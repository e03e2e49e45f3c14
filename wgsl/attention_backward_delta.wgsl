// Attention backward, step 1 (FlashAttention-2): delta[b, h, t] = sum_d dOut[b, t, h, d] * out[b, t, h, d].
// Bindings: dOut: [B, Tq, nHeads, D] f32 (read, as vec4); out: same (read); delta: [B, nHeads, Tq] f32 (write);
//   params: {rows = B * Tq * nHeads, Tq, nHeads, D4 = D / 4: u32}.
// One (b, t, h) row per invocation; linear index over a grid2d of workgroups.

override WG: u32 = 64;

struct Params {
  rows: u32,
  Tq: u32,
  nHeads: u32,
  D4: u32,
}

@group(0) @binding(0) var<storage, read> dOut: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> out: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> delta: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let r = gid.x + gid.y * nwg.x * WG;
  if (r >= p.rows) {
    return;
  }
  var d = vec4<f32>(0.0);
  for (var c = 0u; c < p.D4; c++) {
    d += dOut[r * p.D4 + c] * out[r * p.D4 + c];
  }
  let h = r % p.nHeads;
  let bt = r / p.nHeads;
  let t = bt % p.Tq;
  let b = bt / p.Tq;
  delta[(b * p.nHeads + h) * p.Tq + t] = d.x + d.y + d.z + d.w;
}
