// Causal grouped-query attention, FlashAttention-2 style: no [T, T] score matrix is stored, only each query row's
// logsumexp, from which the backward pass recomputes the scores. Four entry points; forward, backward_dkdv and
// backward_dq share bindings 0-5 (q, k, v, seqLens, qOffsets, params) and the masks, backward_delta has its own.
//
// forward: out[b, t, h] = sum_j softmax_j(q[b, t, h] . k[b, j, h / G] * scale) v[b, j, h / G],
//     G = nHeads / nKvHeads, over keys j < seqLens[b] (right padding) and j <= pos(b, t) = qOffset + qOffsets[b] + t
//     (causal; a KV cache has Tk > Tq). One pass over key tiles with an online softmax per query row. Rows with
//     no key get out = 0, lse = 0.
//   Bindings: q: [B, Tq, nHeads, D] f32 (read, as vec4); k, v: [B, Tk, nKvHeads, D] f32 (read, as vec4);
//     seqLens: [B] u32 (read; any buffer unless useLens); qOffsets: [B] u32 (read; any buffer unless useOffsets);
//     params: {B, Tq, Tk, nHeads, nKvHeads, qOffset, useLens, useOffsets, bq, bk, d4: u32; scale: f32};
//     out: [B, Tq, nHeads, D] f32 (write); lse: [B, nHeads, Tq] f32 (write, natural log of scaled scores).
//   Workgroup = BQ query rows of one (b, h), workgroup index over a grid2d; invocation (row r, vec4 column c) owns
//   out[r, 4c..4c+3]. Per key tile, the BQ x BK scores are computed once (one dot product per invocation) into
//   workgroup memory; q, k, v are read from global memory (cached). Only the score tile lives in workgroup memory
//   and there are no private arrays: Mesa's GL path compiles both into very long code (minutes for 16 KiB).
//   Overrides: D (head dim, multiple of 4), BQ (query rows per workgroup), BK (keys per tile).
// backward_delta (step 1): delta[b, h, t] = sum_d dOut[b, t, h, d] * out[b, t, h, d].
//   Bindings: dOut: [B, Tq, nHeads, D] f32 (read, as vec4); out: same (read); delta: [B, nHeads, Tq] f32 (write);
//     params: {rows = B * Tq * nHeads, Tq, nHeads, D4 = D / 4: u32}.
//   One (b, t, h) row per invocation, 64 per workgroup; linear index over a grid2d of workgroups.
// backward_dkdv (step 2): dK and dV for a block of BK key rows, accumulated over every query row and every query
//     head of the keys' group (no atomics), scores recomputed BQ query rows at a time:
//     p = exp(q.k * scale - lse),  dV = sum_i p dOut,  dK = scale * sum_i p (dOut.v - delta) q.
//     Masks as in forward; keys at or past seqLens[b] get dK = dV = 0.
//   Bindings: 0-5 as forward; dOut: [B, Tq, nHeads, D] f32 (read, vec4); lse, delta: [B, nHeads, Tq] f32 (read);
//     dk, dv: [B, Tk, nKvHeads, D] f32 (write, vec4).
//   Workgroup = BK key rows of one (b, kvh); invocation (key row j, vec4 column c) owns dk/dv[j, 4c..4c+3]. Only
//   the BQ x BK tiles of p and dS live in workgroup memory (see forward for why).
//   Overrides: D (multiple of 4), BK (key rows per workgroup), BQ (query rows per tile).
// backward_dq (step 3): dQ over key tiles: p and dS as in backward_dkdv, dQ = scale * sum_j dS k. Masks as in
//     forward.
//   Bindings: 0-5 as forward; dOut, lse, delta as backward_dkdv; dq: [B, Tq, nHeads, D] f32 (write, vec4).
//   Workgroup = BQ query rows of one (b, h); invocation (row r, vec4 column c) owns dq[r, 4c..4c+3]. Only the
//   BQ x BK tile of dS lives in workgroup memory (see forward for why).
//   Overrides: D (multiple of 4), BQ (query rows per workgroup), BK (keys per tile).

override D: u32 = 64;
override BQ: u32 = 16;
override BK: u32 = 16;
override D4: u32 = D / 4u;
// Invocations per workgroup: forward and backward_dq own query rows, backward_dkdv key rows.
override WG: u32 = BQ * D4;
override WG_K: u32 = BK * D4;
const DELTA_WG: u32 = 64u;

const MASKED: f32 = -3.0e38;

struct Params {
  B: u32,
  Tq: u32,
  Tk: u32,
  nHeads: u32,
  nKvHeads: u32,
  qOffset: u32,
  useLens: u32,
  useOffsets: u32,
  bq: u32, // = BQ, BK, D4: loop bounds read at run time, so that GL drivers do not unroll the loops
  bk: u32,
  d4: u32,
  scale: f32,
}

@group(0) @binding(0) var<storage, read> q: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> k: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> v: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> seqLens: array<u32>;
@group(0) @binding(4) var<storage, read> qOffsets: array<u32>;
@group(0) @binding(5) var<uniform> p: Params;

// The masks of forward, backward_dkdv and backward_dq.
var<workgroup> bounds: vec2<u32>; // (valid keys, position of query row 0)

// (valid keys, position of query row 0) of sequence b, read once by invocation 0 and shared through workgroup
// memory. Call from uniform control flow.
fn key_bounds(b: u32, lid: u32) -> vec2<u32> {
  if (lid == 0u) {
    var n = p.Tk;
    if (p.useLens == 1u) {
      n = min(seqLens[b], p.Tk);
    }
    var q0 = p.qOffset;
    if (p.useOffsets == 1u) {
      q0 += qOffsets[b];
    }
    bounds = vec2<u32>(n, q0);
  }
  return workgroupUniformLoad(&bounds);
}

// forward's outputs.
@group(0) @binding(6) var<storage, read_write> f_out: array<vec4<f32>>;
@group(0) @binding(7) var<storage, read_write> f_lse: array<f32>;

// Scaled scores of the tile, MASKED where not visible; two tiles alternate so one barrier per tile suffices.
var<workgroup> sc: array<f32, 2u * BQ * BK>;

@compute @workgroup_size(WG)
fn forward(
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
    f_out[((b * p.Tq + t) * p.nHeads + h) * D4 + c] = acc * select(0.0, 1.0 / l, l > 0.0);
    if (c == 0u) {
      f_lse[(b * p.nHeads + h) * p.Tq + t] = select(0.0, m + log(l), l > 0.0);
    }
  }
}

struct DeltaParams {
  rows: u32,
  Tq: u32,
  nHeads: u32,
  D4: u32,
}

@group(0) @binding(0) var<storage, read> d_dOut: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> d_out: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> d_delta: array<f32>;
@group(0) @binding(3) var<uniform> d_p: DeltaParams;

@compute @workgroup_size(DELTA_WG)
fn backward_delta(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let r = gid.x + gid.y * nwg.x * DELTA_WG;
  if (r >= d_p.rows) {
    return;
  }
  var d = vec4<f32>(0.0);
  for (var c = 0u; c < d_p.D4; c++) {
    d += d_dOut[r * d_p.D4 + c] * d_out[r * d_p.D4 + c];
  }
  let h = r % d_p.nHeads;
  let bt = r / d_p.nHeads;
  let t = bt % d_p.Tq;
  let b = bt / d_p.Tq;
  d_delta[(b * d_p.nHeads + h) * d_p.Tq + t] = d.x + d.y + d.z + d.w;
}

// Inputs of backward_dkdv and backward_dq.
@group(0) @binding(6) var<storage, read> dOut: array<vec4<f32>>;
@group(0) @binding(7) var<storage, read> lse: array<f32>;
@group(0) @binding(8) var<storage, read> delta: array<f32>;

// (p, dS) for query row t of head h and key `key` of kv head kvh in sequence b:
//   p = exp(q.k * scale - lse),  dS = p (dOut.v - delta).
fn p_ds(b: u32, h: u32, kvh: u32, t: u32, key: u32) -> vec2<f32> {
  let qi = ((b * p.Tq + t) * p.nHeads + h) * D4;
  let kj = ((b * p.Tk + key) * p.nKvHeads + kvh) * D4;
  var sd = vec4<f32>(0.0);
  var dpd = vec4<f32>(0.0);
  for (var x = 0u; x < p.d4; x++) {
    sd += q[qi + x] * k[kj + x];
    dpd += dOut[qi + x] * v[kj + x];
  }
  let row = (b * p.nHeads + h) * p.Tq + t;
  let pr = exp((sd.x + sd.y + sd.z + sd.w) * p.scale - lse[row]);
  return vec2<f32>(pr, pr * (dpd.x + dpd.y + dpd.z + dpd.w - delta[row]));
}

@group(0) @binding(9) var<storage, read_write> dk: array<vec4<f32>>;
@group(0) @binding(10) var<storage, read_write> dv: array<vec4<f32>>;

// Probabilities (0 where masked) and dS of the tile (backward_dq uses dS alone); two tiles alternate so one
// barrier per tile suffices (see forward).
var<workgroup> pt: array<f32, 2u * BQ * BK>;
var<workgroup> dS: array<f32, 2u * BQ * BK>;

@compute @workgroup_size(WG_K)
fn backward_dkdv(
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
      for (var e = lid; e < BQ * BK; e += WG_K) {
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

@group(0) @binding(9) var<storage, read_write> dq: array<vec4<f32>>;

@compute @workgroup_size(WG)
fn backward_dq(
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
