// nf4_absmax_mean: offset = mean of the first-level absmax for double quantization, from the per-workgroup
// partial sums of nf4_quantize. One workgroup: thread t sums partial[t*per .. (t+1)*per) pairwise, then the 256
// thread sums are added pairwise, so the whole sum is a binary tree over the blocks zero-padded to a power of two
// (the order lib/quant/reference.ts `meanF32` uses); offset = sum * fround(1/nb).
// Bindings:
//   partial: [count] f32 (storage, read)
//   stats:   [4] u32 (storage, read_write)  stats[1] = offset bits (written)
//   u:       vec4<u32> (uniform)            (count, per: values per thread (a power of two), bits of fround(1/nb), _)

const WG: u32 = 256u;

@group(0) @binding(0) var<storage, read> partial: array<f32>;
@group(0) @binding(1) var<storage, read_write> stats: array<u32, 4>;
@group(0) @binding(2) var<uniform> u: vec4<u32>;

var<workgroup> sums: array<f32, WG>;

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) t: u32) {
  let per = u.y;
  // Pairwise sum of a power-of-two run with a stack: stack[l] holds the pending sum of 2^l values.
  var stack: array<f32, 32>;
  for (var j = 0u; j < per; j++) {
    let i = t * per + j;
    var v = 0.0;
    if (i < u.x) {
      v = partial[i];
    }
    var level = 0u;
    while (((j >> level) & 1u) == 1u) {
      v = stack[level] + v;
      level++;
    }
    stack[level] = v;
  }
  sums[t] = stack[countTrailingZeros(per)];
  workgroupBarrier();
  for (var width = WG / 2u; width > 0u; width = width / 2u) {
    var s = 0.0;
    if (t < width) {
      s = sums[2u * t] + sums[2u * t + 1u];
    }
    workgroupBarrier();
    if (t < width) {
      sums[t] = s;
    }
    workgroupBarrier();
  }
  if (t == 0u) {
    stats[1] = bitcast<u32>(sums[0] * bitcast<f32>(u.z));
  }
}
