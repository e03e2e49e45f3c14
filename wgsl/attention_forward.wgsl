// Causal grouped-query attention, forward, FlashAttention style: one pass over key tiles with an online softmax
// per query row; no [T, T] score matrix is stored, only the row logsumexp for the backward pass.
//   out[b, t, h] = sum_j softmax_j(q[b, t, h] . k[b, j, h / G] * scale) v[b, j, h / G],  G = nHeads / nKvHeads
// over keys j < seqLens[b] (right padding) and j <= pos(b, t) = qOffset + qOffsets[b] + t (causal; a KV cache
// has Tk > Tq). Rows with no key get out = 0, lse = 0.
// Bindings: q: [B, Tq, nHeads, D] f32 (read, as vec4); k, v: [B, Tk, nKvHeads, D] f32 (read, as vec4);
//   out: [B, Tq, nHeads, D] f32 (write); lse: [B, nHeads, Tq] f32 (write, natural log of scaled scores);
//   seqLens: [B] u32 (read; any buffer unless useLens); qOffsets: [B] u32 (read; any buffer unless useOffsets);
//   params: {B, Tq, Tk, nHeads, nKvHeads, qOffset, useLens, useOffsets, bq, bk, d4: u32; scale: f32}.
// Workgroup = BQ query rows of one (b, h), workgroup index over a grid2d; invocation (row r, vec4 column c) owns
// out[r, 4c..4c+3]. Per key tile, the BQ x BK scores are computed once (one dot product per invocation) into
// workgroup memory; q, k, v are read from global memory (cached). Only the score tile lives in workgroup memory
// and there are no private arrays: Mesa's GL path compiles both into very long code (minutes for 16 KiB).
// Overrides: D (head dim, multiple of 4), BQ (query rows per workgroup), BK (keys per tile).

override D: u32 = 64;
override BQ: u32 = 16;
override BK: u32 = 16;
override D4: u32 = D / 4u;
override WG: u32 = BQ * D4;

const MASKED: f32 = -3.0e38;

#include "_attention_bounds.wgsl"

@group(0) @binding(0) var<storage, read> q: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> k: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> v: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> out: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> lse: array<f32>;
@group(0) @binding(5) var<storage, read> seqLens: array<u32>;
@group(0) @binding(6) var<storage, read> qOffsets: array<u32>;
@group(0) @binding(7) var<uniform> p: Params;

// Scaled scores of the tile, MASKED where not visible; two tiles alternate so one barrier per tile suffices.
var<workgroup> sc: array<f32, 2u * BQ * BK>;

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
  let kEnd = min(bnd.x, bnd.y + tLast + 1u); // keys any row of this block can see

  let r = lid / D4;
  let c = lid % D4;
  let t = t0 + r;
  var acc = vec4<f32>(0.0);
  var m = MASKED;
  var l = 0.0;
  var half = 0u;
  for (var k0 = 0u; k0 < kEnd; k0 += BK) {
    for (var e = lid; e < BQ * BK; e += WG) {
      let i = e / BK;
      let key = k0 + e % BK;
      var s = MASKED;
      if (t0 + i < p.Tq && key < kEnd && key <= bnd.y + t0 + i) {
        let qi = ((b * p.Tq + t0 + i) * p.nHeads + h) * D4;
        let kj = ((b * p.Tk + key) * p.nKvHeads + kvh) * D4;
        var d = vec4<f32>(0.0);
        for (var x = 0u; x < p.d4; x++) {
          d += q[qi + x] * k[kj + x];
        }
        s = (d.x + d.y + d.z + d.w) * p.scale;
      }
      sc[half + e] = s;
    }
    workgroupBarrier();
    // Every invocation of row r repeats the row's softmax update (identical values, no extra barrier).
    var mt = m;
    for (var j = 0u; j < p.bk; j++) {
      mt = max(mt, sc[half + r * BK + j]);
    }
    let corr = exp(m - mt);
    m = mt;
    l *= corr;
    acc *= corr;
    for (var j = 0u; j < p.bk; j++) {
      let s = sc[half + r * BK + j];
      if (s > MASKED) {
        let pj = exp(s - m);
        l += pj;
        acc += pj * v[((b * p.Tk + k0 + j) * p.nKvHeads + kvh) * D4 + c];
      }
    }
    // No barrier here: the next tile writes the other half, and the one after that waits at the next barrier,
    // which every invocation reaches only after reading this tile.
    half = BQ * BK - half;
  }
  if (t < p.Tq) {
    out[((b * p.Tq + t) * p.nHeads + h) * D4 + c] = acc * select(0.0, 1.0 / l, l > 0.0);
    if (c == 0u) {
      lse[(b * p.nHeads + h) * p.Tq + t] = select(0.0, m + log(l), l > 0.0);
    }
  }
}
