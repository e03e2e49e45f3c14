// Cross-entropy totals from the per-row results of cross_entropy_rows:
//   stats = [mean, sum, count, nonFiniteRows, firstNonFiniteRow, badLabelRows, firstBadLabelRow, 0]
// (count: labels != -100; mean 0 when count is 0; first* -1 when none; rows exact below 2^24).
// Bindings: rowStats: [M, 2] f32 (read: loss, status); labels: [M] i32 (read); stats: [8] f32 (write);
//   params: {M: u32}.
// A single workgroup; strided loops and tree reductions. WG: a power of two.

// 64 invocations: Mesa's GL compile time grows with workgroup memory (naga zero-fills it with one long constant).
override WG: u32 = 64;

struct Params {
  total: u32,
}

@group(0) @binding(0) var<storage, read> rowStats: array<f32>;
@group(0) @binding(1) var<storage, read> labels: array<i32>;
@group(0) @binding(2) var<storage, read_write> stats: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

// sum, count, non-finite rows, first non-finite row, bad-label rows, first bad-label row
var<workgroup> red: array<array<f32, 6>, WG>;

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32) {
  var a = array<f32, 6>(0.0, 0.0, 0.0, 3.0e38, 0.0, 3.0e38);
  for (var i = lid; i < p.total; i += WG) {
    let status = rowStats[2u * i + 1u];
    if (labels[i] != -100) {
      a[1] += 1.0;
    }
    if (status == 0.0) {
      a[0] += rowStats[2u * i];
    } else if (status == 1.0) {
      a[2] += 1.0;
      a[3] = min(a[3], f32(i));
    } else {
      a[4] += 1.0;
      a[5] = min(a[5], f32(i));
    }
  }
  red[lid] = a;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (lid < s) {
      let o = red[lid + s];
      var r = red[lid];
      r[0] += o[0];
      r[1] += o[1];
      r[2] += o[2];
      r[3] = min(r[3], o[3]);
      r[4] += o[4];
      r[5] = min(r[5], o[5]);
      red[lid] = r;
    }
    workgroupBarrier();
  }
  if (lid == 0u) {
    let r = red[0];
    stats[0] = r[0] / max(r[1], 1.0);
    stats[1] = r[0];
    stats[2] = r[1];
    stats[3] = r[2];
    stats[4] = select(r[3], -1.0, r[2] == 0.0);
    stats[5] = r[4];
    stats[6] = select(r[5], -1.0, r[4] == 0.0);
    stats[7] = 0.0;
  }
}
