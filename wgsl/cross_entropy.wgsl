// Cross-entropy with ignored labels, fused with its gradient over the logits, in two entry points.
//
// rows: per row, writing the gradient over the logits in place (one pass computes max and logsumexp; the next
//     overwrites the row with the gradient, so softmax is never stored):
//     lse = log(sum(exp(x))), loss = lse - x[label], x <- (exp(x - lse) - onehot(label)) * scale.
//   Rows with label -100 are ignored (loss 0, gradient 0). scale = p.gradScale, or 1 / (labels != -100) when
//   p.useCount is 1 (every workgroup counts the labels itself: M loads, small next to V).
//   Bindings: logits: [rows, V] f32 (read_write; a range of the [M, V] logits starting at row rowBase);
//     labels: [M] i32 (read); rowStats: [M, 2] f32 (write: loss, status 0 ok/ignored, 1 NaN/Inf logits,
//     2 label outside [0, V) and not -100); params: {rows, V, rowBase, M, useCount: u32; gradScale: f32}.
//   One workgroup per row (row = wid.x + wid.y * nwg.x); f32 sums, tree reductions. WG: a power of two.
// reduce: totals from the per-row results of rows:
//     stats = [mean, sum, count, nonFiniteRows, firstNonFiniteRow, badLabelRows, firstBadLabelRow, 0]
//   (count: labels != -100; mean 0 when count is 0; first* -1 when none; rows exact below 2^24).
//   Bindings: rowStats: [M, 2] f32 (read: loss, status); labels: [M] i32 (read); stats: [8] f32 (write);
//     params: {M: u32}.
//   A single workgroup of REDUCE_WG; strided loops and tree reductions.

override WG: u32 = 256;

struct Params {
  rows: u32,
  vocab: u32,
  rowBase: u32,
  total: u32,
  useCount: u32,
  gradScale: f32,
}

@group(0) @binding(0) var<storage, read_write> logits: array<f32>;
@group(0) @binding(1) var<storage, read> labels: array<i32>;
@group(0) @binding(2) var<storage, read_write> rowStats: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

#include "_workgroup_sum.wgsl"

#include "_workgroup_reduce.wgsl"

// NaN or ±Inf, by bits (WGSL has no isnan and fast-math may fold comparisons).
fn nonFinite(v: f32) -> bool {
  return (bitcast<u32>(v) & 0x7f800000u) == 0x7f800000u;
}

@compute @workgroup_size(WG)
fn rows(
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
  let label = labels[row];

  var scale = p.gradScale;
  if (p.useCount == 1u) {
    var c = 0.0;
    for (var i = lid; i < p.total; i += WG) {
      c += select(1.0, 0.0, labels[i] == -100);
    }
    scale = 1.0 / max(reduceSum(lid, c), 1.0);
  }

  var m = -3.0e38;
  var bad = 0.0;
  for (var i = lid; i < p.vocab; i += WG) {
    let v = logits[base + i];
    m = max(m, v);
    bad += select(0.0, 1.0, nonFinite(v));
  }
  m = reduceMax(lid, m);
  bad = reduceSum(lid, bad);
  var s = 0.0;
  for (var i = lid; i < p.vocab; i += WG) {
    s += exp(logits[base + i] - m);
  }
  let lse = m + log(reduceSum(lid, s));

  let ignored = label == -100;
  let badLabel = !ignored && (label < 0 || u32(label) >= p.vocab);
  var loss = 0.0;
  if (!ignored && !badLabel) {
    loss = lse - logits[base + u32(label)];
  }
  workgroupBarrier(); // every invocation has read logits[label] before it is overwritten
  if (ignored || badLabel) {
    scale = 0.0;
  }
  for (var i = lid; i < p.vocab; i += WG) {
    let onehot = select(0.0, 1.0, i32(i) == label);
    logits[base + i] = (exp(logits[base + i] - lse) - onehot) * scale;
  }
  if (lid == 0u) {
    rowStats[2u * row] = loss;
    rowStats[2u * row + 1u] = select(select(0.0, 2.0, badLabel), 1.0, bad > 0.0);
  }
}

// 64 invocations: Mesa's GL compile time grows with workgroup memory (naga zero-fills it with one long constant).
const REDUCE_WG: u32 = 64u;

struct ReduceParams {
  total: u32,
}

// labels (binding 1) as in rows.
@group(0) @binding(0) var<storage, read> r_rowStats: array<f32>;
@group(0) @binding(2) var<storage, read_write> r_stats: array<f32>;
@group(0) @binding(3) var<uniform> r_p: ReduceParams;

// sum, count, non-finite rows, first non-finite row, bad-label rows, first bad-label row
var<workgroup> r_red: array<array<f32, 6>, REDUCE_WG>;

@compute @workgroup_size(REDUCE_WG)
fn reduce(@builtin(local_invocation_index) lid: u32) {
  var a = array<f32, 6>(0.0, 0.0, 0.0, 3.0e38, 0.0, 3.0e38);
  for (var i = lid; i < r_p.total; i += REDUCE_WG) {
    let status = r_rowStats[2u * i + 1u];
    if (labels[i] != -100) {
      a[1] += 1.0;
    }
    if (status == 0.0) {
      a[0] += r_rowStats[2u * i];
    } else if (status == 1.0) {
      a[2] += 1.0;
      a[3] = min(a[3], f32(i));
    } else {
      a[4] += 1.0;
      a[5] = min(a[5], f32(i));
    }
  }
  r_red[lid] = a;
  workgroupBarrier();
  for (var s = REDUCE_WG / 2u; s > 0u; s >>= 1u) {
    if (lid < s) {
      let o = r_red[lid + s];
      var r = r_red[lid];
      r[0] += o[0];
      r[1] += o[1];
      r[2] += o[2];
      r[3] = min(r[3], o[3]);
      r[4] += o[4];
      r[5] = min(r[5], o[5]);
      r_red[lid] = r;
    }
    workgroupBarrier();
  }
  if (lid == 0u) {
    let r = r_red[0];
    r_stats[0] = r[0] / max(r[1], 1.0);
    r_stats[1] = r[0];
    r_stats[2] = r[1];
    r_stats[3] = r[2];
    r_stats[4] = select(r[3], -1.0, r[2] == 0.0);
    r_stats[5] = r[4];
    r_stats[6] = select(r[5], -1.0, r[4] == 0.0);
    r_stats[7] = 0.0;
  }
}
