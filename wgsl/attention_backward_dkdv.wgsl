// Attention backward, step 2 (FlashAttention-2): dK and dV for a block of BK key rows, accumulated over every
// query row and every query head of the keys' group (no atomics). Scores are recomputed from q, k and the
// forward's logsumexp, BQ query rows at a time:
//   p = exp(q.k * scale - lse),  dV = sum_i p dOut,  dK = scale * sum_i p (dOut.v - delta) q.
// Masks as in attention_forward; keys at or past seqLens[b] get dK = dV = 0.
// Bindings: q: [B, Tq, nHeads, D] f32 (read, vec4); k, v: [B, Tk, nKvHeads, D] f32 (read, vec4);
//   dOut: [B, Tq, nHeads, D] f32 (read, vec4); lse, delta: [B, nHeads, Tq] f32 (read);
//   dk, dv: [B, Tk, nKvHeads, D] f32 (write, vec4); seqLens, qOffsets: [B] u32 (read; any buffer unless
//   useLens / useOffsets); params: {B, Tq, Tk, nHeads, nKvHeads, qOffset, useLens, useOffsets, bq, bk, d4: u32;
//   scale: f32}.
// Workgroup = BK key rows of one (b, kvh); invocation (key row j, vec4 column c) owns dk/dv[j, 4c..4c+3]. Only
// the BQ x BK tiles of p and dS live in workgroup memory (see attention_forward for why).
// Overrides: D (multiple of 4), BK (key rows per workgroup), BQ (query rows per tile).

override D: u32 = 64;
override BK: u32 = 16;
override BQ: u32 = 16;
override D4: u32 = D / 4u;
override WG: u32 = BK * D4;

#include "_attention_bounds.wgsl"
#include "_attention_p_ds.wgsl"

@group(0) @binding(0) var<storage, read> q: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> k: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> v: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> dOut: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> lse: array<f32>;
@group(0) @binding(5) var<storage, read> delta: array<f32>;
@group(0) @binding(6) var<storage, read_write> dk: array<vec4<f32>>;
@group(0) @binding(7) var<storage, read_write> dv: array<vec4<f32>>;
@group(0) @binding(8) var<storage, read> seqLens: array<u32>;
@group(0) @binding(9) var<storage, read> qOffsets: array<u32>;
@group(0) @binding(10) var<uniform> p: Params;

// Probabilities (0 where masked) and dS of the tile; two tiles alternate so one barrier per tile suffices (see
// attention_forward).
var<workgroup> pt: array<f32, 2u * BQ * BK>;
var<workgroup> dS: array<f32, 2u * BQ * BK>;

@compute @workgroup_size(WG)
fn main(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,
) {
  let nkb = (p.Tk + BK - 1u) / BK;
  let wg = wid.x + wid.y * nwg.x;
  if (wg >= p.B * p.nKvHeads * nkb) {
    return;
  }
  let kb = wg % nkb;
  let kvh = (wg / nkb) % p.nKvHeads;
  let b = wg / (nkb * p.nKvHeads);
  let G = p.nHeads / p.nKvHeads;
  let bnd = key_bounds(b, lid);
  let j0 = kb * BK;
  // Query rows that can see a key of this block: pos(t) = bnd.y + t >= j0; none if the block is padding.
  var tStart = 0u;
  if (j0 > bnd.y) {
    tStart = j0 - bnd.y;
  }
  if (j0 >= bnd.x) {
    tStart = p.Tq;
  }
  let r = lid / D4;
  let c = lid % D4;
  let j = j0 + r;
  var dkAcc = vec4<f32>(0.0);
  var dvAcc = vec4<f32>(0.0);
  var half = 0u;
  for (var g = 0u; g < G; g++) {
    let h = kvh * G + g;
    for (var t0 = tStart; t0 < p.Tq; t0 += BQ) {
      for (var e = lid; e < BQ * BK; e += WG) {
        let i = e / BK;
        let key = j0 + e % BK;
        var pr = 0.0;
        var g2 = 0.0;
        if (t0 + i < p.Tq && key < bnd.x && key <= bnd.y + t0 + i) {
          let pg = p_ds(b, h, kvh, t0 + i, key);
          pr = pg.x;
          g2 = pg.y;
        }
        pt[half + e] = pr;
        dS[half + e] = g2;
      }
      workgroupBarrier();
      for (var i = 0u; i < p.bq; i++) {
        let pr = pt[half + i * BK + r];
        if (pr != 0.0) {
          let qi = ((b * p.Tq + t0 + i) * p.nHeads + h) * D4 + c;
          dvAcc += pr * dOut[qi];
          dkAcc += dS[half + i * BK + r] * q[qi];
        }
      }
      half = BQ * BK - half;
    }
  }
  if (j < p.Tk) {
    let kIdx = ((b * p.Tk + j) * p.nKvHeads + kvh) * D4 + c;
    dk[kIdx] = dkAcc * p.scale;
    dv[kIdx] = dvAcc;
  }
}
