// Attention backward, step 3 (FlashAttention-2): dQ over key tiles:
//   p = exp(q.k * scale - lse),  dS = p (dOut.v - delta),  dQ = scale * sum_j dS k.   Masks as in attention_forward.
// Bindings: q: [B, Tq, nHeads, D] f32 (read, vec4); k, v: [B, Tk, nKvHeads, D] f32 (read, vec4);
//   dOut: [B, Tq, nHeads, D] f32 (read, vec4); lse, delta: [B, nHeads, Tq] f32 (read);
//   dq: [B, Tq, nHeads, D] f32 (write, vec4); seqLens, qOffsets: [B] u32 (read; any buffer unless useLens /
//   useOffsets); params: {B, Tq, Tk, nHeads, nKvHeads, qOffset, useLens, useOffsets, bq, bk, d4: u32;
//   scale: f32}.
// Workgroup = BQ query rows of one (b, h); invocation (row r, vec4 column c) owns dq[r, 4c..4c+3]. Only the
// BQ x BK tile of dS lives in workgroup memory (see attention_forward for why).
// Overrides: D (multiple of 4), BQ (query rows per workgroup), BK (keys per tile).

override D: u32 = 64;
override BQ: u32 = 16;
override BK: u32 = 16;
override D4: u32 = D / 4u;
override WG: u32 = BQ * D4;

#include "_attention_bounds.wgsl"
#include "_attention_p_ds.wgsl"

@group(0) @binding(0) var<storage, read> q: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> k: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> v: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> dOut: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> lse: array<f32>;
@group(0) @binding(5) var<storage, read> delta: array<f32>;
@group(0) @binding(6) var<storage, read_write> dq: array<vec4<f32>>;
@group(0) @binding(7) var<storage, read> seqLens: array<u32>;
@group(0) @binding(8) var<storage, read> qOffsets: array<u32>;
@group(0) @binding(9) var<uniform> p: Params;

// Two tiles alternate so one barrier per tile suffices (see attention_forward).
var<workgroup> dS: array<f32, 2u * BQ * BK>;

@compute @workgroup_size(WG)
fn main(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,
) {
  let nqb = (p.Tq + BQ - 1u) / BQ;
  let wg = wid.x + wid.y * nwg.x;
  if (wg >= p.B * p.nHeads * nqb) {
    return;
  }
  let qb = wg % nqb;
  let h = (wg / nqb) % p.nHeads;
  let b = wg / (nqb * p.nHeads);
  let kvh = h / (p.nHeads / p.nKvHeads);
  let bnd = key_bounds(b, lid);
  let t0 = qb * BQ;
  let tLast = min(t0 + BQ, p.Tq) - 1u;
  let kEnd = min(bnd.x, bnd.y + tLast + 1u);

  let r = lid / D4;
  let c = lid % D4;
  let t = t0 + r;
  var acc = vec4<f32>(0.0);
  var half = 0u;
  for (var k0 = 0u; k0 < kEnd; k0 += BK) {
    for (var e = lid; e < BQ * BK; e += WG) {
      let i = e / BK;
      let key = k0 + e % BK;
      var g = 0.0;
      if (t0 + i < p.Tq && key < kEnd && key <= bnd.y + t0 + i) {
        g = p_ds(b, h, kvh, t0 + i, key).y;
      }
      dS[half + e] = g;
    }
    workgroupBarrier();
    for (var j = 0u; j < p.bk; j++) {
      let g = dS[half + r * BK + j];
      if (g != 0.0) {
        acc += g * k[((b * p.Tk + k0 + j) * p.nKvHeads + kvh) * D4 + c];
      }
    }
    half = BQ * BK - half;
  }
  if (t < p.Tq) {
    dq[((b * p.Tq + t) * p.nHeads + h) * D4 + c] = acc * p.scale;
  }
}
