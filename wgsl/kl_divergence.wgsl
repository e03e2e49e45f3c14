// kl_divergence: knowledge-distillation loss KL(teacher ‖ student) of each row's distribution over the vocabulary,
// fused with its gradient over the student logits, written in place:
//   lse_s = logsumexp(s), lse_t = logsumexp(t), p = exp(t - lse_t),
//   kl = Σ p · ((t - lse_t) - (s - lse_s)),  s <- (exp(s - lse_s) - p) · gradScale
// Rows whose mask is 0 are left out (kl 0, gradient 0).
// Bindings: s: [rows, V] f32 (read_write; a range of the student logits starting at row rowBase);
//   t: [rows, V] f32 (read; the teacher's logits of the same rows); mask: [M] i32 (read; 0: left out);
//   rowKl: [M] f32 (write); params: {rows, vocab, rowBase: u32; gradScale: f32}.
// One workgroup per row (row = wid.x + wid.y * nwg.x); f32 tree reductions. WG: a power of two.

override WG: u32 = 256;

struct Params {
  rows: u32,
  vocab: u32,
  rowBase: u32,
  gradScale: f32,
}

@group(0) @binding(0) var<storage, read_write> s: array<f32>;
@group(0) @binding(1) var<storage, read> t: array<f32>;
@group(0) @binding(2) var<storage, read> mask: array<i32>;
@group(0) @binding(3) var<storage, read_write> rowKl: array<f32>;
@group(0) @binding(4) var<uniform> p: Params;

#include "_workgroup_sum.wgsl"

#include "_workgroup_reduce.wgsl"

@compute @workgroup_size(WG)
fn main(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,
) {
  let local = wid.x + wid.y * nwg.x;
  if (local >= p.rows) {
    return;
  }
  let row = p.rowBase + local;
  let base = local * p.vocab;
  var ms = -3.0e38;
  var mt = -3.0e38;
  for (var i = lid; i < p.vocab; i += WG) {
    ms = max(ms, s[base + i]);
    mt = max(mt, t[base + i]);
  }
  ms = reduceMax(lid, ms);
  mt = reduceMax(lid, mt);
  var es = 0.0;
  var et = 0.0;
  for (var i = lid; i < p.vocab; i += WG) {
    es += exp(s[base + i] - ms);
    et += exp(t[base + i] - mt);
  }
  let lseS = ms + log(reduceSum(lid, es));
  let lseT = mt + log(reduceSum(lid, et));
  var kl = 0.0;
  for (var i = lid; i < p.vocab; i += WG) {
    let lt = t[base + i] - lseT;
    kl += exp(lt) * (lt - (s[base + i] - lseS));
  }
  kl = reduceSum(lid, kl);
  let keep = mask[row] != 0;
  let scale = select(0.0, p.gradScale, keep);
  for (var i = lid; i < p.vocab; i += WG) {
    s[base + i] = (exp(s[base + i] - lseS) - exp(t[base + i] - lseT)) * scale;
  }
  if (lid == 0u) {
    rowKl[row] = select(0.0, kl, keep);
  }
}
